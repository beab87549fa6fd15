"""The operator seat: at most one console holds the operator role at a time.

An operator console claims the seat (`POST /v1/seat`) when it attaches and keeps it while its
event stream (`GET /v1/events?seat=SEAT_ID`) is connected. It gives it back when it detaches
(`DELETE /v1/seat/SEAT_ID`). A console that vanishes without saying so (killed, crashed,
network gone) closes its stream; the seat frees `timeout_s` after the last stream of the seat
closed (the same console may reconnect within that time and keep it). A second operator
console gets a 409 naming who holds the seat; `--read-only` consoles never claim it.

The seat orders consoles, it is not an authority: the operator token is. A command that
names a seat (`X-Phase24-Seat`) is refused (409) unless that seat is held; a command without
one (curl, scripts) is an operator API call and is answered whoever holds the seat.
`phase24 console` without a plan pins the seat to itself for the service's life.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SEAT_HEADER = "x-phase24-seat"
DEFAULT_SEAT_TIMEOUT_S = 10.0


@dataclass
class Seat:
    seat_id: str
    operator: str
    console: str
    claimed_at: datetime
    idle_since: float
    streams: int = 0
    pinned: bool = False

    def public(self) -> dict[str, Any]:
        """What anyone watching may know (never the seat id, which commands carry)."""
        return {
            "operator": self.operator,
            "console": self.console,
            "claimed_at": self.claimed_at.isoformat(),
            "connected": self.pinned or self.streams > 0,
        }


class SeatTaken(Exception):
    def __init__(self, holder: Seat, frees_in_s: float | None = None) -> None:
        since = holder.claimed_at.strftime("%H:%M:%SZ")
        wait = (
            "or wait until it is released"
            if frees_in_s is None
            else f"or wait: its console is not connected and the seat frees in {frees_in_s:.0f}s"
        )
        super().__init__(
            f"the operator seat is held by operator {holder.operator!r} (console {holder.console!r}, since {since}); "
            f"attach with --read-only to watch, {wait}"
        )
        self.holder = holder


class OperatorSeat:
    """Who holds the operator seat; expiry is checked whenever it is read (no timer)."""

    def __init__(self, timeout_s: float = DEFAULT_SEAT_TIMEOUT_S, monotonic: Callable[[], float] = time.monotonic):
        if timeout_s <= 0:
            raise ValueError("the seat timeout must be positive")
        self.timeout_s = timeout_s
        self._monotonic = monotonic
        self._seat: Seat | None = None
        self.claims = 0
        self.refusals = 0

    @property
    def holder(self) -> Seat | None:
        seat = self._seat
        if (
            seat is not None
            and not seat.pinned
            and seat.streams == 0
            and self._monotonic() - seat.idle_since > self.timeout_s
        ):
            self._seat = seat = None
        return seat

    def claim(self, operator: str, console: str) -> Seat:
        holder = self.holder
        if holder is not None:
            self.refusals += 1
            frees_in = self.describe().get("frees_in_s")
            raise SeatTaken(holder, None if frees_in is None else max(1.0, float(frees_in)))
        self._seat = Seat("seat_" + secrets.token_urlsafe(18), operator, console, datetime.now(UTC), self._monotonic())
        self.claims += 1
        return self._seat

    def pin(self, console: str) -> Seat:
        """The embedded console's seat: held for the service's life."""
        seat = self.claim("console", console)
        seat.pinned = True
        return seat

    def holds(self, seat_id: str) -> bool:
        holder = self.holder
        return holder is not None and hmac.compare_digest(holder.seat_id.encode(), seat_id.encode())

    def release(self, seat_id: str) -> bool:
        if not self.holds(seat_id):
            return False
        self._seat = None
        return True

    def connect(self, seat_id: str) -> Seat | None:
        """A stream of this seat opened: the seat is kept while it is open."""
        if not self.holds(seat_id):
            return None
        seat = self._seat
        assert seat is not None
        seat.streams += 1
        return seat

    def disconnect(self, seat: Seat) -> None:
        """A stream closed; the last one starts the timeout."""
        seat.streams = max(0, seat.streams - 1)
        if seat.streams == 0:
            seat.idle_since = self._monotonic()

    def describe(self) -> dict[str, Any]:
        """`GET /v1/seat`, and `operator_seat` in `GET /v1/state`."""
        holder = self.holder
        if holder is None:
            return {"held": False, "timeout_s": self.timeout_s}
        frees_in = None
        if not holder.pinned and holder.streams == 0:
            frees_in = round(max(0.0, self.timeout_s - (self._monotonic() - holder.idle_since)), 3)
        return {"held": True, **holder.public(), "frees_in_s": frees_in, "timeout_s": self.timeout_s}
