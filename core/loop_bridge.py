"""Run a callable on the core's event loop from whichever thread the operator acts on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], object]) -> None:
    """Call `fn` now when already on `loop` (or when there is no live loop), else schedule it
    there thread-safely. Everything that publishes events must run on the core's thread."""
    if loop is None or loop.is_closed():
        fn()
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn()
    else:
        loop.call_soon_threadsafe(fn)
