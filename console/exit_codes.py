"""Exit codes of the `phase24` command (the README's table lists the same)."""

from collections.abc import Mapping
from typing import Any

OK = 0
PLAN_FAILED = 1
BAD_INPUT = 2
VERIFY_FAILED = 3
STORAGE_FAILED = 4
"""The journal or an output file could not be written: the run failed closed (never 0)."""
INTERRUPTED = 5
LOCKED = 6
PARTIAL = 7
SEAT_TAKEN = 8
"""`console --attach`: another operator console holds the operator seat."""

BY_RUN_STATUS = {
    "SUCCEEDED": OK,
    "FAILED": PLAN_FAILED,
    "INTERRUPTED": INTERRUPTED,
    "LOCKED": LOCKED,
    "PARTIAL": PARTIAL,
}


def for_summary(summary: Mapping[str, Any]) -> int:
    """The exit code of a finished run, from its summary's `status`."""
    return BY_RUN_STATUS.get(str(summary.get("status", "")), PLAN_FAILED)
