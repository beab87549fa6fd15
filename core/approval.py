"""The Phase 13 approval gate as a port: the core awaits a decision, adapters supply it.

An `ApprovalRequest` carries everything an operator needs to judge one escalation and the
canonical hash of the exact action; the decision is bound to that hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from core.canonical import canonical_json
from core.contracts import ExecutionMode, RiskLevel
from core.loop_bridge import call_on_loop


def canonical_action_hash(agent: str, tool: str, args: dict[str, Any], plan_id: str, mode: ExecutionMode) -> str:
    """SHA-256 over a canonical JSON of what makes an action *this* action.

    Plans refuse arguments that would not round-trip (core.canonical), so the hash a resumed
    run computes from `run.json` is the hash the interrupted run recorded.
    """
    payload = canonical_json({"agent": agent, "tool": tool, "args": args, "plan_id": plan_id, "mode": mode.value})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


EDITED_ARGS_MAX_BYTES = 256 * 1024
EDITED_ARGS_MAX_DEPTH = 64


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting no further than `limit` + 1."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def edited_args_problem(args: Any) -> str | None:
    """Why operator-edited arguments cannot be approved, or None when they can.

    They must be a JSON object that survives canonical JSON unchanged (what is hashed is
    exactly what runs): finite numbers, strings without lone surrogates, bounded size and depth.
    """
    if not isinstance(args, dict):
        return "the arguments must be a JSON object"
    if _depth(args, EDITED_ARGS_MAX_DEPTH) > EDITED_ARGS_MAX_DEPTH:
        return f"nested deeper than {EDITED_ARGS_MAX_DEPTH} levels"
    try:
        text = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        encoded = text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        return f"not canonical JSON: {exc}"
    if len(encoded) > EDITED_ARGS_MAX_BYTES:
        return f"larger than {EDITED_ARGS_MAX_BYTES} bytes"
    if json.loads(text) != args:
        return "does not survive a JSON round trip unchanged"
    return None


class ApprovalRequest(BaseModel):
    """One HIGH-risk LIVE escalation waiting for a human (or a policy)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    risk_level: RiskLevel
    reversible: bool
    confidence: float
    threshold: float
    args: dict[str, Any]
    action_hash: str
    requested_at: datetime
    timeout_s: float

    @property
    def expires_at(self) -> datetime:
        return self.requested_at + timedelta(seconds=self.timeout_s)


class ApprovalOutcome(StrEnum):
    """What became of a request: each is its own record in the decisions log and the journal."""

    APPROVED = "APPROVE"
    DENIED = "DENY"
    EXPIRED = "EXPIRED"  # nobody answered before the countdown ended: fails closed like a deny
    DENIED_EARLIER = "DENIED_EARLIER"  # an identical call (same hash) was denied earlier in the run
    DENIED_AND_STOPPED = "DENY_AND_STOP"  # denied, and the agent's remaining actions are stopped


