"""Strategies (bars in, signals out): the `Strategy` port, the registry that finds them (entry points
`ordergate.strategies`, `module:Class`), the `StrategySet` that runs several, and the shipped ones: the EMA-cloud
strategy and the daily breakout."""
