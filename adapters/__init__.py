"""ordergate adapters package."""
