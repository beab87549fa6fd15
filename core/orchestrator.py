"""The orchestrator: the report's 7-step cycle for one plan, with agents running concurrently.

Each agent works through its own actions in plan order as an asyncio task; agents share
the per-resource locks and per-tool concurrency limits the conflict resolver asked for,
so resource and rate-limit conflicts are real waits, not bookkeeping.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, overload

from pydantic import BaseModel, TypeAdapter, field_serializer

from core.bindings import ExecutionOutcome, ToolCall
from core.conflicts import Conflict, ConflictResolver, Resolution, ResolutionPlan
from core.contracts import ExecutionMode, ToolContractRegistry
from core.controller import ExecutionContext, ExecutionController, ExecutionState
from core.errors import ContractError, Phase24Error
from core.events import ConflictDetected, ConflictResolved, EventBus, RollbackPerformed
from core.executors import ExecutorRegistry
from core.faults import crash_point
from core.json_pieces import ITEMS_PER_PIECE, model_json_pieces
from core.plans import PlannedAction, ToolExecutionPlan

__all__ = ["OrchestrationResult", "ToolExecutionPlan", "ToolOrchestrator", "ToolResults", "plan_status"]


def plan_status(*, failed: int, held_by_lock: bool, interrupted: bool, incomplete: int) -> str:
    """A plan is reported by what happened to it, worst first.

    FAILED: an action failed. INTERRUPTED: the operator quit before it was done. LOCKED: the
    system lock held actions at MOCK. PARTIAL: actions were denied, expired or cancelled (other
    than by conflict resolution, e.g. a duplicate aborted on purpose). SUCCEEDED: everything
    else ran as far as it was allowed to.
    """
    if failed:
        return "FAILED"
    if interrupted:
        return "INTERRUPTED"
    if held_by_lock:
        return "LOCKED"
    if incomplete:
        return "PARTIAL"
    return "SUCCEEDED"


class ToolResults(Sequence[dict[str, Any]]):
    """A finished plan's per-action results, each built when it is read.

    Holds what the run had anyway (the plan's actions and their finished contexts) instead of
    a dict per action and per execution (~1 KB an action, 100 MB at 100k, kept until the run
    ends). Reading gives exactly the records a list would hold; `final_states` and `live`
    are counted when the plan finishes, for the run's summary.
    """

    __slots__ = ("_actions", "_contexts", "_simulated", "_undone", "final_states", "live")

    def __init__(
        self,
        actions: Sequence[PlannedAction],
        contexts: dict[str, ExecutionContext],
        simulated: dict[str, bool],
        undone: set[str],
        final_states: dict[str, int],
        live: int,
    ) -> None:
        self._actions = actions
        self._contexts = contexts
        self._simulated = simulated
        self._undone = undone
        #: How many actions ended in each final state, and how many reached LIVE.
        self.final_states = final_states
        self.live = live

    def __len__(self) -> int:
        return len(self._actions)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._record(a) for a in self._actions[index]]
        return self._record(self._actions[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._record, self._actions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ToolResults({len(self)} actions)"

    def _record(self, action: PlannedAction) -> dict[str, Any]:
        ctx = self._contexts[action.id]
        state = ctx.state
        # One pass over the runs: their entries, durations and the highest mode reached (modes
        # run in order, so the last successful run's, as ExecutionContext.highest_mode).
        highest: ExecutionMode | None = None
        durations: list[float] = []
        executions: list[dict[str, Any]] = []
        for r in ctx.runs:
            entry = {"mode": r.mode._value_, "success": r.success, "duration_ms": r.duration_ms, "attempt": r.attempt}
            if r.error:
                entry["error"] = r.error
            executions.append(entry)
            durations.append(r.duration_ms)
            if r.success:
                highest = r.mode
        return {
            "action_id": action.id,
            "agent": ctx.agent,
            "planned_agent": action.agent,
            "tool": action.tool,
            "confidence": action.confidence,
            "final_state": state._value_,
            "mode": highest._value_ if highest else None,
            "target_mode": ctx.target_mode._value_,
            "success": state is ExecutionState.COMPLETED,
            "duration_ms": round(sum(durations), 3),
            "executions": executions,
            "reason": ctx.reason,
            "approval": ctx.approval,
            "rolled_back": action.id in self._undone,
            "simulated": self._simulated[action.tool],
        }


_encode_records = TypeAdapter(list[dict[str, Any]]).dump_json


class OrchestrationResult(BaseModel):
    """What one plan's cycle produced (the report's fields, plus held/cancelled counts).

    `tool_results` is a list, or, for a plan the orchestrator ran, a `ToolResults` that
    builds each record when read; both encode the same.
    """

    plan_id: str
    status: str
    successful_executions: int
    failed_executions: int
    held_executions: int = 0
    cancelled_executions: int = 0
    tool_results: Sequence[dict[str, Any]]
    conflicts_detected: int
    conflicts_resolved: int
    rollbacks_executed: int

    @field_serializer("tool_results")
    def _records(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return records if isinstance(records, list) else list(records)

    def json_chunks(self) -> Iterator[str]:
        """The result as `model_dump_json()` encodes it, in pieces: a large plan's records
        are built and encoded a few thousand at a time, never all at once."""
        if len(self.tool_results) <= ITEMS_PER_PIECE:
            yield self.model_dump_json()
        else:
            yield from model_json_pieces(self, "tool_results", _encode_records, per_piece=ITEMS_PER_PIECE)


YIELD_EVERY = 8

PauseGate = Callable[[], Awaitable[str | None]]
"""Waits while the run is paused; returns a reason when the action must not start."""


async def _never_paused() -> str | None:
    return None


class ToolOrchestrator:
    """Central coordinator: validate, register, detect, resolve, execute, aggregate, emit."""

    def __init__(
        self,
        registry: ToolContractRegistry,
        controller: ExecutionController,
        resolver: ConflictResolver,
        executors: ExecutorRegistry,
        bus: EventBus,
        *,
        enable_rollback_on_failure: bool = True,
        pause_gate: PauseGate = _never_paused,
    ) -> None:
        self.registry = registry
        self.controller = controller
        self.resolver = resolver
        self.executors = executors
        self.bus = bus
        self.enable_rollback_on_failure = enable_rollback_on_failure
        self.pause_gate = pause_gate
        self.agent_history: dict[str, list[str]] = {}

    # Step 1
    def validate_plan(self, plan: ToolExecutionPlan) -> list[str]:
        return [f"action {a.id!r}: unknown tool {a.tool!r}" for a in plan.actions if a.tool not in self.registry]

    # Step 2
    def register_tools(self, plan: ToolExecutionPlan) -> None:
        problems = self.validate_plan(plan)
        if problems:
            raise ContractError(f"plan {plan.plan_id!r}: " + "; ".join(problems))
        self.resolver.register_tools({a.tool for a in plan.actions})

    def allocate_tools(self, plan: ToolExecutionPlan, resolution: ResolutionPlan) -> dict[str, list[PlannedAction]]:
        """Each agent's queue in plan order, after reassignments."""
        queues: dict[str, list[PlannedAction]] = {}
        for action in plan.actions:
            agent = resolution.reassigned.get(action.id, action.agent)
            queues.setdefault(agent, []).append(action)
        return queues

    async def orchestrate(self, plan: ToolExecutionPlan) -> OrchestrationResult:
        self.register_tools(plan)  # 1, 2
        conflicts = self.resolver.detect_conflicts(plan)  # 3
        for c in conflicts:
            self.publish_detected(c)
        resolutions, resolution = self.resolver.resolve_conflicts(plan, conflicts)  # 4
        for r in resolutions:
            self.publish_resolved(plan.plan_id, r)
        run = _PlanRun(self, plan, resolution)
        await run.execute()  # 5
        return run.result(len(conflicts), len(resolutions))  # 6 (7 is the caller's events)

    def publish_detected(self, c: Conflict) -> None:
        self.bus.emit(
            ConflictDetected,
            plan_id=c.plan_id,
            conflict_id=c.conflict_id,
            conflict_type=c.conflict_type.value,
            agents=c.agents,
            tool=c.tool,
            resource=c.resource,
            action_ids=c.action_ids,
            detail=c.detail,
        )

    def publish_resolved(self, plan_id: str, r: Resolution) -> None:
        self.bus.emit(
            ConflictResolved,
            plan_id=plan_id,
            conflict_id=r.conflict_id,
            conflict_type=r.conflict_type.value,
            strategy=r.strategy.value,
            outcome=r.outcome,
        )


