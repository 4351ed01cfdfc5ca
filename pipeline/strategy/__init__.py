"""Strategies: indicators and the EMA-cloud strategy (bars in, signals out)."""
