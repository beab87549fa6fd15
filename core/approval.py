"""The Phase 13 approval gate as a port: the core awaits a decision, adapters supply it.

An `ApprovalRequest` carries everything an operator needs to judge one escalation and the
canonical hash of the exact action; the decision is bound to that hash.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
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


class ApprovalDecision(BaseModel):
    """An answer bound to the action hash of the request it answers."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    action_hash: str
    approved: bool
    decided_by: str
    reason: str = ""


class ApprovalGate(Protocol):
    """What the core awaits for each action that needs an approval."""

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision: ...

    def cancel_pending(self, reason: str) -> None:
        """Deny every pending request (the lock calls this)."""
        ...


def deny(request: ApprovalRequest, by: str, reason: str) -> ApprovalDecision:
    return ApprovalDecision(
        request_id=request.request_id,
        action_hash=request.action_hash,
        approved=False,
        decided_by=by,
        reason=reason,
    )


def grant(request: ApprovalRequest, by: str, reason: str = "") -> ApprovalDecision:
    return ApprovalDecision(
        request_id=request.request_id,
        action_hash=request.action_hash,
        approved=True,
        decided_by=by,
        reason=reason,
    )


class PolicyGate:
    """Headless runs: deny everything by default; `approve_all=True` only when asked."""

    def __init__(self, approve_all: bool = False) -> None:
        self.approve_all = approve_all

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        if self.approve_all:
            return grant(request, "policy:approve-all", "--approve-all was given")
        return deny(request, "policy:deny-by-default", "headless run denies by default")

    def cancel_pending(self, reason: str) -> None:
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

    def cancel_pending(self, reason: str) -> None:
        """Callbacks answer synchronously: nothing is ever pending."""


class QueueGate:
    """A gate whose decisions come from elsewhere (the console, a test): requests wait.

    `pending` holds the requests not yet answered, oldest first. `answer()` resolves one;
    `cancel_pending()` denies them all. Thread-safe: answers may come from another thread.
    """

    def __init__(self, on_request: Callable[[ApprovalRequest], None] | None = None) -> None:
        self.on_request = on_request
        self._waiting: dict[str, tuple[ApprovalRequest, asyncio.Future[ApprovalDecision]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> list[ApprovalRequest]:
        return [request for request, _ in list(self._waiting.values())]

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        self._loop = asyncio.get_running_loop()
        future: asyncio.Future[ApprovalDecision] = self._loop.create_future()
        self._waiting[request.request_id] = (request, future)
        try:
            if self.on_request is not None:
                self.on_request(request)
            return await future
        finally:
            self._waiting.pop(request.request_id, None)

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

    def cancel_pending(self, reason: str) -> None:
        for request, _ in list(self._waiting.values()):
            self.answer(deny(request, "lock", reason))
