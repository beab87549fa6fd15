"""Garbage-collector policy while a run executes.

A large plan is hundreds of thousands of long-lived objects (the validated actions). The
cyclic collector would traverse all of them on every full collection, again and again,
while the run allocates short-lived events. For the duration of a run the objects that
already exist are frozen (`gc.freeze`: never traversed) and the young-generation threshold
is raised, so collections are rarer and cheaper. The older generations keep their default
thresholds: cyclic garbage that survives a young collection is still freed during a long run
(raising those too saved nothing measurable and let a console flood grow past 400 MB).
Both are undone when the last run ends. Nothing is ever disabled.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

RUN_THRESHOLDS: Final = (50_000, 10, 10)

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def run_gc_policy() -> Iterator[None]:
    """Apply the run's collector policy; nested or concurrent runs share one application."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*RUN_THRESHOLDS)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                if _saved is not None:
                    gc.set_threshold(*_saved)
                gc.unfreeze()
