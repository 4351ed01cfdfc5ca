"""ordergate config package."""
