"""The command line's report of a storage failure: on stderr, exit 4, never read as success.

Printed whether or not the output files could be written (a full disk may have stopped
them): what failed, which actions were held, which LIVE effects have no recorded outcome
(UNKNOWN: check the real system), and that a resume will start locked.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from console import exit_codes
from core.inert import inert


def _line(stream: IO[str], text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # stderr itself is gone: the exit code still says what happened


def report_storage_failure(harness: Any, exc: BaseException | None, stream: IO[str] | None = None) -> int:
    """Print the report for `harness` (its summary, if one was made) and return exit code 4."""
    out = stream or sys.stderr
    summary: dict[str, Any] = getattr(harness, "summary", None) or {}
    error = summary.get("storage_error") or getattr(harness, "storage_error", None)
    if error is None and exc is not None:
        error = f"{type(exc).__name__}: {exc}"
    _line(out, f"phase24: storage failure, the run failed closed: {inert(error, 600)}")
    run_dir = getattr(getattr(harness, "config", None), "output_dir", "")
    plans = summary.get("plans") or []
    if plans:
        statuses = ", ".join(f"{inert(p['plan_id'], 80)} {p['status']} ({p['held']} held)" for p in plans[:20])
        _line(out, f"  plans finished before it: {statuses}")
    held = summary.get("held_actions") or []
    if summary.get("held_count"):
        listed = ", ".join(f"{inert(h['plan_id'], 80)}/{inert(h['action_id'], 80)} ({h['tool']})" for h in held[:50])
        more = summary["held_count"] - min(len(held), 50)
        _line(out, f"  held at MOCK ({summary['held_count']}): {listed}{f' and {more} more' if more > 0 else ''}")
    intents = getattr(harness, "intents", None)
    unknown = summary.get("unrecorded_outcomes") or (intents.unsettled() if intents is not None else [])
    if unknown:
        for intent in unknown:
            _line(
                out,
                f"  UNKNOWN outcome (a LIVE effect whose outcome was not recorded; check the real system): "
                f"{inert(intent['plan_id'], 80)}/{inert(intent['action_id'], 80)} ({inert(intent['tool'], 64)}, "
                f"agent {inert(intent['agent'], 80)})",
            )
    else:
        _line(out, "  no LIVE effect is without a recorded outcome")
    _line(out, f"  the system is locked; `phase24 resume {inert(str(run_dir), 300)}` starts locked (MOCK only)")
    return exit_codes.STORAGE_FAILED
