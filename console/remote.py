"""`phase24 console --attach URL`: the same console, as a client of a running `phase24 serve`.

`RemoteGateClient` stands where the harness stands for an embedded console: its
`run_pipeline` (in the console's core thread) follows the service's event stream
(`GET /v1/events`, resumed from the last sequence number after a dropped connection) and
hands each typed event to the console's subscribers; lock, unlock, pause and resume, and
the answers to approval prompts (`RemoteGate.answer`), go to the service's command API.
Quitting the console detaches; the service runs on.

Read-only (`--read-only`): a `[RO]` badge, no command keys, no approval prompts; the
service enforces it as well (a viewer token cannot command).

The operator seat (`service/seat.py`): an operator console claims it before its UI starts
(`POST /v1/seat`), keeps it with its event stream (`?seat=SEAT_ID`), sends it with every
command (`X-Phase24-Seat`) and gives it back when it detaches. When another console holds it
the attach is refused: one line on stderr, exit `SEAT_TAKEN` (8). A console that loses its
seat (its stream was gone longer than the service's seat timeout and another console took
the seat) turns read-only: no more prompts, its commands refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from console import exit_codes
from console.app import ConsoleGate, OperatorConsole, make_app
from console.approval_prompt import DEFAULT_ARM_DELAY_S
from console.console_options import apply_console_options, arm_delay_of, load_console_keymap
from core.approval import ApprovalDecision, ApprovalRequest
from core.clock import SystemClock
from core.events import (
    EVENT_ADAPTER,
    ApprovalDecided,
    ApprovalRequested,
    Event,
    RunPaused,
    RunResumed,
    SystemLocked,
    SystemUnlocked,
)
from core.inert import inert

RECONNECT_TRIES = 20
RECONNECT_DELAY_S = 0.5
SEAT_HEADER = "X-Phase24-Seat"
SEAT_TAKEN = exit_codes.SEAT_TAKEN
"""Exit code of `console --attach` when another console holds the operator seat."""


class AttachError(Exception):
    """The service refused the console (bad token, wrong URL)."""


class SeatTaken(AttachError):
    """Another console holds the operator seat."""


class _LockView:
    """What the console reads as `harness.controller`: the lock state, from the events."""

    def __init__(self) -> None:
        self.locked = False
        self.lock_reason = ""


class _Bus:
    """What the console reads as `harness.bus`: subscribe to the events."""

    def __init__(self) -> None:
        self.subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(fn)
        return lambda: self.subscribers.remove(fn) if fn in self.subscribers else None


def request_of(event: ApprovalRequested) -> ApprovalRequest:
    """The approval request an `approval_requested` event carries."""
    fields = event.model_dump(include=set(ApprovalRequest.model_fields) - {"requested_at"})
    return ApprovalRequest(**fields, requested_at=event.expires_at - timedelta(seconds=event.timeout_s))


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield EVENT_ADAPTER.validate_json("\n".join(data))
            data = []


class RemoteGate(ConsoleGate):
    """The console's gate for an attached console: pending requests come from the event
    stream, answers go to `POST /v1/approvals/{request_id}`."""

    def __init__(self, client: RemoteGateClient) -> None:
        super().__init__()
        self.client = client
        self._remote_pending: dict[str, ApprovalRequest] = {}

    @property
    def pending(self) -> list[ApprovalRequest]:
        return list(self._remote_pending.values())

    def requested(self, request: ApprovalRequest) -> None:
        self._remote_pending[request.request_id] = request
        if not self.client.read_only and self.on_request is not None:
            self.on_request(request)

    def decided(self, request_id: str) -> None:
        self._remote_pending.pop(request_id, None)

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._remote_pending

    def seconds_left_of(self, request_id: str, timeout_s: float) -> float | None:
        """The service times its requests (from when they were made): show what is left there."""
        request = self._remote_pending.get(request_id)
        if request is None:
            return None
        return max(0.0, (request.expires_at - datetime.now(UTC)).total_seconds())

    def answer(self, decision: ApprovalDecision) -> bool:
        if self.client.read_only or decision.request_id not in self._remote_pending:
            return False
        kind = decision.kind
        body: dict[str, Any] = {
            "decision": "approve"
            if decision.approved
            else "deny_and_stop"
            if kind.value == "DENY_AND_STOP"
            else "deny",
            "reason": decision.reason,
            "args_fully_visible": decision.args_fully_visible,
        }
        if decision.edited_args is not None:
            body["edited_args"] = decision.edited_args
        self.client.command(f"/v1/approvals/{decision.request_id}", body)
        return True

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        """The service denies pending requests itself when it locks."""


class RemoteGateClient:
    """Stands in for the harness of an embedded console (see the module docstring)."""

    def __init__(self, url: str, token: str, *, read_only: bool = False, seat_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.read_only = read_only
        self.seat_id = seat_id
        self.badge = f"[RO] read-only, attached to {inert(self.url, 200)}" if read_only else ""
        self.clock = SystemClock()
        self.bus = _Bus()
        self.controller = _LockView()
        self.gate = RemoteGate(self)
        self.paused = False
        self.summary: dict[str, Any] = {}
        self.last_seq = 0
        self.errors: list[str] = []
        #: Set when the stream could not be got back (the service is gone): what the console says.
        self.lost: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._stopping = False
        self._stream: asyncio.Task[None] | None = None

    # -- following the service ---------------------------------------------------------

    async def run_pipeline(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=None) as http:
            self._http = http
            tries = 0
            while not self._stopping and tries < RECONNECT_TRIES:
                self._stream = asyncio.current_task()
                try:
                    await self._follow(http)
                    break  # the stream ended: the service stopped
                except httpx.TransportError as exc:
                    tries += 1
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(RECONNECT_DELAY_S)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()  # our own detach: what follows (giving the seat back) may still await
                    break
            if tries >= RECONNECT_TRIES:
                self.lost = (
                    f"lost the service at {inert(self.url, 200)}: {RECONNECT_TRIES} reconnects failed "
                    f"({inert(self.errors[-1], 300)}); the screen shows its last known state"
                )
            await self._release_seat(http)
        return self.summary

    async def _release_seat(self, http: httpx.AsyncClient) -> None:
        seat_id, self.seat_id = self.seat_id, None
        if seat_id is None:
            return
        try:
            await http.delete(f"/v1/seat/{seat_id}", timeout=2)
        except httpx.HTTPError:
            pass  # the service is gone, or will free the seat after its timeout

    async def _follow(self, http: httpx.AsyncClient) -> None:
        params: dict[str, Any] = {"since": self.last_seq}
        if self.seat_id is not None:
            params["seat"] = self.seat_id
        async with http.stream("GET", "/v1/events", params=params) as response:
            if response.status_code == 409 and self.seat_id is not None:
                await response.aread()
                await self._seat_lost(http)
                return await self._follow(http)
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")
                raise AttachError(f"{self.url}: the service refused the console ({response.status_code}): {body}")
            async for event in sse_events(response.aiter_lines()):
                if self._stopping:
                    return
                self.last_seq = event.seq
                self._apply(event)

    async def _seat_lost(self, http: httpx.AsyncClient) -> None:
        """The seat timed out while the stream was gone: claim it again, or go on read-only."""
        self.seat_id = None
        response = await http.post("/v1/seat", json={"console": console_label()}, timeout=5)
        if response.status_code == 201:
            self.seat_id = str(response.json()["seat_id"])
            return
        self.read_only = True
        self.errors.append(f"the operator seat was lost and taken ({response.status_code}): this console is read-only")

    def _apply(self, event: Event) -> None:
        kind = type(event)
        if kind is ApprovalRequested:
            assert isinstance(event, ApprovalRequested)
            self.gate.requested(request_of(event))
        elif kind is ApprovalDecided:
            assert isinstance(event, ApprovalDecided)
            self.gate.decided(event.request_id)
        elif kind is SystemLocked:
            assert isinstance(event, SystemLocked)
            self.controller.locked, self.controller.lock_reason = True, event.reason
        elif kind is SystemUnlocked:
            self.controller.locked, self.controller.lock_reason = False, ""
        elif kind is RunPaused or kind is RunResumed:
            self.paused = kind is RunPaused
        for subscriber in list(self.bus.subscribers):
            subscriber(event)

    # -- commands ----------------------------------------------------------------------

    def command(self, path: str, body: dict[str, Any] | None = None) -> bool:
        """Send a command to the service from the console's thread; False when read-only or detached."""
        loop, http = self._loop, self._http
        if self.read_only or loop is None or http is None or loop.is_closed():
            return False

        headers = {SEAT_HEADER: self.seat_id} if self.seat_id is not None else None

        async def send() -> None:
            try:
                response = await http.post(path, json=body or {}, headers=headers, timeout=10)
                if response.status_code == 409 and headers is not None and '"field":"seat"' in response.text:
                    self.read_only = True  # the service gave the seat to another console
                if response.status_code >= 400:
                    self.errors.append(f"{path}: {response.status_code} {response.text[:200]}")
            except httpx.HTTPError as exc:
                self.errors.append(f"{path}: {type(exc).__name__}: {exc}")

        asyncio.run_coroutine_threadsafe(send(), loop)
        return True

    def lock(self, reason: str = "operator lock", by: str = "operator") -> bool:
        return self.command("/v1/lock", {"reason": reason})

    def unlock(self, reason: str = "operator unlock", by: str = "operator") -> bool:
        return self.command("/v1/unlock", {"reason": reason})

    def pause(self, by: str = "operator") -> None:
        self.command("/v1/pause")

    def resume(self, by: str = "operator") -> None:
        self.command("/v1/resume")

    def release_seat(self) -> None:
        """Give the seat back from outside the console's loop (after it ended)."""
        seat_id, self.seat_id = self.seat_id, None
        if seat_id is None:
            return
        try:
            httpx.delete(f"{self.url}/v1/seat/{seat_id}", headers={"Authorization": f"Bearer {self.token}"}, timeout=2)
        except httpx.HTTPError:
            pass

    def stop(self, reason: str = "console detached") -> None:
        """Detach: stop following the stream (the service runs on)."""
        self._stopping = True
        loop, stream = self._loop, self._stream
        if loop is not None and stream is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stream.cancel)