class ApprovalDecision(BaseModel):
    """An answer bound to the action hash of the request it answers.

    An operator may edit the arguments before approving: `edited_args` then holds them and
    `action_hash` is the hash of the action *with the edited arguments*; the original request's
    hash stays on the request. `args_fully_visible` says whether the arguments were entirely on
    screen when the key was pressed (None: not shown to a person, e.g. a policy).
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    action_hash: str
    approved: bool
    decided_by: str
    reason: str = ""
    outcome: ApprovalOutcome | None = None
    edited_args: dict[str, Any] | None = None
    args_fully_visible: bool | None = None

    @property
    def kind(self) -> ApprovalOutcome:
        if self.outcome is not None:
            return self.outcome
        return ApprovalOutcome.APPROVED if self.approved else ApprovalOutcome.DENIED


class ApprovalGate(Protocol):
    """What the core awaits for each action that needs an approval."""

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision: ...

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        """Deny every pending request (the lock and quit call this)."""
        ...


def deny(
    request: ApprovalRequest,
    by: str,
    reason: str,
    *,
    outcome: ApprovalOutcome = ApprovalOutcome.DENIED,
    args_fully_visible: bool | None = None,
) -> ApprovalDecision:
    return ApprovalDecision(
        request_id=request.request_id,
        action_hash=request.action_hash,
        approved=False,
        decided_by=by,
        reason=reason,
        outcome=outcome,
        args_fully_visible=args_fully_visible,
    )


def expire(request: ApprovalRequest, reason: str = "") -> ApprovalDecision:
    """Nobody answered in time: EXPIRED, which fails closed (the action does not run)."""
    return deny(
        request,
        "timeout",
        reason or f"no answer within {request.timeout_s:g}s",
        outcome=ApprovalOutcome.EXPIRED,
    )


def grant(
    request: ApprovalRequest,
    by: str,
    reason: str = "",
    *,
    edited_args: dict[str, Any] | None = None,
    args_fully_visible: bool | None = None,
) -> ApprovalDecision:
    """Approve `request`; with `edited_args`, approve the action with those arguments instead
    (the decision then binds to the hash of the edited action, never to the original)."""
    action_hash = request.action_hash
    if edited_args is not None:
        action_hash = canonical_action_hash(
            request.agent, request.tool, edited_args, request.plan_id, ExecutionMode.LIVE
        )
    return ApprovalDecision(
        request_id=request.request_id,
        action_hash=action_hash,
        approved=True,
        decided_by=by,
        reason=reason,
        outcome=ApprovalOutcome.APPROVED,
        edited_args=edited_args,
        args_fully_visible=args_fully_visible,
    )


class PolicyGate:
    """Headless runs: deny everything by default; `approve_all=True` only when asked."""

    def __init__(self, approve_all: bool = False) -> None:
        self.approve_all = approve_all

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        if self.approve_all:
            return grant(request, "policy:approve-all", "--approve-all was given")
        return deny(request, "policy:deny-by-default", "headless run denies by default")

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        """Policy decisions are immediate: nothing is ever pending."""


class CallbackGate:
    """Adapter for the report's `approval_gate_callback(tool_name, confidence) -> bool`.

    A callback that raises, or returns anything but True, denies.
    """

    def __init__(self, callback: Callable[[str, float], bool], name: str = "phase13-callback") -> None:
        self.callback = callback
        self.name = name

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        try:
            answer = self.callback(request.tool, request.confidence)
        except Exception as exc:
            return deny(request, self.name, f"callback raised {type(exc).__name__}: {exc}")
        if answer is True:
            return grant(request, self.name, "callback returned True")
        return deny(request, self.name, f"callback returned {answer!r}")

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        """Callbacks answer synchronously: nothing is ever pending."""


class QueueGate:
    """A gate whose decisions come from elsewhere (the console, a test): requests wait.

    `pending` holds the requests not yet answered, oldest first. `answer()` resolves one;
    `cancel_pending()` denies them all. Thread-safe: answers may come from another thread.

    With `timeout_from_shown=True` the gate times its requests itself: a request's countdown
    starts when `mark_shown()` says a person can see it (queued prompts do not lose their time
    while they wait behind another), and it ends EXPIRED. The controller then does not apply its
    own timeout (`times_requests`).
    """

    def __init__(
        self,
        on_request: Callable[[ApprovalRequest], None] | None = None,
        *,
        timeout_from_shown: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_request = on_request
        self.times_requests = timeout_from_shown
        self._monotonic = monotonic
        self._waiting: dict[str, tuple[ApprovalRequest, asyncio.Future[ApprovalDecision]]] = {}
        self._shown_at: dict[str, float] = {}
        self._shown: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> list[ApprovalRequest]:
        return [request for request, _ in list(self._waiting.values())]

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._waiting

    def mark_shown(self, request_id: str) -> None:
        """A person can now see `request_id`: its countdown starts (once). Any thread."""
        if request_id in self._waiting and request_id not in self._shown_at:
            self._shown_at[request_id] = self._monotonic()
            shown = self._shown.get(request_id)
            if shown is not None and self._loop is not None:
                call_on_loop(self._loop, shown.set)

    def seconds_left(self, request: ApprovalRequest) -> float | None:
        """Seconds before `request` expires; None while its countdown has not started."""
        return self.seconds_left_of(request.request_id, request.timeout_s)

    def seconds_left_of(self, request_id: str, timeout_s: float) -> float | None:
        shown = self._shown_at.get(request_id)
        if shown is None:
            return None
        return max(0.0, shown + timeout_s - self._monotonic())

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        self._loop = asyncio.get_running_loop()
        future: asyncio.Future[ApprovalDecision] = self._loop.create_future()
        self._waiting[request.request_id] = (request, future)
        try:
            if self.on_request is not None:
                self.on_request(request)
            if not self.times_requests:
                return await future
            # Until it is shown there is no countdown: wait (without polling) for the answer or
            # for the prompt to be shown; then the countdown runs to EXPIRED.
            shown = self._shown[request.request_id] = asyncio.Event()
            if request.request_id in self._shown_at:
                shown.set()
            shown_wait = asyncio.ensure_future(shown.wait())
            try:
                waiters: list[asyncio.Future[Any]] = [future, shown_wait]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                shown_wait.cancel()
            if future.done():
                return future.result()
            left = self.seconds_left(request) or 0.0
            try:
                return await asyncio.wait_for(asyncio.shield(future), left)
            except TimeoutError:
                return expire(request)
        finally:
            self._waiting.pop(request.request_id, None)
            self._shown_at.pop(request.request_id, None)
            self._shown.pop(request.request_id, None)

    def answer(self, decision: ApprovalDecision) -> bool:
        """Resolve a pending request; False if it is no longer pending."""
        entry = self._waiting.get(decision.request_id)
        if entry is None or self._loop is None:
            return False
        _, future = entry

        def resolve() -> None:
            if not future.done():
                future.set_result(decision)

        call_on_loop(self._loop, resolve)
        return True

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        for request, _ in list(self._waiting.values()):
            self.answer(deny(request, by, reason))

    def deny_agent(self, agent: str, reason: str) -> None:
        """Deny every pending request of `agent` (the operator stopped it)."""
        for request, _ in list(self._waiting.values()):
            if request.agent == agent:
                self.answer(deny(request, "operator", reason))
