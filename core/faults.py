"""Crash points for the crash-safety tests: the process kills itself at a named point.

Inert unless the environment variable PHASE24_CRASH_AT is set to `NAME` or `NAME:N`
(crash the N-th time the point is reached, default 1). The runner never sets it; only the
crash tests do, to prove that a SIGKILL between intent, effect and outcome never repeats
an irreversible action.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("PHASE24_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_TARGET = int(_COUNT) if _COUNT.isdigit() else 1
_seen: Counter[str] = Counter()

POINTS = (
    "before_intent",
    "after_intent",
    "after_effect",
    "after_outcome",
    "after_transition",
    "after_compensation_intent",
    "after_compensation",
)


def crash_point(name: str) -> None:
    if not _NAME or name != _NAME:
        return
    _seen[name] += 1
    if _seen[name] == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
