"""Standard output that a closed reader cannot turn into a different exit code.

`phase24 verify RUN_DIR | head -1` closes the pipe after one line. Python then raises
BrokenPipeError on the next write (and again when it flushes at exit), which used to end
the command with exit 1 and nothing on stderr, whatever the verdict. Writes go through
`SafeStdout`: after the first broken pipe, the rest of the output is discarded (standard
output is pointed at /dev/null, so the flush at exit succeeds too) and the command goes on
to return its real exit code.
"""

from __future__ import annotations

import os
import sys
from typing import IO


class SafeStdout:
    """A file-like wrapper of sys.stdout for Rich consoles; `broken` once the reader is gone."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self.broken = False

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            written = self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self._discard_rest()
            return len(text)
        return written

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._discard_rest()

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8") or "utf-8"

    def _discard_rest(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):
            pass  # no real descriptor (a test's capture): discarding in this wrapper is enough
