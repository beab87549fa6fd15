"""The hand-off from the core's thread to the UI: the core appends, a UI timer drains.

A `deque` is safe for one producer and one consumer without a lock. The UI drains in
batches (5 times a second), so a flood of events costs one widget update per tick.
"""

from __future__ import annotations

from collections import deque

from core.events import Event


class EventFeed:
    """A bus subscriber that only queues; everything else happens on the UI's side."""

    def __init__(self) -> None:
        self._queue: deque[Event] = deque()
        self.received = 0

    def __call__(self, event: Event) -> None:
        self._queue.append(event)
        self.received += 1

    def __len__(self) -> int:
        return len(self._queue)

    def drain(self, limit: int = 200_000) -> list[Event]:
        out: list[Event] = []
        pop = self._queue.popleft
        for _ in range(min(limit, len(self._queue))):
            out.append(pop())
        return out
