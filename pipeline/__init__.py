"""ordergate pipeline package."""
