"""Instrument routing: stock, leveraged ETF (the catalog) or option."""
