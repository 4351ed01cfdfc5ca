"""Integration tests: real parts in one process (SQLite files, loopback sockets, broker fakes, the real SDK clients)."""
