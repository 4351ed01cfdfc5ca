"""ordergate daemon package."""
