"""The record: the SQLite journal, its checks, the signal recorder, trade journal, feedback and performance."""