class _PlanRun:
    """The mutable state of one plan's execution."""

    def __init__(self, owner: ToolOrchestrator, plan: ToolExecutionPlan, resolution: ResolutionPlan) -> None:
        self.o = owner
        self.plan = plan
        self.resolution = resolution
        self.queues = owner.allocate_tools(plan, resolution)
        self.contexts: dict[str, ExecutionContext] = {}
        # A finished-signal only for the actions something waits on (most have none: at
        # 100k actions an Event for each would cost ~0.2 s and tens of MB).
        awaited = {dep for a in plan.actions for dep in a.depends_on}
        for deps in resolution.extra_dependencies.values():
            awaited |= deps
        awaited &= {a.id for a in plan.actions}  # an unknown id stays a KeyError, never a silent wait
        self.done: dict[str, asyncio.Event] = {action_id: asyncio.Event() for action_id in awaited}
        self.resource_locks = {r: asyncio.Lock() for r in resolution.serialised_resources}
        self.tool_slots: dict[str, asyncio.Semaphore] = {}
        self.rollback_stack: list[ExecutionContext] = []
        self.failed_at: str | None = None
        self.rollbacks_executed = 0
        self.timeout_conflicts = 0
        self.cancelled: set[str] = set()
        self.undone: set[str] = set()

    def _slot(self, tool: str) -> asyncio.Semaphore:
        slot = self.tool_slots.get(tool)
        if slot is None:
            limit = self.resolution.tool_limits.get(tool, self.o.registry.get(tool).max_concurrency)
            slot = self.tool_slots[tool] = asyncio.Semaphore(limit)
        return slot

    async def execute(self) -> None:
        await asyncio.gather(*(self._agent(agent, actions) for agent, actions in self.queues.items()))
        failed = [c for c in self.contexts.values() if c.state is ExecutionState.ROLLBACK]
        if failed:
            await self._unwind(failed[0])
            for ctx in failed:
                self.o.controller.transition(ctx, ExecutionState.ABORTED, f"aborted after failure: {ctx.failure}")
        elif self.failed_at is not None and self.o.enable_rollback_on_failure:
            # A resumed run found an action's LIVE intent FAILED or UNKNOWN (the crash came
            # after the failure, before the rollback, or in the middle of the LIVE run): the
            # plan cannot complete, so what it did before the crash is undone now.
            await self._unwind(self.contexts[self.failed_at])

    async def _agent(self, agent: str, actions: list[PlannedAction]) -> None:
        history = self.o.agent_history.setdefault(agent, [])
        for index, action in enumerate(actions):
            ctx = ExecutionContext(
                plan_id=self.plan.plan_id,
                action=action,
                contract=self.o.registry.get(action.tool),
                agent=agent,
                mode_cap=self.resolution.mode_caps.get(action.id, ExecutionMode.LIVE),
            )
            self.contexts[action.id] = ctx
            try:
                await self._one(ctx)
            finally:
                finished = self.done.get(action.id)
                if finished is not None:
                    finished.set()
            # The context is kept for the plan's result line: one copy of each reason text
            # ("MOCK succeeded; confidence 0.62 allows DRY_RUN" recurs thousands of times).
            if type(ctx.reason) is str:
                ctx.reason = sys.intern(ctx.reason)
            # Yield every few actions (an action that does not wait never yields): other
            # agents, and the operator's pause/stop/unlock and approval answers (callbacks
            # from the console's thread), get their turn within about a millisecond.
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            if len(history) < 10_000:
                history.append(action.id)

    async def _one(self, ctx: ExecutionContext) -> None:
        action = ctx.action
        controller = self.o.controller
        abort = self.resolution.aborted.get(action.id)
        if abort is not None:
            self._cancel(ctx, f"conflict resolution: {abort}")
            return
        extra = self.resolution.extra_dependencies.get(action.id)
        waits = (set(action.depends_on) | extra) if extra else action.depends_on
        for dep in sorted(waits) if len(waits) > 1 else waits:
            await self.done[dep].wait()
            dep_ctx = self.contexts.get(dep)
            if dep_ctx is None or dep_ctx.state is not ExecutionState.COMPLETED:
                if dep_ctx is not None and dep_ctx.held_by_system_lock and controller.locked:
                    # The lock drops the run to MOCK, it does not end it: a dependency held at
                    # MOCK by the lock lets this action run MOCK too (it is held the same way).
                    continue
                state = dep_ctx.state.value if dep_ctx else "unknown"
                self._cancel(ctx, f"dependency {dep} ended {state}")
                return
        if self.failed_at is not None and self.o.enable_rollback_on_failure:
            self._cancel(ctx, f"plan stopped after failure of {self.failed_at}")
            return
        stop = await self.o.pause_gate()
        if stop is not None:
            self._cancel(ctx, stop)
            return
        stopped_agent = controller.stopped_agents.get(ctx.agent)
        if stopped_agent is not None:
            self._cancel(ctx, stopped_agent)
            return
        lock = self.resource_locks.get(action.resource) if action.resource else None
        if lock is not None:
            await lock.acquire()
        try:
            async with self._slot(action.tool):
                self.o.resolver.acquire(action.tool, ctx.agent)
                try:
                    await controller.run_action(ctx, self.o.executors.for_tool(action.tool), self._retry)
                finally:
                    self.o.resolver.release(action.tool, ctx.agent)
        finally:
            if lock is not None:
                lock.release()
        if ctx.state is ExecutionState.ROLLBACK:
            if self.failed_at is None:
                self.failed_at = action.id
            if not self.o.enable_rollback_on_failure:
                controller.transition(ctx, ExecutionState.ABORTED, f"failed: {ctx.failure}")
        elif ctx.state is ExecutionState.ABORTED and ctx.journal_status is not None:
            # Its LIVE intent is FAILED or UNKNOWN from before a restart: never retried, and
            # the plan has failed.
            if self.failed_at is None:
                self.failed_at = action.id
        elif (
            ctx.state is ExecutionState.COMPLETED
            and (ctx.highest_mode is ExecutionMode.LIVE or ctx.journal_status == "DONE")
            and ctx.contract.compensable
        ):
            # Done LIVE in this run, or before a restart (the journal says DONE): undoable.
            self.rollback_stack.append(ctx)

    def _cancel(self, ctx: ExecutionContext, reason: str) -> None:
        self.cancelled.add(ctx.action_id)
        self.o.controller.transition(ctx, ExecutionState.ABORTED, reason)

    async def _retry(
        self, ctx: ExecutionContext, mode: ExecutionMode, attempt: int, outcome: ExecutionOutcome
    ) -> float | None:
        conflict, resolution, delay = self.o.resolver.record_timeout(self.plan.plan_id, ctx.action, attempt)
        self.timeout_conflicts += 1
        self.o.publish_detected(conflict)
        self.o.publish_resolved(self.plan.plan_id, resolution)
        return delay

    async def _unwind(self, trigger: ExecutionContext) -> None:
        if not self.o.enable_rollback_on_failure:
            return
        undone: list[str] = []
        failed: list[str] = []
        for ctx in reversed(self.rollback_stack):
            (undone if await self._compensate(ctx) else failed).append(ctx.action_id)
        self.rollback_stack.clear()
        self.rollbacks_executed += len(undone)
        self.o.bus.emit(
            RollbackPerformed,
            plan_id=self.plan.plan_id,
            trigger_action_id=trigger.action_id,
            undone=undone,
            failed_to_undo=failed,
            total_rollbacks=len(undone),
        )
        self.undone = set(undone)

    async def _compensate(self, ctx: ExecutionContext) -> bool:
        """Undo one action, at most once across restarts: the compensation is journalled like
        a LIVE effect (intent, then outcome). Done before a crash: counted, not repeated;
        started but unrecorded (UNKNOWN): never retried, reported as not undone."""
        compensate = self.o.executors.for_tool(ctx.tool).compensate
        if compensate is None:  # ExecutorRegistry.bind refuses this for a compensable tool
            return False
        call = ToolCall(ctx.plan_id, ctx.action, ctx.agent)
        ledger = self.o.controller.ledger
        if ledger is None:
            return (await compensate(call)).success
        key = f"{ctx.intent_key()}:undo"
        status = ledger.intent_status(key)
        if status is not None:
            return status == "DONE"
        bus = self.o.controller.bus
        try:
            ledger.record_intent(key, ctx.plan_id, f"{ctx.action_id}:undo", ctx.agent, f"{ctx.tool}:compensate", None)
            await bus.barrier()  # durable before the compensation runs
        except Phase24Error:
            return False  # the journal failed (the system locks): nothing LIVE runs unrecorded
        crash_point("after_compensation_intent")
        outcome = await compensate(call)
        crash_point("after_compensation")
        try:
            ledger.record_outcome(key, outcome.success)
            await bus.barrier()
        except Phase24Error:
            pass  # stays unsettled: reported as UNKNOWN by the storage-failure report
        return outcome.success

    def result(self, conflicts_detected: int, conflicts_resolved: int) -> OrchestrationResult:
        cancelled = self.cancelled
        contexts = self.contexts
        simulated = {tool: self.o.executors.for_tool(tool).simulated for tool in {a.tool for a in self.plan.actions}}
        completed, locked, live_mode = ExecutionState.COMPLETED, ExecutionState.LOCKED, ExecutionMode.LIVE
        states: Counter[ExecutionState] = Counter()
        live = 0
        held_by_lock = False
        failed_or_cancelled = 0
        cancelled_count = 0
        for action in self.plan.actions:
            ctx = contexts[action.id]
            state = ctx.state
            states[state] += 1
            live += ctx.highest_mode is live_mode
            held_by_lock = held_by_lock or ctx.held_by_system_lock
            if state is not completed and state is not locked:
                failed_or_cancelled += 1
                cancelled_count += action.id in cancelled
        counts = {
            "successful": states[completed],
            "failed": failed_or_cancelled - cancelled_count,
            "held": states[locked],
            "cancelled": cancelled_count,
        }
        # Built here from trusted values: skip re-validating thousands of records.
        return OrchestrationResult.model_construct(
            plan_id=self.plan.plan_id,
            status=plan_status(
                failed=counts["failed"],
                held_by_lock=held_by_lock,
                interrupted=self.o.controller.stop_reason is not None and (counts["held"] + counts["cancelled"]) > 0,
                incomplete=counts["held"] + sum(1 for a in cancelled if a not in self.resolution.aborted),
            ),
            successful_executions=counts["successful"],
            failed_executions=counts["failed"],
            held_executions=counts["held"],
            cancelled_executions=counts["cancelled"],
            tool_results=ToolResults(
                self.plan.actions,
                contexts,
                simulated,
                self.undone,
                {state._value_: n for state, n in states.items()},
                live,
            ),
            conflicts_detected=conflicts_detected + self.timeout_conflicts,
            conflicts_resolved=conflicts_resolved + self.timeout_conflicts,
            rollbacks_executed=self.rollbacks_executed,
        )
