"""A Hypothesis state machine that attacks the execution controller's safety promises.

The machine drives a real `ExecutionController` (wired like `core/harness.py` does, with a
`QueueGate`, a `ManualClock`, an `EventBus`, simulated executors and a real SQLite
`Journal` as its intent ledger and lock store) from an event loop it owns. Rules propose
actions (random standard tool, confidence, args, timeouts or failures), answer approvals
(grant, grant with a wrong hash, replay an old grant, grant after expiry, deny, time out),
lock and unlock (from the loop and from "another thread"), let the loop run for a few
iterations, and crash: cancel everything, drop the journal's uncommitted batch, reopen
it, mark PENDING intents UNKNOWN and re-propose every action seen so far.

After every step the full recorded event stream (every incarnation) is checked:

(a) a LIVE ToolExecuted of an approval-requiring tool is preceded, in the same incarnation,
    by an approved ApprovalDecided for the canonical LIVE hash of exactly that action,
    decided before its request expired, and not consumed by another LIVE run;
(b) an action whose (successful) MOCK run was published while the system was locked
    (between SystemLocked and the next SystemUnlocked, across restarts) never runs DRY_RUN
    or LIVE;
(c) per action the executed modes form a prefix of MOCK, DRY_RUN, LIVE (retries only repeat
    the current mode with consecutive attempts), each run happens in its own state, and
    every StateTransition chains from the previous state and is in ALLOWED_TRANSITIONS;
(d) an approval (incarnation, request id) covers at most one LIVE run, also as seen from
    the controller's contexts;
plus, with the journal: an effectful LIVE action runs LIVE at most once across restarts
(an irreversible effect once per canonical hash, whatever its action id; a reversible one once
per action id; DONE, FAILED and UNKNOWN intents are never run again), a lock held before a crash is in force
after it until an unlock, the controller's lock flag matches the stream, and no task dies
with an unexpected exception.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from core.approval import ApprovalDecision, PolicyGate, QueueGate, canonical_action_hash, deny, grant
from core.clock import ManualClock
from core.contracts import ExecutionMode, RiskLevel, standard_registry
from core.controller import ALLOWED_TRANSITIONS, ExecutionContext, ExecutionController, ExecutionState
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    EventBus,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
)
from core.executors import ExecutionOutcome, ExecutorRegistry
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.journal import Journal, read_events
from core.plans import PlannedAction, ToolExecutionPlan

REGISTRY = standard_registry()
RUN_ID = "stateful_run"
APPROVAL_TIMEOUT_S = 3600.0  # real-time wait_for never fires; expiry is tested on the ManualClock
MOCK, DRY_RUN, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE
MODE_ORDER = [MOCK, DRY_RUN, LIVE]
STATE_OF_MODE = {MOCK: "MOCK", DRY_RUN: "DRY_RUN", LIVE: "LIVE"}
MAX_ACTIONS = 12

HIGH_TOOLS = [c.name for c in REGISTRY.list_by_risk(RiskLevel.HIGH)]
tools = st.one_of(st.sampled_from(REGISTRY.names), st.sampled_from(HIGH_TOOLS))
confidences = st.sampled_from([0.3, 0.55, 0.7, 0.75, 0.82, 0.85, 0.9, 0.95, 1.0])
arg_values = st.one_of(st.integers(min_value=0, max_value=3), st.sampled_from(["x", "ü", "\u202e", "a b"]))
args_strategy = st.dictionaries(st.sampled_from(["email", "n", "path"]), arg_values, max_size=2)
modes = st.sampled_from(MODE_ORDER)
spins = st.integers(min_value=0, max_value=12)


async def retry_reversible_once(
    ctx: ExecutionContext, mode: ExecutionMode, attempt: int, outcome: ExecutionOutcome
) -> float | None:
    """Like the conflict resolver: retry a timed-out reversible tool once, never an irreversible one."""
    return 0.0 if ctx.contract.reversible and attempt < 2 else None


async def _drain(tasks: list[asyncio.Task[ExecutionContext]]) -> list[Any]:
    return list(await asyncio.gather(*tasks, return_exceptions=True))


@dataclass
class Incarnation:
    """One life of the controller between crashes."""

    number: int
    journal: Journal
    bus: EventBus
    gate: QueueGate
    controller: ExecutionController
    executors: ExecutorRegistry
    tasks: list[tuple[asyncio.Task[ExecutionContext], ExecutionContext]] = field(default_factory=list)
    unsubscribe: Any = None


class SafetyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="phase24_stateful_"))
        self.clock = ManualClock()
        self.stream: list[tuple[int, Event]] = []
        self.proposed: dict[tuple[str, str], PlannedAction] = {}
        self.plan_of: dict[tuple[str, str], str] = {}
        self.granted: list[ApprovalDecision] = []
        # what the operator actually sent for each (incarnation, request id), and when (first delivery wins)
        self.answers: dict[tuple[int, str], tuple[ApprovalDecision, datetime]] = {}
        self.blocked_at_restart: dict[str, tuple[int, str]] = {}  # hash -> (first incarnation after, status)
        self.restarts = 0
        self.counter = 0
        self.inc = self._boot(0)

    # ---------------------------------------------------------------- wiring

    def _boot(self, number: int) -> Incarnation:
        journal = Journal.open(self.dir, RUN_ID, clock=self.clock)
        if number:
            journal.mark_unknown_intents()
            for intent in journal.intents():
                self.blocked_at_restart.setdefault(intent["action_hash"], (number, intent["status"]))
        bus = EventBus(self.clock, RUN_ID)
        unsubscribe = bus.subscribe(lambda event: self.stream.append((number, event)))
        journal.attach(bus)
        gate = QueueGate()
        controller = ExecutionController(
            REGISTRY,
            bus,
            gate,
            approval_timeout_s=APPROVAL_TIMEOUT_S,
            ledger=journal,
            lock_store=lambda locked, reason, by: journal.set_state("locked", reason if locked else ""),
        )
        controller.bind_loop(self.loop)

        def storage_failed(_subscriber: Any, exc: BaseException) -> None:
            controller.lock_system(f"storage failure, failing closed: {exc}", "system")

        bus.on_error = storage_failed
        locked = journal.get_state("locked")
        if locked:
            controller.restore_lock(f"{locked} (lock survived a restart; unlock to continue)")
        return Incarnation(
            number, journal, bus, gate, controller, ExecutorRegistry(REGISTRY, self.clock), [], unsubscribe
        )

    def _start(self, plan_id: str, action: PlannedAction) -> None:
        inc = self.inc
        ctx = ExecutionContext(plan_id=plan_id, action=action, contract=REGISTRY.get(action.tool), agent=action.agent)
        coro = inc.controller.run_action(ctx, inc.executors.for_tool(action.tool), retry_reversible_once)
        inc.tasks.append((self.loop.create_task(coro), ctx))

    def _spin(self, n: int) -> None:
        """Run `n` iterations of the event loop (each ready callback once per iteration)."""
        for _ in range(n):
            self.loop.call_soon(self.loop.stop)
            self.loop.run_forever()

    def _quiet(self) -> bool:
        running = [t for t, _ in self.inc.tasks if not t.done()]
        return len(running) == len(self.inc.gate.pending)

    def _settle(self) -> None:
        stable = 0
        for _ in range(500):
            self._spin(1)
            stable = stable + 1 if self._quiet() else 0
            if stable >= 3:
                return
        raise AssertionError("the controller did not settle: a task neither finishes nor waits for an approval")

    def _answer(self, decision: ApprovalDecision) -> bool:
        delivered = self.inc.gate.answer(decision)
        if delivered:
            self.answers.setdefault((self.inc.number, decision.request_id), (decision, self.clock.now()))
        return delivered

    def _pending(self, index: int) -> Any:
        pending = self.inc.gate.pending
        return pending[index % len(pending)]

    def _stream_locked(self) -> bool:
        locked = False
        for _, event in self.stream:
            if type(event) is SystemLocked:
                locked = True
            elif type(event) is SystemUnlocked:
                locked = False
        return locked

    # ----------------------------------------------------------------- rules

    def _propose(self, plan_id: str, agent: str, tool: str, confidence: float, args: dict[str, Any], **sim: Any):
        self.counter += 1
        action = PlannedAction(
            id=f"x{self.counter}",
            agent=agent,
            tool=tool,
            confidence=confidence,
            args=args,
            simulate=sim,
        )
        self.proposed[(plan_id, action.id)] = action
        self._start(plan_id, action)

    @initialize(
        batch=st.lists(
            st.tuples(st.sampled_from(["a", "b"]), tools, confidences, args_strategy, st.sampled_from([0, 10])),
            min_size=1,
            max_size=4,
        )
    )
    def start_some(self, batch: list[tuple[str, str, float, dict[str, Any], int]]) -> None:
        for agent, tool, confidence, args, latency in batch:
            self._propose("p0", agent, tool, confidence, args, latency_ms=latency)
        self._settle()

    @precondition(lambda self: len(self.proposed) < MAX_ACTIONS)
    @rule(
        plan_id=st.sampled_from(["p1", "p2"]),
        agent=st.sampled_from(["a", "b"]),
        tool=tools,
        confidence=confidences,
        args=args_strategy,
        latency=st.sampled_from([0, 10, 10]),
        timeout_in=st.sampled_from([(), (), (), (), (MOCK,), (DRY_RUN,), (LIVE,)]),
        n=spins,
    )
    def propose(
        self,
        plan_id: str,
        agent: str,
        tool: str,
        confidence: float,
        args: dict[str, Any],
        latency: int,
        timeout_in: tuple[ExecutionMode, ...],
        n: int,
    ) -> None:
        self._propose(plan_id, agent, tool, confidence, args, latency_ms=latency, timeout_in=timeout_in)
        self._spin(n)

    @precondition(lambda self: len(self.proposed) < MAX_ACTIONS)
    @rule(
        tool=tools,
        confidence=confidences,
        args=args_strategy,
        fail_in=modes,
        latency=st.sampled_from([0, 10]),
        n=spins,
    )
    def fail(
        self, tool: str, confidence: float, args: dict[str, Any], fail_in: ExecutionMode, latency: int, n: int
    ) -> None:
        self._propose("p1", "a", tool, confidence, args, latency_ms=latency, fail_in=(fail_in,))
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending))
    @rule(index=st.integers(min_value=0, max_value=5), n=spins)
    def approve(self, index: int, n: int) -> None:
        request = self._pending(index)
        decision = grant(request, "operator", "looks right")
        assert self._answer(decision)
        self.granted.append(decision)
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending))
    @rule(index=st.integers(min_value=0, max_value=5), other_mode=st.sampled_from([MOCK, DRY_RUN]), n=spins)
    def approve_wrong_hash(self, index: int, other_mode: ExecutionMode, n: int) -> None:
        request = self._pending(index)
        wrong = canonical_action_hash(request.agent, request.tool, request.args, request.plan_id, other_mode)
        decision = ApprovalDecision(
            request_id=request.request_id, action_hash=wrong, approved=True, decided_by="operator"
        )
        assert self._answer(decision)
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending) and bool(self.granted))
    @rule(which=st.integers(min_value=0, max_value=20), n=spins)
    def approve_with_an_old_decision(self, which: int, n: int) -> None:
        old = self.granted[which % len(self.granted)]
        pending_ids = {r.request_id for r in self.inc.gate.pending}
        delivered = self._answer(old)
        assert delivered == (old.request_id in pending_ids)  # the gate routes by request id only
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending))
    @rule(index=st.integers(min_value=0, max_value=5), n=spins)
    def approve_after_expiry(self, index: int, n: int) -> None:
        request = self._pending(index)
        self.clock.advance(APPROVAL_TIMEOUT_S + 1)
        assert self._answer(grant(request, "operator", "too late"))
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending))
    @rule(index=st.integers(min_value=0, max_value=5), n=spins)
    def deny(self, index: int, n: int) -> None:
        assert self._answer(deny(self._pending(index), "operator", "no"))
        self._spin(n)

    @precondition(lambda self: bool(self.inc.gate.pending))
    @rule(index=st.integers(min_value=0, max_value=5), n=spins)
    def timeout(self, index: int, n: int) -> None:
        request = self._pending(index)
        assert self._answer(deny(request, "timeout", f"no answer within {request.timeout_s:g}s"))
        self._spin(n)

    @rule(from_loop=st.booleans(), n=spins)
    def lock(self, from_loop: bool, n: int) -> None:
        controller = self.inc.controller
        if from_loop:

            async def on_core() -> bool:
                return controller.lock_system("operator lock", "operator")

            self.loop.run_until_complete(on_core())
        else:
            controller.lock_system("operator lock from the console thread", "operator")
        self._spin(max(1, n))  # a lock from another thread is announced on the loop
        assert controller.locked

    @rule(from_loop=st.booleans(), n=spins)
    def unlock(self, from_loop: bool, n: int) -> None:
        controller = self.inc.controller
        if from_loop:

            async def on_core() -> bool:
                return controller.unlock_system("operator unlock", "operator")

            self.loop.run_until_complete(on_core())
        else:
            controller.unlock_system("operator unlock from the console thread", "operator")
        self._spin(max(1, n))  # the unlock is applied on the loop, after it is stored
        assert not controller.locked

    @rule(n=st.integers(min_value=1, max_value=10))
    def run_loop(self, n: int) -> None:
        self._spin(n)

    @rule()
    def settle(self) -> None:
        self._settle()

    @precondition(lambda self: self.restarts < 3)
    @rule(mid_live=st.booleans())
    def crash_restart(self, mid_live: bool) -> None:
        old = self.inc
        if mid_live:  # approve what waits, run until an action is inside its LIVE run, crash there
            for request in old.gate.pending:
                decision = grant(request, "operator", "approved just before the crash")
                assert self._answer(decision)
                self.granted.append(decision)
            for _ in range(60):
                if any(ctx.state is ExecutionState.LIVE for t, ctx in old.tasks if not t.done()):
                    break
                self._spin(1)
        locked_before = self._stream_locked()
        for task, _ in old.tasks:
            task.cancel()
        results = self.loop.run_until_complete(_drain([t for t, _ in old.tasks]))
        for result in results:
            assert isinstance(result, ExecutionContext | asyncio.CancelledError), result
        old.unsubscribe()
        # The crash: the batch of events not yet committed is lost, the connection just goes away.
        old.journal._pending.clear()
        old.journal._closed = True
        old.journal._conn.close()
        self.restarts += 1
        self.inc = self._boot(old.number + 1)
        # a lock recorded before the crash is still in force after it
        assert self.inc.controller.locked == locked_before
        for (plan_id, _), action in self.proposed.items():
            self._start(plan_id, action)
        self._settle()

    def teardown(self) -> None:
        try:
            tasks = [t for t, _ in self.inc.tasks]
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(_drain(tasks))
            self.inc.journal.close()
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ invariants

    def _live_hash(self, plan_id: str, action_id: str) -> str:
        action = self.proposed[(plan_id, action_id)]
        return canonical_action_hash(action.agent, action.tool, action.args, plan_id, LIVE)

    @invariant()
    def the_event_stream_is_safe(self) -> None:
        locked = False
        locked_runs: set[tuple[int, str, str]] = set()
        state: dict[tuple[int, str, str], str] = {}
        last_run: dict[tuple[int, str, str], tuple[ExecutionMode, int]] = {}
        requested: dict[tuple[int, str], ApprovalRequested] = {}
        decided: Counter[tuple[int, str]] = Counter()
        available: dict[tuple[int, str], ApprovalDecided] = {}
        effectful_live: Counter[str] = Counter()

        for number, event in self.stream:
            kind = type(event)
            if kind is SystemLocked:
                locked = True
            elif kind is SystemUnlocked:
                locked = False
            elif kind is StateTransition:
                key = (number, event.plan_id, event.action_id)
                before = state.get(key, ExecutionState.MOCK.value)
                assert event.from_state == before, f"(c) {key}: transition from {event.from_state}, state is {before}"
                allowed = ALLOWED_TRANSITIONS[ExecutionState(event.from_state)]
                assert ExecutionState(event.to_state) in allowed, f"(c) {key}: {event.from_state}->{event.to_state}"
                state[key] = event.to_state
            elif kind is ApprovalRequested:
                rid = (number, event.request_id)
                assert rid not in requested, f"request id {rid} reused within one incarnation"
                assert event.action_hash == self._live_hash(event.plan_id, event.action_id)
                requested[rid] = event
            elif kind is ApprovalDecided:
                rid = (number, event.request_id)
                request = requested[rid]
                decided[rid] += 1
                assert decided[rid] == 1, f"(d) request {rid} decided twice"
                assert event.action_hash == request.action_hash
                if event.approved:
                    assert event.ts <= request.expires_at, f"(a) approval {rid} accepted after it expired"
                    assert event.action_hash == self._live_hash(event.plan_id, event.action_id)
                    # the operator really sent an approval for exactly this hash, before the request expired
                    sent = self.answers.get(rid)
                    assert sent is not None, f"(a) approval {rid} that nobody sent"
                    answer, sent_at = sent
                    assert answer.approved and answer.request_id == event.request_id, f"(a) {rid}: {answer}"
                    assert answer.action_hash == event.action_hash, f"(a) {rid}: approved with a wrong hash"
                    assert sent_at <= request.expires_at, f"(a) {rid}: an expired approval was accepted"
                    available[rid] = event
            elif kind is ToolExecuted:
                key = (number, event.plan_id, event.action_id)
                mode = event.mode
                previous = last_run.get(key)
                if previous is None:
                    assert mode is MOCK and event.attempt == 1, f"(c) {key}: first run is {mode} #{event.attempt}"
                elif previous[0] is mode:
                    assert event.attempt == previous[1] + 1, f"(c) {key}: {mode} attempt {event.attempt}"
                else:
                    assert MODE_ORDER.index(mode) == MODE_ORDER.index(previous[0]) + 1, f"(c) {key}: skipped a mode"
                    assert event.attempt == 1
                last_run[key] = (mode, event.attempt)
                assert state.get(key, "MOCK") == STATE_OF_MODE[mode], f"(c) {key}: {mode} run in state {state.get(key)}"
                if mode is MOCK and event.success and locked:
                    locked_runs.add(key)
                if mode is not MOCK:
                    assert key not in locked_runs, f"(b) {key}: {mode} after its MOCK ran under the lock"
                if mode is LIVE and event.attempt == 1:
                    contract = REGISTRY.get(event.tool)
                    live_hash = self._live_hash(event.plan_id, event.action_id)
                    if contract.requires_approval:
                        match = [
                            rid
                            for rid, d in available.items()
                            if rid[0] == number
                            and (d.plan_id, d.action_id) == (event.plan_id, event.action_id)
                            and d.action_hash == live_hash
                        ]
                        assert match, f"(a)/(d) {key}: LIVE without an unused matching approval"
                        del available[match[-1]]  # single use
                    if not contract.read_only:
                        # the journal's unit: an irreversible effect by its hash alone (whatever the action
                        # id), a reversible one per action id (it may legitimately repeat under another id)
                        intent = live_hash if not contract.reversible else f"{live_hash}:{event.action_id}"
                        effectful_live[intent] += 1
                        assert effectful_live[intent] == 1, f"{key}: an effectful action ran LIVE twice"
                        blocked = self.blocked_at_restart.get(intent)
                        assert blocked is None or number < blocked[0], (
                            f"{key}: ran LIVE again although its intent was {blocked and blocked[1]} at a restart"
                        )

        # the controller's flag agrees with the published lock state (also across restarts)
        assert self.inc.controller.locked == locked

    @invariant()
    def contexts_agree(self) -> None:
        used: Counter[str] = Counter()
        for task, ctx in self.inc.tasks:
            if task.done() and not task.cancelled():
                assert task.exception() is None, repr(task.exception())
                assert ctx.state.terminal or ctx.state is ExecutionState.ROLLBACK, ctx.state
            lived = any(r.mode is LIVE for r in ctx.runs)
            if lived and ctx.contract.requires_approval:
                assert ctx.approval is not None and ctx.approval["approved"]
                assert ctx.approval["action_hash"] == ctx.action_hash(LIVE)
                used[ctx.approval["request_id"]] += 1
            if ctx.state is ExecutionState.COMPLETED and ctx.contract.requires_approval and lived:
                assert ctx.highest_mode is LIVE
        assert all(n == 1 for n in used.values()), f"(d) an approval covers two LIVE runs: {used}"


SafetyMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSafetyStateMachine = SafetyMachine.TestCase


# ----------------------------------------------------------- plain tests


def _controller(**kwargs: Any) -> tuple[ExecutionController, QueueGate, list[Event]]:
    bus = EventBus(ManualClock(), RUN_ID)
    events: list[Event] = []
    bus.subscribe(events.append)
    gate = QueueGate()
    return ExecutionController(REGISTRY, bus, gate, **kwargs), gate, events


async def test_real_approval_timeout_denies_and_holds_the_action() -> None:
    controller, gate, events = _controller(approval_timeout_s=0.05)
    action = PlannedAction(id="w", agent="a", tool="database_write", confidence=0.95, args={"t": 1})
    ctx = ExecutionContext(plan_id="p", action=action, contract=REGISTRY.get("database_write"), agent="a")
    executors = ExecutorRegistry(REGISTRY, controller.bus.clock)
    done = await controller.run_action(ctx, executors.for_tool("database_write"))
    assert done.state is ExecutionState.LOCKED
    [decided] = [e for e in events if type(e) is ApprovalDecided]
    assert decided.approved is False and decided.decided_by == "timeout"
    assert "no answer within 0.05s" in decided.reason
    assert [e.mode for e in events if type(e) is ToolExecuted] == [MOCK, DRY_RUN]
    assert gate.pending == []
    assert controller.live_escalations == 0


async def test_lock_while_waiting_for_approval_denies_it_and_a_late_grant_is_not_delivered() -> None:
    controller, gate, events = _controller()
    action = PlannedAction(id="w", agent="a", tool="file_operation", confidence=0.95, args={"path": "/x"})
    ctx = ExecutionContext(plan_id="p", action=action, contract=REGISTRY.get("file_operation"), agent="a")
    controller.bind_loop(asyncio.get_running_loop())
    executors = ExecutorRegistry(REGISTRY, controller.bus.clock)
    task = asyncio.create_task(controller.run_action(ctx, executors.for_tool("file_operation")))
    for _ in range(20):
        await asyncio.sleep(0)
        if gate.pending:
            break
    [request] = gate.pending
    assert controller.lock_system("operator lock")
    gate.answer(grant(request, "operator"))  # too late: the lock already denied it
    await task
    assert ctx.state is ExecutionState.LOCKED
    [decided] = [e for e in events if type(e) is ApprovalDecided]
    assert decided.approved is False and decided.decided_by == "lock"
    assert all(e.mode is not LIVE for e in events if type(e) is ToolExecuted)


def test_lock_requested_after_a_queued_unlock_wins() -> None:
    loop = asyncio.new_event_loop()
    try:
        controller, _, events = _controller()
        controller.bind_loop(loop)
        controller.lock_system("first lock")
        loop.run_until_complete(asyncio.sleep(0))
        assert controller.unlock_system("operator unlock")  # queued for the core loop
        controller.lock_system("operator locks again at once")  # from the console thread
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        assert controller.locked, [type(e).__name__ for e in events]
    finally:
        loop.close()


def _high_plan(plan_id: str) -> ToolExecutionPlan:
    return ToolExecutionPlan.model_validate(
        {
            "plan_id": plan_id,
            "actions": [
                {"id": "w", "agent": "a", "tool": "database_write", "confidence": 0.95, "args": {"plan": plan_id}}
            ],
        }
    )


def test_approval_ids_stay_unique_across_a_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = Phase24Harness(
        Phase24ExecutionConfig(output_dir=out, retry_delay_range_s=(0.0, 0.0)),
        gate=PolicyGate(approve_all=True),
        clock=ManualClock(),
        run_id=RUN_ID,
    )
    first.load_phase21_plans([_high_plan("p1"), _high_plan("p2")])
    first.bus.subscribe(lambda e: first.stop("interrupted") if e.kind == "plan_finished" else None)
    first.execute_orchestration_pipeline()
    resumed = Phase24Harness.from_interrupted_run(out, gate=PolicyGate(approve_all=True), clock=ManualClock())
    resumed.execute_orchestration_pipeline()

    decided = [e for e in read_events(out) if type(e) is ApprovalDecided]
    assert [(d.plan_id, d.approved) for d in decided] == [("p1", True), ("p2", True)]
    with Journal.open(out, RUN_ID) as journal:
        intents = journal.intents()
    assert [(i["plan_id"], i["status"]) for i in intents] == [("p1", "DONE"), ("p2", "DONE")]
    ids = [d.request_id for d in decided]
    assert len(set(ids)) == len(ids), ids
    assert len({i["approval_id"] for i in intents}) == len(intents)
