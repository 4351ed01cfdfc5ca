"""Process tests: real `ordergate` subprocesses, real OS signals, crash and fault campaigns, a real browser."""
