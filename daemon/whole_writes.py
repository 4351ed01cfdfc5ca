"""Standard output and error that finish every write.

With PYTHONUNBUFFERED (the unit files set it, so each log line reaches journald at once) Python's text streams
write straight to the file descriptor and drop whatever a short write leaves: after the event loop has run, a
write to a full pipe returns short, so a JSON longer than the pipe (64 KB) reached a slow reader cut, with a
newline. `finish_writes` puts a buffer under such a stream — a BufferedWriter writes the rest of a short write
— flushed at every line, so the logs stay as prompt as unbuffered ones.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO


def whole(stream: TextIO) -> TextIO:
    """`stream`, or the same file behind a line-flushed buffer when its text layer writes to the raw file."""
    raw = getattr(stream, "buffer", None)
    if not isinstance(raw, io.FileIO):  # buffered already (the usual case), or not a file (a test's capture)
        return stream
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors,
                            line_buffering=True)


def finish_writes() -> None:
    """sys.stdout and sys.stderr through `whole` (once, at the start of the command line)."""
    sys.stdout = whole(sys.stdout)
    sys.stderr = whole(sys.stderr)
