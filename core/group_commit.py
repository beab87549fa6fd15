"""Group commit: callers that reach a durability barrier together share one commit.

A live service has many agents, each waiting for "my proposal is on disk" or "my intent is
durable". One fsynced commit per waiter caps the service at the disk's fsync rate; one
commit for everyone who asked within the same turn of the event loop does not (the way
PostgreSQL's `commit_delay` and every WAL database group their commits).

`GroupCommit.barrier()` is an `EventBus` barrier: the first caller schedules one commit a
few turns of the event loop later (`turns`, each a pass over the callbacks ready then: no
timer, microseconds when nothing else is ready); everyone who calls before it runs waits for
that same commit. The turns let work started in the same moment reach its own barrier first:
a proposal's acknowledgement and its LIVE barrier share one fsync. A failed commit fails
every waiter (the journal has already failed closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class GroupCommit:
    """Coalesce durable commits of the one journal writer across concurrent waiters."""

    def __init__(
        self,
        commit: Callable[[], None],
        *,
        delay_s: float = 0.0,
        turns: int = 4,
        alone: Callable[[], bool] | None = None,
    ) -> None:
        if turns < 1:
            raise ValueError(f"turns must be >= 1, got {turns}")
        self._commit = commit
        self._alone = alone
        self._delay_s = delay_s
        self._turns = turns
        self._turns_left = 0
        self._next: asyncio.Future[None] | None = None
        self.commits = 0
        self.waiters = 0

    async def barrier(self) -> None:
        """Return once everything published before the call is durably committed."""
        self.waiters += 1
        if self._next is None and self._alone is not None and self._alone():
            # Nobody else can reach a barrier in the next turns (the owner says so): the
            # commit happens now, in this call, instead of a few turns of the loop later.
            self.commits += 1
            self._commit()
            return
        await asyncio.shield(self._upcoming(asyncio.get_running_loop()))

    def schedule(self) -> None:
        """Make sure a commit comes soon, without waiting for it: a lock's or an outcome's
        record rides it. Outside an event loop the commit happens at once."""
        if self._next is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.commits += 1
            self._commit()
            return
        self._upcoming(loop)

    def _upcoming(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future = self._next
        if future is None:
            future = self._next = loop.create_future()
            self._turns_left = self._turns
            if self._delay_s > 0:
                loop.call_later(self._delay_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._turns_left -= 1
        if self._turns_left > 0:
            asyncio.get_running_loop().call_soon(self._flush)
            return
        future, self._next = self._next, None
        if future is None:
            return
        self.commits += 1
        try:
            self._commit()
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: a waiter may have been cancelled meanwhile
            return
        if not future.done():
            future.set_result(None)
