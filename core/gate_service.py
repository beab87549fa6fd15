"""The gate as a long-lived service: proposals from live agents through the same core as plans.

`GateService` is the harness with a different producer. A plan run takes its plans from
files; the service takes proposals from a stream (`submit`), each one becoming a one-action
plan that runs through the same orchestrator, controller, conflict resolver, approval gate,
monitor, feedback loop, journal and output files, concurrently with the others. What it
does is published on the one `EventBus`; operators command it through `GateCommands`.

Durability: a proposal is journaled (a grouped, fsynced commit) before `submit` returns;
an agent-executed tool gets its single-use LIVE grant only after the controller has made
its intent durable; a grant whose outcome does not come back within the lease is UNKNOWN.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from core.approval import QueueGate
from core.clock import Clock
from core.contracts import ExecutionMode, ToolContract, ToolContractRegistry
from core.errors import Phase24Error
from core.event_feed import EventFeed
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    GrantIssued,
    GrantOutcome,
    ProposalReceived,
    StateTransition,
    ToolExecuted,
)
from core.grants import AgentExecutor, GrantBook, LeasedIntentLedger
from core.group_commit import GroupCommit
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import PlannedAction, ToolExecutionPlan
from core.proposals import DeclaredContract, ProposalAccepted, ProposalIn, ProposalStatus
from core.stream_conflicts import StreamConflictResolver

RejectReason = Literal["invalid", "forbidden", "not_found", "conflict", "unavailable"]

DEFAULT_LEASE_S = 300.0
RETAIN_FINISHED = 100_000
"""Finished proposals kept readable (and their action_ids idempotent); older ones are dropped."""


class GateRequestRefused(Phase24Error):
    """A request the gate does not accept; `field` names what is wrong when one field is."""

    def __init__(self, reason: RejectReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


_TERMINAL = {"COMPLETED", "LOCKED", "ABORTED"}
_MODE_RANK = {"MOCK": 0, "DRY_RUN": 1, "LIVE": 2}


@dataclass
class _Proposal:
    status: ProposalStatus
    plan_id: str
    request: ProposalIn
    executions: list[dict[str, Any]] = field(default_factory=list)
    approval: ApprovalDecided | None = None
    grant_status: str | None = None
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Earlier unfinished proposals of other agents on the same resource: (plan_id, agent, action_id).
    waits_for: list[tuple[str, str, str]] = field(default_factory=list)


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until `event` is set or `timeout_s` has passed. In the waiting task itself, not in
    a task of its own as `asyncio.wait_for` makes one: the decision wakes the request's own
    task directly, one turn of the event loop instead of three."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass


class GateService(Phase24Harness):
    """Consumes proposals until stopped; everything after intake is the plan runs' code."""

    def __init__(
        self,
        config: Phase24ExecutionConfig | None = None,
        *,
        clock: Clock | None = None,
        registry: ToolContractRegistry | None = None,
        run_id: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        commit_delay_s: float = 0.0,
        gate: QueueGate | None = None,
    ) -> None:
        self.approvals = gate if gate is not None else QueueGate()
        super().__init__(config, gate=self.approvals, clock=clock, registry=registry, run_id=run_id)
        self.stream_resolver = StreamConflictResolver(
            self.registry, rng=self.rng, delay_range_s=self.config.retry_delay_range_s
        )
        self.conflict_resolver = self.orchestrator.resolver = self.stream_resolver
        self.grants = GrantBook(self.bus, self.clock, lease_s=lease_s)
        self.group = GroupCommit(self._commit_durably, delay_s=commit_delay_s)
        self.feed = EventFeed(self.bus, journal_dir=lambda: self.config.output_dir if self.journal else None)
        self.accepting = False
        self.started = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self._proposals: dict[str, _Proposal] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._by_plan: dict[str, _Proposal] = {}
        self._by_request: dict[str, _Proposal] = {}
        self._request_decided: dict[str, asyncio.Event] = {}
        self._decisions: dict[str, ApprovalDecided] = {}
        self._agent_tools: dict[str, DeclaredContract] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._plan_index = itertools.count(0)
        self._stop_requested: asyncio.Event | None = None
        self._stop_reason = "service stopped"
        self._finished: deque[str] = deque()
        self.retain_finished = RETAIN_FINISHED
        self.bus.subscribe(self._track)

    # -- running ----------------------------------------------------------------------

    async def serve(self) -> dict[str, Any]:
        """Run until `request_stop`; returns the run summary (the outputs are complete)."""
        return await self.run_pipeline()

    def request_stop(self, reason: str = "service stopped") -> None:
        """Stop accepting, deny what waits, settle outstanding grants as UNKNOWN, finish the outputs."""
        self.accepting = False
        self._stop_reason = reason
        if self._stop_requested is not None:
            self._on_core(self._stop_requested.set)

    async def _run_plans(self) -> bool:
        self._stop_requested = asyncio.Event()
        self.accepting = True
        self.started.set()
        await self._stop_requested.wait()
        self.accepting = False
        reason = self._stop_reason
        Phase24Harness.stop(self, reason, by="service")  # nothing new starts, pending approvals are denied
        while self._tasks:
            self.approvals.cancel_pending(reason)
            self.grants.expire_all(f"{reason} before the outcome was reported")
            await asyncio.wait(self._tasks, timeout=0.05)
        self._emit_signals()  # the final analysis, whenever the last one was
        return False

    def _finish_run(self, start: Any, follower: asyncio.Task[None], interrupted: bool) -> None:
        try:
            super()._finish_run(start, follower, interrupted)
        finally:
            # After RunFinished: every event stream (attached consoles, SSE clients) gets the
            # run's end, with its status, before it ends.
            self.feed.close()

    def _open_durable_state(self) -> None:
        super()._open_durable_state()
        journal = self.journal
        if journal is not None:
            ledger = LeasedIntentLedger(journal, self.intents)
            self.controller.ledger = ledger
            self.grants.ledger = ledger

    def _streaming(self) -> bool:
        return self.accepting  # one-action "plans", one per proposal, while serving

    # -- intake -----------------------------------------------------------------------

    async def submit(self, proposal: ProposalIn) -> ProposalAccepted:
        """Take one proposal; returns once it is journaled (durably). Idempotent per (agent, action_id)."""
        if not self.accepting:
            raise GateRequestRefused("unavailable", "the gate is not accepting proposals (starting or stopping)")
        if self.storage_error is not None:
            raise GateRequestRefused("unavailable", f"storage failed, the gate is locked: {self.storage_error}")
        key = (proposal.agent, proposal.action_id) if proposal.action_id else None
        if key is not None and key in self._by_key:
            existing = self._proposals[self._by_key[key]]
            if existing.request != proposal:
                raise GateRequestRefused(
                    "conflict", f"action_id {proposal.action_id!r} was already used for another proposal", "action_id"
                )
            return ProposalAccepted(proposal_id=existing.status.proposal_id, duplicate=True)
        executed_by = self._executor_for(proposal)
        proposal_id = f"prop-{next(self._ids)}"
        action_id = proposal.action_id or proposal_id
        try:
            action = PlannedAction(
                id=action_id,
                agent=proposal.agent,
                tool=proposal.tool,
                args=proposal.args,
                confidence=proposal.confidence,
                resource=proposal.resource,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "args"
            raise GateRequestRefused("invalid", f"field {where}: {first['msg']}", where.split(".")[0]) from None
        plan = ToolExecutionPlan(plan_id=proposal_id, actions=(action,), phase21_plan_id=proposal.plan_id)
        record = _Proposal(
            ProposalStatus(proposal_id=proposal_id, agent=proposal.agent, tool=proposal.tool, executed_by=executed_by),
            plan_id=proposal_id,
            request=proposal,
        )
        self._proposals[proposal_id] = record
        self._by_plan[proposal_id] = record
        if key is not None:
            self._by_key[key] = proposal_id
        if executed_by == "agent":
            self.grants.expect(proposal.agent, action_id, proposal_id, proposal_id)
        if proposal.resource is not None:
            record.waits_for = self.stream_resolver.enter(proposal.resource, proposal_id, proposal.agent, action_id)
        self.counts["proposals"] += 1
        self.bus.emit(
            ProposalReceived,
            proposal_id=proposal_id,
            plan_id=proposal_id,
            action_id=action_id,
            agent=proposal.agent,
            tool=proposal.tool,
            args=proposal.args,
            confidence=proposal.confidence,
            agent_plan_id=proposal.plan_id,
            executed_by=executed_by,
        )
        task = asyncio.get_running_loop().create_task(self._process(next(self._plan_index), plan, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await self.bus.barrier()
        except Phase24Error as exc:
            raise GateRequestRefused("unavailable", f"the proposal could not be journaled: {exc}") from None
        return ProposalAccepted(proposal_id=proposal_id)

    def _executor_for(self, proposal: ProposalIn) -> Literal["service", "agent"]:
        """Service-executed for a tool bound in the service; otherwise register the agent's tool."""
        tool = proposal.tool
        declared = self._agent_tools.get(tool)
        if declared is not None:
            if proposal.contract is not None and proposal.contract != declared:
                raise GateRequestRefused(
                    "conflict", f"tool {tool!r} was first declared with another contract; it is fixed", "contract"
                )
            return "agent"
        if tool in self.registry:
            if proposal.contract is not None:
                raise GateRequestRefused(
                    "invalid", f"tool {tool!r} runs in the service; its contract cannot be declared", "contract"
                )
            return "service"
        declared = proposal.contract or DeclaredContract()
        try:
            contract = ToolContract(
                name=tool,
                description=declared.description or f"agent-executed tool {tool}",
                risk_level=declared.risk,
                reversible=declared.reversible,
                read_only=declared.read_only,
                requires_approval=declared.risk.value == "HIGH",
            )
        except ValueError as exc:
            first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise GateRequestRefused("invalid", first.removeprefix("Value error, "), "contract") from None
        self.registry.register(contract)
        self.executors.bind(tool, AgentExecutor(self.grants).binding(tool, compensable=contract.compensable))
        self._agent_tools[tool] = declared
        return "agent"

    async def _process(self, index: int, plan: ToolExecutionPlan, record: _Proposal) -> None:
        try:
            if record.waits_for:
                await self._wait_for_resource(plan, record)
            await self._run_plan(index, plan)
        except Exception as exc:  # never leave a waiting agent hanging; the journal has the events
            status = record.status
            status.reason = f"internal error: {type(exc).__name__}: {exc}"
            status.decision = "aborted"
            status.state = "ABORTED"
            self.counts["internal_errors"] += 1
        finally:
            if record.request.resource is not None:
                self.stream_resolver.leave(record.request.resource, record.plan_id)
            record.status.decided = True
            record.decided.set()
            record.finished.set()
            self._retire(record)

    async def _wait_for_resource(self, plan: ToolExecutionPlan, record: _Proposal) -> None:
        """A RESOURCE conflict with earlier proposals of other agents: publish it and its
        DELAY resolution, then wait until those proposals have finished."""
        action = plan.actions[0]
        assert action.resource is not None
        unfinished = [(entry, other) for entry in record.waits_for if (other := self._unfinished(entry[0])) is not None]
        if not unfinished:
            return
        conflict, resolution = self.stream_resolver.cross_resource_conflict(
            record.plan_id, action.agent, action.id, action.tool, action.resource, [e for e, _ in unfinished]
        )
        self.orchestrator.publish_detected(conflict)
        self.orchestrator.publish_resolved(record.plan_id, resolution)
        record.status.reason = resolution.outcome
        await asyncio.gather(*(other.finished.wait() for _, other in unfinished))

    def _unfinished(self, proposal_id: str) -> _Proposal | None:
        record = self._proposals.get(proposal_id)
        return None if record is None or record.finished.is_set() else record

    def _retire(self, record: _Proposal) -> None:
        """Bounded memory for a long-lived service: forget the oldest finished proposals."""
        self._finished.append(record.plan_id)
        while len(self._finished) > self.retain_finished:
            old = self._proposals.pop(self._finished.popleft(), None)
            if old is not None:
                self._by_plan.pop(old.plan_id, None)
                if old.request.action_id is not None:
                    self._by_key.pop((old.request.agent, old.request.action_id), None)

    # -- reading ----------------------------------------------------------------------

    def status(self, proposal_id: str) -> ProposalStatus:
        record = self._proposals.get(proposal_id)
        if record is None:
            raise GateRequestRefused("not_found", f"no proposal {proposal_id!r}")
        return record.status.model_copy()

    async def wait(self, proposal_id: str, timeout_s: float) -> ProposalStatus:
        """The proposal's status once decided, or as it is after `timeout_s`."""
        record = self._proposals.get(proposal_id)
        if record is None:
            raise GateRequestRefused("not_found", f"no proposal {proposal_id!r}")
        if not record.decided.is_set() and timeout_s > 0:
            await _wait_event(record.decided, timeout_s)
        if record.status.grant_id is not None and record.grant_status is None:
            # The grant is handed out only once its GrantIssued event is durable too.
            try:
                await self.bus.barrier()
            except Phase24Error as exc:
                raise GateRequestRefused("unavailable", f"the grant could not be journaled: {exc}") from None
        return record.status.model_copy()

    async def wait_finished(self, proposal_id: str, timeout_s: float) -> ProposalStatus:
        record = self._proposals.get(proposal_id)
        if record is None:
            raise GateRequestRefused("not_found", f"no proposal {proposal_id!r}")
        if not record.finished.is_set():
            await _wait_event(record.finished, timeout_s)
        return record.status.model_copy()

    def proposal_of_grant(self, grant_id: str) -> str | None:
        grant = self.grants.get(grant_id)
        return None if grant is None else grant.proposal_id

    # -- following the events -----------------------------------------------------------

    def _track(self, event: Event) -> None:
        kind = type(event)
        if kind is StateTransition:
            assert isinstance(event, StateTransition)
            record = self._by_plan.get(event.plan_id)
            if record is not None:
                self._on_transition(record, event)
        elif kind is ToolExecuted:
            assert isinstance(event, ToolExecuted)
            record = self._by_plan.get(event.plan_id)
            if record is not None:
                execution: dict[str, Any] = {
                    "mode": event.mode.value,
                    "success": event.success,
                    "duration_ms": event.duration_ms,
                    "simulated": event.simulated,
                }
                if event.error:
                    execution["error"] = event.error
                record.executions.append(execution)
                if event.success and self._higher(record.status.mode, event.mode.value):
                    record.status.mode = event.mode.value
        elif kind is ApprovalRequested:
            assert isinstance(event, ApprovalRequested)
            record = self._by_plan.get(event.plan_id)
            if record is not None:
                record.status.request_id = event.request_id
                self._by_request[event.request_id] = record
        elif kind is ApprovalDecided:
            assert isinstance(event, ApprovalDecided)
            record = self._by_request.pop(event.request_id, None)
            if record is not None:
                record.approval = event
            self._decisions[event.request_id] = event
            if len(self._decisions) > 10_000:
                self._decisions.pop(next(iter(self._decisions)))
            self.counts["approvals_" + ("approved" if event.approved else "denied")] += 1
            waiter = self._request_decided.pop(event.request_id, None)
            if waiter is not None:
                waiter.set()
        elif kind is GrantIssued:
            assert isinstance(event, GrantIssued)
            record = self._proposals.get(event.proposal_id)
            if record is not None:
                status = record.status
                status.grant_id = event.grant_id
                grant = self.grants.get(event.grant_id)
                status.grant_args = None if grant is None else grant.args
                status.state = "GRANTED"
                status.mode = "LIVE"
                status.decision = self._granted_decision(record)
                status.decided = True
                record.decided.set()
            self.counts["grants_issued"] += 1
        elif kind is GrantOutcome:
            assert isinstance(event, GrantOutcome)
            record = self._proposals.get(event.proposal_id)
            if record is not None and event.status != "LATE":
                record.grant_status = event.status
                record.status.result = event.result
            self.counts["grants_" + event.status.lower()] += 1

    @staticmethod
    def _higher(current: str | None, mode: str) -> bool:
        return current is None or _MODE_RANK[mode] > _MODE_RANK[current]

    @staticmethod
    def _granted_decision(record: _Proposal) -> Literal["approved", "allowed"]:
        return "approved" if record.approval is not None and record.approval.approved else "allowed"

    def _on_transition(self, record: _Proposal, event: StateTransition) -> None:
        status = record.status
        to_state = event.to_state
        status.reason = event.reason
        if to_state == "ROLLBACK":
            return  # a failure: the plan unwinds and ends ABORTED
        status.state = to_state  # type: ignore[assignment]
        if to_state not in _TERMINAL:
            return
        if to_state == "COMPLETED":
            self.stream_resolver.record_completed(event.agent, event.tool)
        status.decision = self._final_decision(record, to_state, event.reason)
        if status.executed_by == "service" or status.result is None:
            result: dict[str, Any] = {"final_state": to_state, "executions": record.executions}
            status.result = result if status.executed_by == "service" else status.result
        self.counts["decision_" + status.decision] += 1
        status.decided = True
        record.decided.set()

    def _final_decision(self, record: _Proposal, to_state: str, reason: str) -> Any:
        approval = record.approval
        if to_state == "COMPLETED":
            return self._granted_decision(record)
        if to_state == "LOCKED":
            if approval is not None and not approval.approved:
                by = approval.decided_by
                text = approval.reason.lower()
                if getattr(approval, "outcome", "") == "EXPIRED" or by == "timeout" or "expired" in text:
                    return "expired"
                if (
                    by == "lock"
                    or text.startswith(("system locked", "the run was stopped"))
                    or "refused: system locked" in text
                ):
                    return "locked"  # the lock, or the service stopping, held it
                return "denied"
            if "duplicate" in reason:
                return "denied"
            return "locked"
        if record.grant_status == "UNKNOWN":
            return "unknown"
        if any(not e["success"] for e in record.executions):
            return "failed"
        return "aborted"

    # -- commands (the one port: see core.commands) -------------------------------------

    def pending_approvals(self) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") | {"expires_at": r.expires_at.isoformat()} for r in self.approvals.pending]

    def decision_of(self, request_id: str) -> ApprovalDecided | None:
        return self._decisions.get(request_id)

    def request_waiter(self, request_id: str) -> asyncio.Event:
        return self._request_decided.setdefault(request_id, asyncio.Event())

    @property
    def locked(self) -> bool:
        return self.controller.locked

    @property
    def lock_reason(self) -> str:
        return self.controller.lock_reason

    def snapshot(self) -> dict[str, Any]:
        """What a viewer needs to draw the gate's state now (GET /v1/state)."""
        return {
            "run_id": self.run_id,
            "accepting": self.accepting,
            "locked": self.locked,
            "lock_reason": self.lock_reason,
            "paused": self.paused,
            "mode_ceiling": ExecutionMode(self.controller.mode_ceiling).value,
            "last_seq": self.bus.last_seq,
            "proposals": self.counts["proposals"],
            "pending_approvals": len(self.approvals.pending),
            "outstanding_grants": len(self.grants.outstanding),
            "storage_error": self.storage_error,
        }
