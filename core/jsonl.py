"""Reading and crash repair of the run's JSONL files: only a torn last line may be bad, and only it is repaired.

A good line is newline-terminated, valid UTF-8 and a JSON object; a bad line followed by more data is corruption.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import JournalError


class CorruptJsonl(JournalError):
    """A line before the last one is not a JSON object: the file is damaged, not just torn."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}: line {line} is corrupt ({reason}); only a torn last line can be repaired")
        self.path = path
        self.line = line
        self.reason = reason


class JsonlRecords(list[dict[str, Any]]):
    """The records of a JSONL file, plus what was ignored at its end.

    `torn_tail_bytes` is the size of an ignored torn last line (0 if the file is intact) and
    `torn_line` its 1-based line number (None if intact).
    """

    def __init__(self, records: list[dict[str, Any]], torn_tail_bytes: int, torn_line: int | None) -> None:
        super().__init__(records)
        self.torn_tail_bytes = torn_tail_bytes
        self.torn_line = torn_line


@dataclass(frozen=True)
class _Scan:
    records: list[dict[str, Any]]
    size: int
    good_end: int  # offset just after the last good line: where a repair truncates
    torn_line: int | None


def _parse(line: bytes) -> dict[str, Any] | str:
    """The record on a newline-stripped line, or why it is not one."""
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(value, dict):
        return "not a JSON object"
    return value


def _scan(path: Path, keep: bool) -> _Scan:
    records: list[dict[str, Any]] = []
    offset = 0
    bad: tuple[int, int, str] | None = None  # (line number, start offset, reason) of a bad line
    lineno = 0
    with open(path, "rb") as fh:
        for raw in fh:
            lineno += 1
            if bad is not None:
                # Data after a bad line: the bad line is in the middle, so it is not a torn write.
                raise CorruptJsonl(path, bad[0], bad[2])
            if not raw.endswith(b"\n"):
                # A writer appends whole lines ending in "\n": a missing newline means the write was cut.
                bad = (lineno, offset, "no trailing newline")
            else:
                parsed = _parse(raw[:-1])
                if isinstance(parsed, str):
                    bad = (lineno, offset, parsed)
                elif keep:
                    records.append(parsed)
            offset += len(raw)
    if bad is None:
        return _Scan(records, offset, offset, None)
    return _Scan(records, offset, bad[1], bad[0])


def read_jsonl(path: Path) -> JsonlRecords:
    """Every record of `path`, ignoring a torn last line (reported on the result, the file is untouched).

    Raises CorruptJsonl (a JournalError) naming the line when a line before the last is bad;
    a missing file raises FileNotFoundError.
    """
    scan = _scan(Path(path), keep=True)
    return JsonlRecords(scan.records, scan.size - scan.good_end, scan.torn_line)


def repair_torn_tail(path: Path) -> int:
    """Truncate a torn last line off `path` (fsynced) and return the bytes removed; 0 if intact.

    Every line is checked: a bad line before the last raises CorruptJsonl and nothing is changed.
    """
    path = Path(path)
    scan = _scan(path, keep=False)
    removed = scan.size - scan.good_end
    if removed:
        with open(path, "r+b") as fh:
            fh.truncate(scan.good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return removed
