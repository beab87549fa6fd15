"""The typed event stream for watchers in other processes, resumable by sequence number.

`EventFeed` subscribes to the bus, keeps the newest events (their JSON, serialised once) in
a ring buffer, and hands each watcher its own bounded queue. A watcher that falls too far
behind is cut off (`Watch.overflowed`) instead of growing memory: it reconnects with the
last sequence number it saw and gets the rest from the ring buffer, or from the journal
when they are older than the buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from core.events import Event, EventBus, event_json
from core.journal import read_events

FeedItem = tuple[int, str, str]
"""(seq, kind, the event's JSON)"""


class Watch:
    """One watcher's queue of new events."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[FeedItem | None] = asyncio.Queue(maxsize=limit)
        self.overflowed = False

    def put(self, item: FeedItem | None) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the end marker so the reader wakes up and stops.
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventFeed:
    """Ring buffer of recent events plus live fan-out to watchers."""

    def __init__(
        self,
        bus: EventBus,
        *,
        capacity: int = 100_000,
        watcher_limit: int = 10_000,
        journal_dir: Callable[[], Path | None] = lambda: None,
    ) -> None:
        self._ring: deque[FeedItem] = deque(maxlen=capacity)
        self._watchers: set[Watch] = set()
        self._watcher_limit = watcher_limit
        self._journal_dir = journal_dir
        self.closed = False
        bus.subscribe(self._observe)

    def _observe(self, event: Event) -> None:
        item = (event.seq, event.kind, event_json(event))
        self._ring.append(item)
        for watch in self._watchers:
            watch.put(item)

    def watch(self, since: int) -> tuple[list[FeedItem], Watch]:
        """The events after `since` that already happened, and a queue for the ones to come."""
        backlog = self.backlog(since)
        watch = Watch(self._watcher_limit)
        if self.closed:
            watch.put(None)
        else:
            self._watchers.add(watch)
        return backlog, watch

    def unwatch(self, watch: Watch) -> None:
        self._watchers.discard(watch)

    def backlog(self, since: int) -> list[FeedItem]:
        ring = self._ring
        if not ring or since >= ring[-1][0]:
            return []
        oldest = ring[0][0]
        if since + 1 >= oldest:
            return [item for item in ring if item[0] > since]
        older = list(self._from_journal(since, oldest))
        return [*older, *ring]

    def _from_journal(self, since: int, before: int) -> Iterable[FeedItem]:
        run_dir = self._journal_dir()
        if run_dir is None:
            return []
        return [(e.seq, e.kind, event_json(e)) for e in read_events(run_dir, after=since) if e.seq < before]

    def close(self) -> None:
        """No more events: every watcher's stream ends."""
        self.closed = True
        for watch in self._watchers:
            watch.put(None)
        self._watchers.clear()
