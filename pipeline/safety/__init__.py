"""Safety: the kill switch (every trip) and the atomic persistent state."""
