"""Orders: the order record, routing and retries, venues, fill validation, reservations, protective stops."""
