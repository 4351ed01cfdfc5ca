"""Unit tests: the domain's rules on plain objects, no sockets, files or processes."""
