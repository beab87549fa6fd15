"""The execution controller: one action's climb MOCK -> DRY_RUN -> LIVE, and the system lock.

Every action starts in MOCK and climbs one mode at a time, as far as its risk, confidence,
the run's ceiling and the lock allow. HIGH-risk LIVE waits for an approval bound to the
action's canonical hash. Every transition is checked against `ALLOWED_TRANSITIONS`
(an illegal one raises `TransitionNotAllowed`) and published as a `StateTransition` event.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from core.approval import (
    ApprovalDecision,
    ApprovalGate,
    ApprovalOutcome,
    ApprovalRequest,
    canonical_action_hash,
    deny,
    edited_args_problem,
    expire,
)
from core.bindings import ExecutionOutcome, ModeImplementation, ToolBinding, ToolCall
from core.contracts import ExecutionMode, RiskLevel, ToolContract, ToolContractRegistry
from core.errors import Phase24Error, TransitionNotAllowed
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventBus,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
)
from core.faults import crash_point
from core.journal import DuplicateIntent
from core.loop_bridge import call_on_loop
from core.plans import PlannedAction


class ExecutionState(StrEnum):
    MOCK = "MOCK"
    DRY_RUN = "DRY_RUN"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    LIVE = "LIVE"
    ROLLBACK = "ROLLBACK"
    LOCKED = "LOCKED"
    ABORTED = "ABORTED"
    COMPLETED = "COMPLETED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {ExecutionState.LOCKED, ExecutionState.ABORTED, ExecutionState.COMPLETED}
S = ExecutionState

#: The one state machine (README: "Execution state machine").
ALLOWED_TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    S.MOCK: frozenset({S.DRY_RUN, S.COMPLETED, S.LOCKED, S.ROLLBACK, S.ABORTED}),
    S.DRY_RUN: frozenset({S.AWAITING_APPROVAL, S.LIVE, S.COMPLETED, S.LOCKED, S.ROLLBACK, S.ABORTED}),
    S.AWAITING_APPROVAL: frozenset({S.LIVE, S.LOCKED, S.ABORTED}),
    S.LIVE: frozenset({S.COMPLETED, S.ROLLBACK, S.LOCKED, S.ABORTED}),
    S.ROLLBACK: frozenset({S.ABORTED}),
    S.LOCKED: frozenset(),
    S.ABORTED: frozenset(),
    S.COMPLETED: frozenset(),
}

#: Risk -> (minimum confidence for DRY_RUN, minimum confidence for LIVE). HIGH LIVE also
#: needs an explicit approval.
CONFIDENCE_THRESHOLDS: dict[RiskLevel, tuple[float, float]] = {
    RiskLevel.LOW: (0.5, 0.7),
    RiskLevel.MEDIUM: (0.65, 0.8),
    RiskLevel.HIGH: (0.8, 0.85),
}


def evaluate_execution_mode(risk: RiskLevel, confidence: float, live_floor: float | None = None) -> ExecutionMode:
    """The highest mode risk and confidence allow (approval is checked separately)."""
    dry, live = CONFIDENCE_THRESHOLDS[risk]
    if live_floor is not None:
        live = max(live, live_floor)
    if confidence >= live:
        return ExecutionMode.LIVE
    if confidence >= dry:
        return ExecutionMode.DRY_RUN
    return ExecutionMode.MOCK


def live_threshold(risk: RiskLevel, live_floor: float | None = None) -> float:
    live = CONFIDENCE_THRESHOLDS[risk][1]
    return live if live_floor is None else max(live, live_floor)


@dataclass(slots=True)
class ModeRun:
    mode: ExecutionMode
    success: bool
    duration_ms: float
    attempt: int
    error: str | None = None
    timed_out: bool = False


@dataclass(slots=True)
class ExecutionContext:
    """One action as the controller sees it while it climbs."""

    plan_id: str
    action: PlannedAction
    contract: ToolContract
    agent: str
    mode_cap: ExecutionMode = ExecutionMode.LIVE
    state: ExecutionState = ExecutionState.MOCK
    target_mode: ExecutionMode = ExecutionMode.MOCK
    runs: list[ModeRun] = field(default_factory=list)
    approval: dict[str, Any] | None = None
    reason: str = ""
    failure: str | None = None
    locked_out: bool = False
    held_by_system_lock: bool = False  # LOCKED by the system lock (stays at MOCK), not by a denial
    outcome_unknown: bool = False
    #: The journal's status of this action's LIVE intent when a resumed run found one
    #: (DONE: done before the restart, so it belongs on the rollback stack).
    journal_status: str | None = None

    @property
    def action_id(self) -> str:
        return self.action.id

    @property
    def tool(self) -> str:
        return self.action.tool

    @property
    def confidence(self) -> float:
        return self.action.confidence

    @property
    def highest_mode(self) -> ExecutionMode | None:
        # Modes run in order, so the last successful run is the highest.
        for run in reversed(self.runs):
            if run.success:
                return run.mode
        return None

    #: (action, agent, mode, hash) of the last hash computed: an action's LIVE hash is asked
    #: for several times (duplicate check, approval, intent); an edited action is a new object.
    _hash_memo: tuple[Any, str, ExecutionMode, str] | None = field(default=None, repr=False, compare=False)

    def action_hash(self, mode: ExecutionMode = ExecutionMode.LIVE) -> str:
        memo = self._hash_memo
        if memo is not None and memo[0] is self.action and memo[1] == self.agent and memo[2] is mode:
            return memo[3]
        digest = canonical_action_hash(self.agent, self.tool, self.action.args, self.plan_id, mode)
        self._hash_memo = (self.action, self.agent, mode, digest)
        return digest

    def intent_key(self) -> str:
        """The journal key of this action's LIVE intent.

        Irreversible actions are keyed by their canonical hash alone, so the same effect is
        blocked even when it comes back under another action id (also across restarts).
        Reversible ones may legitimately repeat, so their key adds the action id.
        """
        digest = self.action_hash()
        return digest if not self.contract.reversible else f"{digest}:{self.action_id}"


class TransitionRecord(NamedTuple):
    plan_id: str
    action_id: str
    from_state: ExecutionState
    to_state: ExecutionState
    timestamp: datetime
    reason: str


class IntentLedger(Protocol):
    """Durable record of LIVE actions with external effects (the journal implements it)."""

    def record_intent(
        self, action_hash: str, plan_id: str, action_id: str, agent: str, tool: str, approval_id: str | None
    ) -> None:
        """Durably record the intent, together with every event published before it."""
        ...

    def record_outcome(self, action_hash: str, success: bool) -> None: ...

    def record_unknown(self, action_hash: str) -> None:
        """The LIVE run may have had its effect but did not say so: never retried."""
        ...

    def intent_status(self, action_hash: str) -> str | None: ...


LockStore = Callable[[bool, str, str], None]  # (locked, reason, by): record a lock or an unlock durably
"""Persists the lock: called with the reason when locking, with "" when unlocking."""


RetryPolicy = Callable[[ExecutionContext, ExecutionMode, int, ExecutionOutcome], Awaitable[float | None]]
"""Called on a timeout: seconds to wait before retrying, or None to give up."""


class ExecutionController:
    """Runs actions through the state machine; owns the lock and the approval port.

    `lock_system` and `unlock_system` may be called from any thread: the flag flips at
    once (every check reads it), the events and the denial of pending approvals happen
    on the core's loop.
    """

    def __init__(
        self,
        registry: ToolContractRegistry,
        bus: EventBus,
        gate: ApprovalGate,
        *,
        mode_ceiling: ExecutionMode = ExecutionMode.LIVE,
        live_floor: float | None = None,
        max_live_escalations: int | None = None,
        approval_timeout_s: float = 120.0,
        audit_limit: int = 10_000,
        ledger: IntentLedger | None = None,
        lock_store: LockStore | None = None,
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.gate = gate
        self.mode_ceiling = mode_ceiling
        self.live_floor = live_floor
        self.max_live_escalations = max_live_escalations
        self.approval_timeout_s = approval_timeout_s
        self.audit_trail: deque[TransitionRecord] = deque(maxlen=audit_limit)
        self.ledger = ledger
        self.lock_store = lock_store
        self.on_storage_failure: Callable[[str], None] | None = None
        self.live_escalations = 0
        self._locked = False
        self._lock_reason = ""
        self._unannounced: tuple[str, str] | None = None
        self._request_counter = 0
        self._lock_generation = 0
        self._used_approvals: set[str] = set()
        # Hashes of calls the operator (or a policy) denied: an identical call is refused
        # without a new prompt for the rest of the run ("denied earlier").
        self.denied_hashes: set[str] = set()
        self.denied_earlier = 0
        # Agents the operator stopped with "deny and stop": their remaining actions are cancelled.
        self.stopped_agents: dict[str, str] = {}
        # Set when the operator quits: nothing escalates any more, whatever the lock says.
        self.stop_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_lock = threading.Lock()

    # -- the lock ---------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def lock_reason(self) -> str:
        return self._lock_reason

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def lock_system(self, reason: str = "operator lock", by: str = "operator") -> bool:
        """Force MOCK-only for everything not yet executed; deny pending approvals.

        Returns False when the system was already locked.
        """
        with self._thread_lock:
            # A lock always supersedes an unlock still on its way to the core's loop.
            self._lock_generation += 1
            if self._locked:
                return False
            self._locked = True
            self._lock_reason = reason
            self._unannounced = (reason, by)
        self._on_core(self._announce_pending)
        return True

    def _announce_pending(self) -> None:
        """Publish a lock taken on another thread, once, on the core's thread.

        Called by the scheduled callback and by every lock check, whichever comes first, so
        the SystemLocked event always precedes the transitions the lock causes.
        """
        with self._thread_lock:
            pending, self._unannounced = self._unannounced, None
        if pending is not None:
            self.announce_lock(*pending)

    def _held_by_lock(self, ctx: ExecutionContext) -> bool:
        """If the system is locked (or the run is stopping, or the operator stopped this
        agent), hold the action here (LOCKED) and say so."""
        if self._lock_seen():
            ctx.held_by_system_lock = True
            self.transition(ctx, S.LOCKED, f"system locked: {self._lock_reason}")
            return True
        why = self.escalation_stopped(ctx.agent)
        if why is None:
            return False
        self.transition(ctx, S.LOCKED, f"not escalated: {why}")
        return True

    def escalation_stopped(self, agent: str) -> str | None:
        """Why nothing of `agent` may escalate any more (the operator quit, or stopped it)."""
        if self.stop_reason is not None:
            return self.stop_reason
        return self.stopped_agents.get(agent)

    def stop_run(self, reason: str, by: str = "operator") -> None:
        """The run is stopping (the operator quit, a service stops): nothing escalates from now
        on; waiting requests are denied by `by`."""
        self.stop_reason = reason
        self.gate.cancel_pending(reason, by=by)

    def stop_agent(self, agent: str, reason: str) -> None:
        """Stop every remaining action of `agent` (deny and stop)."""
        self.stopped_agents.setdefault(agent, reason)
        deny_agent = getattr(self.gate, "deny_agent", None)
        if deny_agent is not None:
            deny_agent(agent, reason)

    def _lock_seen(self) -> bool:
        if self._locked:
            if self._unannounced is not None:
                self._announce_pending()
            return True
        return False

    def unlock_system(self, reason: str = "operator unlock", by: str = "operator") -> bool:
        """Unlock after the unlock is durably recorded (the unsafe direction waits for storage)."""
        if not self._locked:
            return False
        generation = self._lock_generation
        self._on_core(lambda: self._apply_unlock(reason, by, generation))
        return True

    def _apply_unlock(self, reason: str, by: str, generation: int) -> None:
        self._announce_pending()
        if not self._locked or generation != self._lock_generation:
            return  # already unlocked, or a lock was requested after this unlock: the lock wins
        if self.lock_store is not None:
            try:
                self.lock_store(False, reason, by)
            except Phase24Error as exc:
                self._lock_reason = f"unlock refused, storage failed: {exc}"
                return
        with self._thread_lock:
            self._locked = False
            self._lock_reason = ""
        self.bus.emit(SystemUnlocked, reason=reason, by=by)

    def restore_lock(self, reason: str) -> None:
        """Start locked without a new event (a resumed run whose journal ends locked)."""
        self._locked = True
        self._lock_reason = reason

    def announce_lock(self, reason: str, by: str) -> None:
        """Deny what waits, say so at once, then record the lock durably.

        The in-memory flag already holds everything at MOCK; the SystemLocked event goes out
        before the (fsynced) lock records are written, so the operator sees the lock without
        waiting for the disk. Nothing can go LIVE before those records are durable: a LIVE
        start waits for a durability barrier, which commits the journal's lock record too.
        """
        self.gate.cancel_pending(f"system locked: {reason}")
        self.bus.emit(SystemLocked, reason=reason, by=by)
        if self.lock_store is not None:
            try:
                self.lock_store(True, reason, by)
            except Phase24Error:
                pass  # already locked in memory; the storage failure locks too

    def _on_core(self, fn: Callable[[], object]) -> None:
        call_on_loop(self._loop, fn)

    # -- the state machine ------------------------------------------------------------

    def evaluate_execution_mode(self, tool_name: str, confidence: float) -> ExecutionMode:
        contract = self.registry.get(tool_name)
        return evaluate_execution_mode(contract.risk_level, confidence, self.live_floor)

    def transition(self, ctx: ExecutionContext, to_state: ExecutionState, reason: str) -> None:
        if to_state not in ALLOWED_TRANSITIONS[ctx.state]:
            raise TransitionNotAllowed(ctx.state.value, to_state.value, ctx.action_id)
        from_state = ctx.state
        ctx.state = to_state
        ctx.reason = reason
        # Exact types (mypy-checked): the plan's validated ids, the states' str values, the reason.
        event = self.bus.emit_exact(
            StateTransition,
            plan_id=ctx.plan_id,
            action_id=ctx.action_id,
            agent=ctx.agent,
            tool=ctx.tool,
            from_state=from_state._value_,
            to_state=to_state._value_,
            reason=reason,
        )
        self.audit_trail.append(TransitionRecord(ctx.plan_id, ctx.action_id, from_state, to_state, event.ts, reason))
        crash_point("after_transition")

    def target_for(self, ctx: ExecutionContext) -> tuple[ExecutionMode, str]:
        """The mode this action may reach, and why it stops there."""
        wanted = evaluate_execution_mode(ctx.contract.risk_level, ctx.confidence, self.live_floor)
        target, why = wanted, f"confidence {ctx.confidence:.2f} allows {wanted.value}"
        if ctx.mode_cap.rank < target.rank:
            target, why = ctx.mode_cap, f"capped at {ctx.mode_cap.value} by conflict resolution"
        if self.mode_ceiling.rank < target.rank:
            target, why = self.mode_ceiling, f"run ceiling is {self.mode_ceiling.value}"
        return target, why

    async def _run_mode(
        self,
        ctx: ExecutionContext,
        implementation: ModeImplementation,
        mode: ExecutionMode,
        retry: RetryPolicy | None,
    ) -> bool:
        """Run `implementation`, the binding's step for `mode` and only for it (swap, not flag)."""
        attempt = 1
        while True:
            outcome = await implementation(ToolCall(ctx.plan_id, ctx.action, ctx.agent, attempt))
            ctx.runs.append(
                ModeRun(
                    mode,
                    outcome.success,
                    outcome.duration_ms,
                    attempt,
                    outcome.error,
                    outcome.timed_out,
                )
            )
            # The outcome comes from a binding: its values skip validation only when each is
            # exactly of its field's type (an int duration is validated, and so made a float).
            confidence = ctx.confidence
            emit = (
                self.bus.emit_exact
                if type(outcome.duration_ms) is float
                and type(confidence) is float
                and type(outcome.success) is bool
                and type(outcome.timed_out) is bool
                and type(outcome.simulated) is bool
                and (outcome.error is None or type(outcome.error) is str)
                else self.bus.emit
            )
            emit(
                ToolExecuted,
                plan_id=ctx.plan_id,
                action_id=ctx.action_id,
                agent=ctx.agent,
                tool=ctx.tool,
                mode=mode,
                success=outcome.success,
                duration_ms=outcome.duration_ms,
                confidence=confidence,
                attempt=attempt,
                error=outcome.error,
                timed_out=outcome.timed_out,
                simulated=outcome.simulated,
            )
            if outcome.success:
                return True
            if outcome.effect_unknown:
                # The effect may have happened: never retried.
                ctx.outcome_unknown = True
                ctx.failure = f"outcome UNKNOWN, the effect may have happened (never retried): {outcome.error}"
                return False
            if outcome.timed_out and retry is not None:
                delay = await retry(ctx, mode, attempt, outcome)
                if delay is not None:
                    attempt += 1
                    await self.bus.clock.sleep(delay)
                    if mode is not ExecutionMode.MOCK and self._lock_seen():
                        ctx.failure = "system locked while waiting to retry"
                        ctx.locked_out = True
                        return False
                    continue
            ctx.failure = outcome.error or "execution failed"
            return False

    async def run_action(
        self, ctx: ExecutionContext, binding: ToolBinding, retry: RetryPolicy | None = None
    ) -> ExecutionContext:
        """Climb as far as allowed. Ends COMPLETED, LOCKED, or (on failure) ROLLBACK.

        Each step gets only its own mode's implementation from `binding`; the live one is
        handed to the LIVE step alone. A failed action is left in ROLLBACK: the orchestrator
        unwinds the plan's rollback stack and then moves it to ABORTED.
        """
        if not await self._run_mode(ctx, binding.mock, ExecutionMode.MOCK, retry):
            self.transition(ctx, S.ROLLBACK, f"MOCK execution failed: {ctx.failure}")
            return ctx
        target, why = self.target_for(ctx)
        ctx.target_mode = target
        if self._held_by_lock(ctx):
            return ctx
        if target is ExecutionMode.MOCK:
            self.transition(ctx, S.COMPLETED, f"MOCK succeeded; {why}")
            return ctx

        self.transition(ctx, S.DRY_RUN, f"MOCK succeeded; {why}")
        if self._held_by_lock(ctx):
            return ctx
        if not await self._run_mode(ctx, binding.dry_run, ExecutionMode.DRY_RUN, retry):
            if ctx.locked_out:
                # Not a failure: the lock arrived while a timed-out DRY_RUN waited to retry.
                self.transition(ctx, S.LOCKED, f"system locked: {self._lock_reason}")
            else:
                self.transition(ctx, S.ROLLBACK, f"DRY_RUN execution failed: {ctx.failure}")
            return ctx
        if self._held_by_lock(ctx):
            return ctx
        if target is ExecutionMode.DRY_RUN:
            self.transition(ctx, S.COMPLETED, f"DRY_RUN succeeded; {why}")
            return ctx
        if self.max_live_escalations is not None and self.live_escalations >= self.max_live_escalations:
            self.transition(
                ctx,
                S.COMPLETED,
                f"DRY_RUN succeeded; max_live_escalations ({self.max_live_escalations}) reached",
            )
            return ctx

        if not ctx.contract.read_only and self.ledger is not None:
            status = self.ledger.intent_status(ctx.intent_key())
            ctx.journal_status = status
            if status == "DONE":
                self.transition(
                    ctx, S.COMPLETED, "LIVE already done before a restart (journal intent DONE); not repeated"
                )
                return ctx
            if status is not None:
                self.transition(ctx, S.ABORTED, f"journal holds this action's LIVE intent as {status}; never retried")
                return ctx
        if ctx.contract.requires_approval:
            if ctx.action_hash() in self.denied_hashes:
                self._refuse_denied_earlier(ctx)
                return ctx
            self.transition(ctx, S.AWAITING_APPROVAL, "HIGH-risk LIVE escalation needs an approval")
            decision = await self._await_approval(ctx)
            if not decision.approved:
                # Denied because the system is locked: held at MOCK by the lock, like the rest.
                ctx.held_by_system_lock = decision.decided_by == "lock" and self._locked
                outcome = decision.kind
                verb = {
                    ApprovalOutcome.EXPIRED: "approval EXPIRED",
                    ApprovalOutcome.DENIED_AND_STOPPED: "approval denied and agent stopped",
                }.get(outcome, "approval denied")
                self.transition(ctx, S.LOCKED, f"{verb} by {decision.decided_by}: {decision.reason}")
                return ctx
        return await self._go_live(ctx, binding.live, retry, why)

    def _refuse_denied_earlier(self, ctx: ExecutionContext) -> None:
        """An identical call was denied earlier in the run: refuse it without asking again."""
        request = self._new_request(ctx)
        self.denied_earlier += 1
        reason = "denied earlier: an identical call (same action hash) was denied in this run; not asked again"
        self._record_decision(ctx, request, deny(request, "gate", reason, outcome=ApprovalOutcome.DENIED_EARLIER))
        self.transition(ctx, S.LOCKED, reason)

    async def _go_live(
        self, ctx: ExecutionContext, live: ModeImplementation, retry: RetryPolicy | None, why: str
    ) -> ExecutionContext:
        if ctx.approval is not None and ctx.approval["action_hash"] != ctx.action_hash():
            self.transition(ctx, S.LOCKED, "action changed after approval; approval does not cover it")
            return ctx
        effectful = not ctx.contract.read_only
        if not (effectful and self.ledger is not None):
            # With an intent to record, that one durable commit is the barrier (it carries
            # every event published so far); without one, commit them now.
            try:
                await self.bus.barrier()
            except Phase24Error as exc:
                return self._storage_failed(ctx, exc)
        if self._held_by_lock(ctx):
            return ctx
        self.live_escalations += 1
        if effectful and self.ledger is not None:
            crash_point("before_intent")
            try:
                self.ledger.record_intent(
                    ctx.intent_key(),
                    ctx.plan_id,
                    ctx.action_id,
                    ctx.agent,
                    ctx.tool,
                    ctx.approval["request_id"] if ctx.approval else None,
                )
                # The intent, with every event before it, is durable before the effect: one
                # commit shared with every agent that reached a barrier at the same time.
                await self.bus.barrier()
            except DuplicateIntent:
                self.transition(ctx, S.LOCKED, "duplicate irreversible action: the journal already holds its intent")
                return ctx
            except Phase24Error as exc:
                return self._storage_failed(ctx, exc)
            crash_point("after_intent")
            if self._held_by_lock(ctx):
                # The lock (or a stop) landed while this agent waited for the shared commit:
                # nothing enters LIVE after it. The recorded intent is settled as not done.
                self._settle_intent(ctx, ok=False)
                return ctx
        self.transition(ctx, S.LIVE, "approval granted" if ctx.approval else f"{why}; no approval required")
        if self._lock_seen():
            # Publishing the escalation can itself fail closed (a storage error locks): the
            # LIVE run does not start, and its recorded intent is settled as not done.
            if effectful:
                self._settle_intent(ctx, ok=False)
            self.transition(ctx, S.LOCKED, f"not run: system locked before the LIVE run started ({self._lock_reason})")
            return ctx
        ok = await self._run_mode(ctx, live, ExecutionMode.LIVE, retry)
        if effectful and self.ledger is not None:
            crash_point("after_effect")
            if ctx.outcome_unknown:
                self._settle_unknown(ctx)
            else:
                self._settle_intent(ctx, ok)
            # The outcome is durable before the action is reported done (a shared commit).
            try:
                await self.bus.barrier()
            except Phase24Error as exc:
                self._fail_closed(exc)
            crash_point("after_outcome")
        if ctx.outcome_unknown:
            self.transition(ctx, S.ROLLBACK, f"LIVE {ctx.failure}")
            return ctx
        if not ok:
            self.transition(ctx, S.ROLLBACK, f"LIVE execution failed: {ctx.failure}")
            return ctx
        self.transition(ctx, S.COMPLETED, "LIVE succeeded")
        return ctx

    def _settle_intent(self, ctx: ExecutionContext, ok: bool) -> None:
        """Record the outcome of a recorded intent; a failure to record it fails closed."""
        if self.ledger is None:
            return
        try:
            self.ledger.record_outcome(ctx.intent_key(), ok)
        except Phase24Error as exc:
            self._fail_closed(exc)

    def _settle_unknown(self, ctx: ExecutionContext) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.record_unknown(ctx.intent_key())
        except Phase24Error as exc:
            self._fail_closed(exc)

    def _fail_closed(self, exc: Exception) -> None:
        if self.on_storage_failure is not None:
            self.on_storage_failure(f"{type(exc).__name__}: {exc}")
        self.lock_system(f"storage failure, failing closed: {exc}", "system")

    def _storage_failed(self, ctx: ExecutionContext, exc: Exception) -> ExecutionContext:
        self._fail_closed(exc)
        held = S.LOCKED if S.LOCKED in ALLOWED_TRANSITIONS[ctx.state] else S.ABORTED
        self.transition(ctx, held, f"not run: the journal could not be written ({exc})")
        return ctx

    # -- approvals --------------------------------------------------------------------

    def _new_request(self, ctx: ExecutionContext) -> ApprovalRequest:
        # Numbered after the run's event sequence, which a resume continues, so a request id
        # is never reused within a run, also across restarts.
        self._request_counter = max(self._request_counter + 1, self.bus.last_seq + 1)
        return ApprovalRequest(
            request_id=f"{self.bus.run_id}:R{self._request_counter}",
            plan_id=ctx.plan_id,
            action_id=ctx.action_id,
            agent=ctx.agent,
            tool=ctx.tool,
            risk_level=ctx.contract.risk_level,
            reversible=ctx.contract.reversible,
            confidence=ctx.confidence,
            threshold=live_threshold(ctx.contract.risk_level, self.live_floor),
            args=ctx.action.args,
            action_hash=ctx.action_hash(),
            requested_at=self.bus.clock.now(),
            timeout_s=self.approval_timeout_s,
        )

    async def _await_approval(self, ctx: ExecutionContext) -> ApprovalDecision:
        request = self._new_request(ctx)
        self.bus.emit(ApprovalRequested, **request.model_dump(exclude={"requested_at"}), expires_at=request.expires_at)
        stopped = self.escalation_stopped(ctx.agent)
        if self._lock_seen():
            decision = deny(request, "lock", f"system locked: {self._lock_reason}")
        elif stopped is not None:
            decision = deny(request, "operator", stopped)
        else:
            try:
                timeout = None if getattr(self.gate, "times_requests", False) else request.timeout_s
                decision = await asyncio.wait_for(self.gate.decide(request), timeout)
            except TimeoutError:
                decision = expire(request)
        decision = self.check_decision(ctx, request, decision)
        outcome = decision.kind
        if outcome is ApprovalOutcome.DENIED_AND_STOPPED:
            self.stop_agent(ctx.agent, f"agent {ctx.agent} stopped by {decision.decided_by}: {decision.reason}")
        if outcome in (ApprovalOutcome.DENIED, ApprovalOutcome.DENIED_AND_STOPPED) and decision.decided_by != "lock":
            self.denied_hashes.add(request.action_hash)
        self._record_decision(ctx, request, decision)
        if not decision.approved:
            # A grant needs no barrier of its own: nothing goes LIVE before the barrier (or
            # the intent, which commits every earlier event with it) in _go_live.
            try:
                await self.bus.barrier()
            except Phase24Error as exc:
                self._fail_closed(exc)
        return decision

    def _record_decision(self, ctx: ExecutionContext, request: ApprovalRequest, decision: ApprovalDecision) -> None:
        """The decision on the action (its approval record) and as an event (decisions log, journal)."""
        outcome = decision.kind
        edited = decision.approved and decision.edited_args is not None
        approved_hash = decision.action_hash if decision.approved else request.action_hash
        ctx.approval = {
            "request_id": request.request_id,
            "approved": decision.approved,
            "decided_by": decision.decided_by,
            "reason": decision.reason,
            "action_hash": approved_hash,
            "outcome": outcome.value,
            "args_fully_visible": decision.args_fully_visible,
        }
        if edited:
            ctx.approval["operator_modified"] = True
            ctx.approval["original_action_hash"] = request.action_hash
        self.bus.emit(
            ApprovalDecided,
            request_id=request.request_id,
            plan_id=ctx.plan_id,
            action_id=ctx.action_id,
            tool=ctx.tool,
            approved=decision.approved,
            decided_by=decision.decided_by,
            reason=decision.reason,
            action_hash=approved_hash,
            outcome=outcome.value,
            agent=ctx.agent,
            args_fully_visible=decision.args_fully_visible,
            original_action_hash=request.action_hash if edited else "",
            edited_args=decision.edited_args if edited else None,
        )

    def check_decision(
        self, ctx: ExecutionContext, request: ApprovalRequest, decision: ApprovalDecision
    ) -> ApprovalDecision:
        """An approval counts only for this exact action, once, before it expires, unlocked.

        An approval with edited arguments binds to the hash of the action with those
        arguments; it is checked against that, and the action then runs with them.
        """
        if not decision.approved:
            return decision
        problem = None
        edited_error = None if decision.edited_args is None else edited_args_problem(decision.edited_args)
        expected = ctx.action_hash()
        if decision.edited_args is not None and edited_error is None:
            expected = canonical_action_hash(ctx.agent, ctx.tool, decision.edited_args, ctx.plan_id, ExecutionMode.LIVE)
        if decision.request_id != request.request_id:
            problem = "approval answers another request"
        elif edited_error is not None:
            problem = f"edited arguments rejected: {edited_error}"
        elif decision.action_hash != expected:
            problem = "approval hash does not match the action as it is now"
        elif decision.request_id in self._used_approvals:
            problem = "approval was already used"
        elif self.bus.clock.now() > request.expires_at:
            problem = "approval arrived after it expired"
        elif self._lock_seen():
            problem = f"system locked: {self._lock_reason}"
        if problem is not None:
            return deny(request, decision.decided_by, f"refused: {problem}")
        self._used_approvals.add(decision.request_id)
        if decision.edited_args is not None:
            ctx.action = ctx.action.model_copy(update={"args": decision.edited_args})
        return decision
