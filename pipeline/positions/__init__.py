"""Positions: the ledger, lifecycle, the 7 exits, reconciliation with the broker, external positions."""