def check_attach(url: str, token: str) -> dict[str, Any]:
    """The service's state, or a clear error (wrong URL, bad token) before the UI starts."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/state", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    except httpx.HTTPError as exc:
        raise AttachError(f"--attach: cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        try:
            message = str(response.json().get("error"))
        except ValueError:
            message = response.text[:200]
        raise AttachError(f"--attach: {url} refused the console ({response.status_code}): {message}")
    state: dict[str, Any] = response.json()
    return state


def console_label() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"[:200]


def claim_seat(url: str, token: str) -> str:
    """Claim the operator seat; `SeatTaken` (one line, naming the holder) when another console has it."""
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/v1/seat",
            json={"console": console_label()},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except httpx.HTTPError as exc:
        raise AttachError(f"--attach: cannot reach {url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    if response.status_code == 201:
        return str(body["seat_id"])
    message = str(body.get("error"))
    if response.status_code == 409:
        raise SeatTaken(f"--attach: {url}: {message}")
    raise AttachError(f"--attach: {url} refused the console ({response.status_code}): {message}")


def attached_app(
    url: str,
    token: str,
    *,
    read_only: bool,
    now: Callable[[], datetime] | None = None,
    arm_delay: float = DEFAULT_ARM_DELAY_S,
) -> Any:
    """The attached console; an operator one (not `read_only`) holds the operator seat first."""
    state = check_attach(url, token)
    seat_id = None if read_only else claim_seat(url, token)
    client = RemoteGateClient(url, token, read_only=read_only, seat_id=seat_id)
    seat = state.get("operator_seat")
    if read_only and isinstance(seat, dict) and seat.get("held"):
        holder = inert(f"{seat.get('operator')} ({seat.get('console')})", 200)
        client.badge += f"; operator seat: {holder}"
    elif not read_only:
        client.badge = f"[OP] operator seat, attached to {inert(client.url, 200)}"
    client.controller.locked = bool(state.get("locked"))
    client.controller.lock_reason = str(state.get("lock_reason") or "")
    client.paused = bool(state.get("paused"))
    return make_app(client, client.gate, now=now, arm_delay=arm_delay)  # type: ignore[arg-type]


def attached_console(args: argparse.Namespace) -> Any:
    """`phase24 console --attach URL`'s console, with the console options (keys file, bell,
    desktop notification, arming delay) as for a console on plans. A bad keys file stops us
    before the operator seat is taken; a refused attach raises AttachError."""
    token = args.token or os.environ.get("PHASE24_TOKEN", "")
    if not token:
        raise AttachError("--attach needs a token: --token TOKEN or the PHASE24_TOKEN environment variable")
    keymap = load_console_keymap(args, OperatorConsole)
    app = attached_app(args.attach, token, read_only=args.read_only, arm_delay=arm_delay_of(args))
    apply_console_options(app, args, keymap)
    return app


def run_attached(args: argparse.Namespace) -> int:
    try:
        app = attached_console(args)
    except AttachError as exc:
        import sys

        sys.stderr.write(f"phase24: error: {inert(str(exc), 2000)}\n")
        return SEAT_TAKEN if isinstance(exc, SeatTaken) else exit_codes.BAD_INPUT
    try:
        code = app.run()
    finally:
        app.harness.release_seat()  # when the console's loop could not give it back itself
    errors = app.harness.errors
    if errors:
        print(json.dumps({"attach_errors": errors[-5:]}))
    return code if code is not None else exit_codes.OK
