"""The entry stages: signal guard, market price, the 8-check risk gate, unified risk (correlation, VaR), sizing."""
