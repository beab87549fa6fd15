"""The execution controller: thresholds, the climb, the lock, approvals, rollback, audit trail."""

from __future__ import annotations

import asyncio
from datetime import datetime
from itertools import pairwise

import pytest
from conftest import SAMPLES, act, plan, read_jsonl, record, results_by_id

from core.approval import (
    ApprovalDecision,
    ApprovalRequest,
    CallbackGate,
    PolicyGate,
    QueueGate,
    canonical_action_hash,
    grant,
)
from core.clock import ManualClock
from core.contracts import ExecutionMode, RiskLevel, standard_registry
from core.controller import (
    ALLOWED_TRANSITIONS,
    CONFIDENCE_THRESHOLDS,
    ExecutionContext,
    ExecutionController,
    ExecutionState,
    evaluate_execution_mode,
    live_threshold,
)
from core.errors import TransitionNotAllowed
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventBus,
    RollbackPerformed,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
)
from core.executors import SimulatedExecutor
from core.plans import PlannedAction, load_plans

MOCK, DRY_RUN, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE
S = ExecutionState


# -- direct controller helpers -------------------------------------------------------------


def make_controller(gate=None, **kwargs):
    clock = ManualClock()
    bus = EventBus(clock, "ctl_run")
    events = []
    bus.subscribe(events.append)
    controller = ExecutionController(standard_registry(), bus, gate or PolicyGate(), **kwargs)
    return controller, events


def make_ctx(controller, tool="math_compute", confidence=0.9, action_id="a1", agent="agent_a", **action):
    planned = PlannedAction(id=action_id, agent=agent, tool=tool, confidence=confidence, **action)
    return ExecutionContext(plan_id="p1", action=planned, contract=controller.registry.get(tool), agent=agent)


async def climb(controller, ctx):
    executor = SimulatedExecutor(ctx.contract, controller.bus.clock)
    return await controller.run_action(ctx, executor.binding())


def modes_run(ctx):
    return [r.mode for r in ctx.runs]


# -- contexts and initialisation -----------------------------------------------------------


def test_execution_context_creation():
    controller, _ = make_controller()
    ctx = make_ctx(controller, tool="form_fill", confidence=0.72, args={"field": "name"})
    assert ctx.state is S.MOCK
    assert ctx.target_mode is MOCK
    assert ctx.mode_cap is LIVE
    assert ctx.runs == []
    assert ctx.highest_mode is None
    assert ctx.approval is None and ctx.failure is None
    assert (ctx.action_id, ctx.tool, ctx.confidence, ctx.agent) == ("a1", "form_fill", 0.72, "agent_a")
    assert ctx.contract.risk_level is RiskLevel.MEDIUM
    expected = canonical_action_hash("agent_a", "form_fill", {"field": "name"}, "p1", LIVE)
    assert ctx.action_hash() == expected
    assert ctx.action_hash(DRY_RUN) != expected
    # the hash binds the agent, the plan and the args
    other = make_ctx(controller, tool="form_fill", confidence=0.72, agent="agent_b", args={"field": "name"})
    assert other.action_hash() != expected
    assert canonical_action_hash("agent_a", "form_fill", {"field": "nom"}, "p1", LIVE) != expected


def test_execution_controller_initialization():
    gate = PolicyGate()
    controller, events = make_controller(gate)
    assert controller.locked is False
    assert controller.lock_reason == ""
    assert controller.mode_ceiling is LIVE
    assert controller.live_floor is None
    assert controller.max_live_escalations is None
    assert controller.approval_timeout_s == 120.0
    assert controller.live_escalations == 0
    assert list(controller.audit_trail) == []
    assert controller.gate is gate
    assert len(controller.registry) == 18
    assert events == []

    capped, _ = make_controller(mode_ceiling=DRY_RUN, live_floor=0.9, max_live_escalations=2, approval_timeout_s=5)
    assert capped.mode_ceiling is DRY_RUN
    assert capped.evaluate_execution_mode("math_compute", 0.85) is DRY_RUN  # floor 0.9 beats LOW's 0.7
    assert capped.evaluate_execution_mode("math_compute", 0.9) is LIVE


# -- mode evaluation -----------------------------------------------------------------------


def test_execution_mode_evaluation_low_risk():
    controller, _ = make_controller()
    for tool in ("vision_inspect", "math_compute", "ghl_search"):
        assert controller.evaluate_execution_mode(tool, 0.0) is MOCK
        assert controller.evaluate_execution_mode(tool, 0.49) is MOCK
        assert controller.evaluate_execution_mode(tool, 0.5) is DRY_RUN
        assert controller.evaluate_execution_mode(tool, 0.69) is DRY_RUN
        assert controller.evaluate_execution_mode(tool, 0.7) is LIVE
        assert controller.evaluate_execution_mode(tool, 1.0) is LIVE


async def test_low_risk_climbs_one_mode_at_a_time():
    controller, events = make_controller()
    ctx = await climb(controller, make_ctx(controller, tool="math_compute", confidence=0.95))
    assert ctx.state is S.COMPLETED
    assert modes_run(ctx) == [MOCK, DRY_RUN, LIVE]
    assert [(t.from_state, t.to_state) for t in controller.audit_trail] == [
        (S.MOCK, S.DRY_RUN),
        (S.DRY_RUN, S.LIVE),
        (S.LIVE, S.COMPLETED),
    ]
    assert not [e for e in events if isinstance(e, ApprovalRequested)]  # LOW needs no approval
    assert controller.live_escalations == 1

    stays, _ = make_controller()
    ctx = await climb(stays, make_ctx(stays, tool="math_compute", confidence=0.4))
    assert ctx.state is S.COMPLETED and modes_run(ctx) == [MOCK]
    assert ctx.target_mode is MOCK


def test_execution_mode_evaluation_high_risk():
    controller, _ = make_controller()
    for tool in ("database_write", "msgraph_send_email", "file_operation"):
        assert controller.evaluate_execution_mode(tool, 0.79) is MOCK
        assert controller.evaluate_execution_mode(tool, 0.8) is DRY_RUN
        assert controller.evaluate_execution_mode(tool, 0.84) is DRY_RUN
        assert controller.evaluate_execution_mode(tool, 0.85) is LIVE
    assert controller.evaluate_execution_mode("form_fill", 0.64) is MOCK
    assert controller.evaluate_execution_mode("form_fill", 0.65) is DRY_RUN
    assert controller.evaluate_execution_mode("form_fill", 0.8) is LIVE


async def test_high_risk_live_needs_an_approval():
    denied, events = make_controller(PolicyGate(approve_all=False))
    ctx = await climb(denied, make_ctx(denied, tool="database_write", confidence=0.99))
    assert ctx.state is S.LOCKED
    assert modes_run(ctx) == [MOCK, DRY_RUN]
    assert ctx.approval is not None and ctx.approval["approved"] is False
    decided = [e for e in events if isinstance(e, ApprovalDecided)]
    assert len(decided) == 1 and decided[0].decided_by == "policy:deny-by-default"
    assert denied.live_escalations == 0

    granted, events = make_controller(PolicyGate(approve_all=True))
    ctx = await climb(granted, make_ctx(granted, tool="database_write", confidence=0.99))
    assert ctx.state is S.COMPLETED
    assert modes_run(ctx) == [MOCK, DRY_RUN, LIVE]
    requested = [e for e in events if isinstance(e, ApprovalRequested)]
    assert len(requested) == 1
    assert requested[0].threshold == 0.85 and requested[0].risk_level is RiskLevel.HIGH
    assert requested[0].action_hash == ctx.action_hash()


# The exact table, written out independently of core.controller.
TABLE = {
    RiskLevel.LOW: (0.5, 0.7),
    RiskLevel.MEDIUM: (0.65, 0.8),
    RiskLevel.HIGH: (0.8, 0.85),
}


@pytest.mark.parametrize("risk", list(RiskLevel))
def test_confidence_threshold_enforcement(risk):
    dry, live = TABLE[risk]
    assert CONFIDENCE_THRESHOLDS[risk] == (dry, live)
    assert live_threshold(risk) == live
    # both sides of every boundary
    assert evaluate_execution_mode(risk, dry - 0.0001) is MOCK
    assert evaluate_execution_mode(risk, dry) is DRY_RUN
    assert evaluate_execution_mode(risk, live - 0.0001) is DRY_RUN
    assert evaluate_execution_mode(risk, live) is LIVE
    assert evaluate_execution_mode(risk, 0.0) is MOCK
    assert evaluate_execution_mode(risk, 1.0) is LIVE
    # a live floor only ever raises the LIVE threshold
    assert evaluate_execution_mode(risk, live, live_floor=0.0) is LIVE
    assert evaluate_execution_mode(risk, 0.95, live_floor=0.96) is DRY_RUN
    assert evaluate_execution_mode(risk, 0.96, live_floor=0.96) is LIVE
    assert live_threshold(risk, 0.99) == 0.99
    assert live_threshold(risk, 0.1) == live


def test_confidence_threshold_exact_named_boundaries():
    cases = [
        (RiskLevel.LOW, 0.4999, MOCK),
        (RiskLevel.LOW, 0.5, DRY_RUN),
        (RiskLevel.LOW, 0.6999, DRY_RUN),
        (RiskLevel.LOW, 0.7, LIVE),
        (RiskLevel.MEDIUM, 0.6499, MOCK),
        (RiskLevel.MEDIUM, 0.65, DRY_RUN),
        (RiskLevel.MEDIUM, 0.7999, DRY_RUN),
        (RiskLevel.MEDIUM, 0.8, LIVE),
        (RiskLevel.HIGH, 0.7999, MOCK),
        (RiskLevel.HIGH, 0.8, DRY_RUN),
        (RiskLevel.HIGH, 0.8499, DRY_RUN),
        (RiskLevel.HIGH, 0.85, LIVE),
    ]
    for risk, confidence, expected in cases:
        assert evaluate_execution_mode(risk, confidence) is expected, (risk, confidence)


def test_confidence_thresholds_in_a_pipeline(make_harness):
    actions = [
        act("low_mock", tool="math_compute", confidence=0.4999),
        act("low_dry", tool="math_compute", confidence=0.6999),
        act("low_live", tool="math_compute", confidence=0.7),
        act("med_dry", tool="form_fill", confidence=0.7999),
        act("med_live", tool="form_fill", confidence=0.8),
        act("high_mock", tool="database_write", confidence=0.7999),
        act("high_dry", tool="database_write", confidence=0.8499, args={"row": 2}),
        act("high_live", tool="database_write", confidence=0.85, args={"row": 3}),
    ]
    h = make_harness([plan(actions)], gate=PolicyGate(approve_all=True))
    h.execute_orchestration_pipeline()
    results = results_by_id(h)
    expected = {
        "low_mock": "MOCK",
        "low_dry": "DRY_RUN",
        "low_live": "LIVE",
        "med_dry": "DRY_RUN",
        "med_live": "LIVE",
        "high_mock": "MOCK",
        "high_dry": "DRY_RUN",
        "high_live": "LIVE",
    }
    assert {k: r["mode"] for k, r in results.items()} == expected
    assert all(r["final_state"] == "COMPLETED" for r in results.values())


# -- the lock ------------------------------------------------------------------------------


def test_system_lock_enforcement(make_harness):
    actions = [
        act("read", tool="vision_inspect", confidence=0.95),
        act("fill", tool="form_fill", confidence=0.9, agent="agent_b"),
        act("write", tool="database_write", confidence=0.95, agent="agent_c"),
    ]
    h = make_harness([plan(actions)], gate=PolicyGate(approve_all=True))
    log = record(h)
    assert h.lock("maintenance") is True
    assert h.lock("again") is False  # already locked
    assert h.controller.locked and h.controller.lock_reason == "maintenance"
    summary = h.execute_orchestration_pipeline()

    assert [e.mode for e in log.executed()] == [MOCK, MOCK, MOCK]
    assert not [e for e in log.executed() if e.mode is not MOCK]
    results = results_by_id(h)
    assert {r["final_state"] for r in results.values()} == {"LOCKED"}
    assert all(r["mode"] == "MOCK" for r in results.values())
    assert all("system locked: maintenance" in r["reason"] for r in results.values())
    assert not log.of(ApprovalRequested)  # a locked system never asks
    assert summary["locked"] is True
    assert summary["live_executions"] == 0
    assert summary["actions_by_final_state"] == {"LOCKED": 3}


def test_system_lock_mid_run_from_subscriber(make_harness):
    """Lock as soon as the first action's MOCK run is reported: later actions stay MOCK."""
    actions = [act(f"a{i}", tool="math_compute", confidence=0.95) for i in range(4)]
    h = make_harness([plan(actions)], gate=PolicyGate(approve_all=True))
    log = record(h)

    def lock_after_first_mock(event):
        if getattr(event, "kind", "") == "tool_executed" and event.action_id == "a0":
            h.lock("tripwire")

    h.bus.subscribe(lock_after_first_mock)
    h.execute_orchestration_pipeline()
    assert len(log.of(SystemLocked)) == 1
    assert [(e.action_id, e.mode) for e in log.executed()] == [(f"a{i}", MOCK) for i in range(4)]
    assert {r["final_state"] for r in results_by_id(h).values()} == {"LOCKED"}
    decisions = read_jsonl(h.config.output_dir / "operator_decisions.jsonl")
    assert [d["decision"] for d in decisions] == ["LOCK"]
    assert decisions[0]["why"] == "tripwire"


def test_system_unlock(make_harness):
    h = make_harness([plan([act("a", tool="math_compute", confidence=0.95)])])
    log = record(h)
    assert h.unlock() is False  # nothing to unlock
    assert h.lock("pause for review") is True
    assert h.unlock("review done") is True
    assert h.unlock() is False
    assert h.controller.locked is False and h.controller.lock_reason == ""
    assert [type(e) for e in log] == [SystemLocked, SystemUnlocked]
    assert log[1].reason == "review done"
    summary = h.execute_orchestration_pipeline()
    assert [e.mode for e in log.executed()] == [MOCK, DRY_RUN, LIVE]
    assert results_by_id(h)["a"]["final_state"] == "COMPLETED"
    assert summary["locked"] is False


# -- approvals -----------------------------------------------------------------------------


def high_plan(**extra):
    return plan([act("write", tool="database_write", confidence=0.95, args={"table": "t", "id": 1}, **extra)])


def test_denied_approval_ends_locked(make_harness):
    h = make_harness([high_plan()], gate=PolicyGate(approve_all=False))
    log = record(h)
    h.execute_orchestration_pipeline()
    result = results_by_id(h)["write"]
    assert result["final_state"] == "LOCKED"
    assert result["approval"]["approved"] is False
    assert not log.executed(mode=LIVE)
    assert [e.mode for e in log.executed()] == [MOCK, DRY_RUN]
    transitions = [(e.from_state, e.to_state) for e in log.of(StateTransition)]
    assert transitions[-2:] == [("DRY_RUN", "AWAITING_APPROVAL"), ("AWAITING_APPROVAL", "LOCKED")]
    lines = read_jsonl(h.config.output_dir / "operator_decisions.jsonl")
    assert [(d["decision"], d["action_id"]) for d in lines] == [("DENY", "write")]


def test_approval_hash_mismatch_is_refused(make_harness):
    gate = QueueGate()

    def answer_with_wrong_hash(request: ApprovalRequest):
        wrong = ApprovalDecision(
            request_id=request.request_id,
            action_hash="0" * 64,
            approved=True,
            decided_by="tester",
        )
        assert gate.answer(wrong) is True

    gate.on_request = answer_with_wrong_hash
    h = make_harness([high_plan()], gate=gate)
    log = record(h)
    h.execute_orchestration_pipeline()
    decided = log.of(ApprovalDecided)
    assert len(decided) == 1
    assert decided[0].approved is False
    assert "hash does not match" in decided[0].reason
    assert results_by_id(h)["write"]["final_state"] == "LOCKED"
    assert not log.executed(mode=LIVE)


def test_approval_with_matching_hash_is_granted(make_harness):
    gate = QueueGate()
    gate.on_request = lambda request: gate.answer(grant(request, "tester"))
    h = make_harness([high_plan()], gate=gate)
    log = record(h)
    h.execute_orchestration_pipeline()
    assert log.of(ApprovalDecided)[0].approved is True
    assert results_by_id(h)["write"]["final_state"] == "COMPLETED"
    assert len(log.executed(mode=LIVE)) == 1


class ReplayGate:
    """Grants the first request, then answers every later one with that first decision."""

    def __init__(self):
        self.first: ApprovalDecision | None = None
        self.seen: list[str] = []

    async def decide(self, request):
        self.seen.append(request.request_id)
        if self.first is None:
            self.first = grant(request, "replayer")
        return self.first

    def cancel_pending(self, reason, by="lock"):
        pass


def test_reused_approval_id_is_refused(make_harness):
    actions = [
        act("w1", tool="database_write", confidence=0.95, args={"id": 1}),
        act("w2", tool="database_write", confidence=0.95, args={"id": 2}),
    ]
    gate = ReplayGate()
    h = make_harness([plan(actions)], gate=gate)
    log = record(h)
    h.execute_orchestration_pipeline()
    assert len(gate.seen) == 2 and gate.seen[0] != gate.seen[1]
    decided = {e.action_id: e for e in log.of(ApprovalDecided)}
    assert decided["w1"].approved is True
    assert decided["w2"].approved is False
    assert decided["w2"].reason.startswith("refused:")
    results = results_by_id(h)
    assert results["w1"]["final_state"] == "COMPLETED"
    assert results["w2"]["final_state"] == "LOCKED"
    assert [e.action_id for e in log.executed(mode=LIVE)] == ["w1"]


def test_check_decision_refuses_a_second_use():
    controller, _ = make_controller()
    ctx = make_ctx(controller, tool="database_write", confidence=0.95)
    request = controller._new_request(ctx)
    decision = grant(request, "tester")
    assert controller.check_decision(ctx, request, decision).approved is True
    again = controller.check_decision(ctx, request, decision)
    assert again.approved is False
    assert again.reason == "refused: approval was already used"
    # an approval for another request does not count either
    other = controller._new_request(ctx)
    stale = controller.check_decision(ctx, other, decision)
    assert stale.approved is False and "another request" in stale.reason


def test_approval_arriving_after_expiry_is_refused(make_harness):
    clock = ManualClock()
    gate = QueueGate()

    def late(request):
        clock.advance(request.timeout_s + 1)
        gate.answer(grant(request, "slow operator"))

    gate.on_request = late
    h = make_harness([high_plan()], gate=gate, clock=clock, approval_timeout_s=30)
    log = record(h)
    h.execute_orchestration_pipeline()
    decided = log.of(ApprovalDecided)[0]
    assert decided.approved is False and "expired" in decided.reason
    assert not log.executed(mode=LIVE)


def test_approval_timeout_ends_locked(make_harness):
    gate = QueueGate()  # nobody answers
    h = make_harness([high_plan()], gate=gate, approval_timeout_s=0.05)
    log = record(h)
    h.execute_orchestration_pipeline()
    result = results_by_id(h)["write"]
    assert result["final_state"] == "LOCKED"
    assert result["approval"]["decided_by"] == "timeout"
    decided = log.of(ApprovalDecided)[0]
    assert decided.approved is False and decided.decided_by == "timeout"
    assert not log.executed(mode=LIVE)
    assert gate.pending == []


async def test_lock_while_approval_pending_denies_it(make_harness):
    gate = QueueGate()
    h = make_harness([high_plan()], gate=gate)
    log = record(h)
    task = asyncio.create_task(h.run_pipeline())
    for _ in range(1000):
        if gate.pending:
            break
        await asyncio.sleep(0)
    assert [r.action_id for r in gate.pending] == ["write"]
    assert h.lock("operator pressed L") is True
    await asyncio.wait_for(task, 5)
    decided = log.of(ApprovalDecided)[0]
    assert decided.approved is False
    assert decided.decided_by == "lock"
    assert "system locked" in decided.reason
    assert results_by_id(h)["write"]["final_state"] == "LOCKED"
    assert not log.executed(mode=LIVE)
    assert gate.pending == []
    kinds = [d["decision"] for d in read_jsonl(h.config.output_dir / "operator_decisions.jsonl")]
    assert kinds == ["LOCK", "DENY"]


def test_callback_gate_receives_tool_and_confidence_on_controller():
    calls = []

    def callback(tool, confidence):
        calls.append((tool, confidence))
        return True

    controller, _ = make_controller(CallbackGate(callback))
    ctx = asyncio.run(climb(controller, make_ctx(controller, tool="file_operation", confidence=0.91)))
    assert calls == [("file_operation", 0.91)]
    assert ctx.state is S.COMPLETED


def test_max_live_escalations(make_harness):
    actions = [act(f"a{i}", tool="math_compute", confidence=0.95, args={"i": i}) for i in range(3)]
    h = make_harness([plan(actions)], max_live_escalations=1)
    log = record(h)
    h.execute_orchestration_pipeline()
    assert len(log.executed(mode=LIVE)) == 1
    assert all(r["final_state"] == "COMPLETED" for r in results_by_id(h).values())
    assert sum(r["mode"] == "LIVE" for r in results_by_id(h).values()) == 1


# -- rollback ------------------------------------------------------------------------------


def test_rollback_stack_tracking(make_harness):
    """Only actions that completed LIVE and are compensable (reversible, not read-only) are
    stacked; DRY_RUN-only and read-only actions are not undone."""
    actions = [
        act("peek", tool="vision_inspect", confidence=0.95),  # LIVE but read-only
        act("draft_fill", tool="form_fill", confidence=0.7),  # DRY_RUN only
        act("fill", tool="form_fill", confidence=0.9, args={"f": 1}),  # LIVE, compensable
        act("note", tool="text_extract", confidence=0.9),  # LIVE, compensable
        act("calc", tool="math_compute", confidence=0.9),  # LIVE, compensable
        act("boom", tool="button_click", confidence=0.9, simulate={"fail_in": ["LIVE"]}),
    ]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()
    rollbacks = log.of(RollbackPerformed)
    assert len(rollbacks) == 1
    assert rollbacks[0].trigger_action_id == "boom"
    assert rollbacks[0].undone == ["calc", "note", "fill"]
    assert rollbacks[0].total_rollbacks == 3
    results = results_by_id(h)
    assert {k for k, r in results.items() if r["rolled_back"]} == {"calc", "note", "fill"}
    assert results["draft_fill"]["mode"] == "DRY_RUN" and not results["draft_fill"]["rolled_back"]
    assert results["peek"]["mode"] == "LIVE" and not results["peek"]["rolled_back"]
    assert h.results[0].rollbacks_executed == 3


def test_no_failure_means_no_rollback(make_harness):
    h = make_harness([plan([act("fill", tool="form_fill", confidence=0.9)])])
    log = record(h)
    h.execute_orchestration_pipeline()
    assert not log.of(RollbackPerformed)
    assert (h.config.output_dir / "rollback_events.jsonl").read_text() == ""
    assert h.executors.simulated_executor("form_fill").compensations == 0


def test_rollback_execution(make_harness):
    plans = load_plans([SAMPLES / "rollback.json"], standard_registry())
    h = make_harness(plans)
    log = record(h)
    summary = h.execute_orchestration_pipeline()

    live_done = [e.action_id for e in log.executed(mode=LIVE, success=True) if h.registry.get(e.tool).compensable]
    assert live_done == ["fill_name", "fill_card", "note_total"]
    lines = read_jsonl(h.config.output_dir / "rollback_events.jsonl")
    assert len(lines) == 1
    line = lines[0]
    assert line["undone"] == ["note_total", "fill_card", "fill_name"]
    assert line["undone"] == list(reversed(live_done))  # reverse order of completion
    assert line["total_rollbacks"] == 3
    assert line["trigger_action_id"] == "submit"
    assert line["failed_to_undo"] == []
    assert line["timestamp"].endswith("Z")

    results = results_by_id(h)
    assert results["submit"]["final_state"] == "ABORTED"
    assert results["after_submit"]["final_state"] == "ABORTED"
    assert "plan stopped after failure of submit" in results["after_submit"]["reason"]
    assert not log.executed(action_id="after_submit")
    assert results["inspect"]["rolled_back"] is False
    assert h.executors.simulated_executor("form_fill").compensations == 2
    assert h.executors.simulated_executor("text_extract").compensations == 1
    assert h.results[0].status == "FAILED"
    assert summary["total_rollbacks"] == 3 and summary["plans_failed"] == 1


def test_failed_compensation_is_reported(make_harness):
    actions = [
        act("fill", tool="form_fill", confidence=0.9, simulate={"compensation_fails": True}),
        act("note", tool="text_extract", confidence=0.9),
        act("boom", tool="math_compute", confidence=0.9, simulate={"fail_in": ["DRY_RUN"]}),
    ]
    h = make_harness([plan(actions)])
    h.execute_orchestration_pipeline()
    line = read_jsonl(h.config.output_dir / "rollback_events.jsonl")[0]
    assert line["undone"] == ["note"]
    assert line["failed_to_undo"] == ["fill"]
    assert line["total_rollbacks"] == 1
    results = results_by_id(h)
    assert results["note"]["rolled_back"] is True
    assert results["fill"]["rolled_back"] is False


def test_rollback_disabled(make_harness):
    actions = [
        act("fill", tool="form_fill", confidence=0.9),
        act("boom", tool="math_compute", confidence=0.9, simulate={"fail_in": ["LIVE"]}),
        act("after", tool="math_compute", confidence=0.9, args={"n": 2}),
    ]
    h = make_harness([plan(actions)], enable_rollback_on_failure=False)
    log = record(h)
    h.execute_orchestration_pipeline()
    assert not log.of(RollbackPerformed)
    results = results_by_id(h)
    assert results["boom"]["final_state"] == "ABORTED"
    assert results["fill"]["final_state"] == "COMPLETED" and not results["fill"]["rolled_back"]
    assert results["after"]["final_state"] == "COMPLETED"  # the plan carries on
    assert h.results[0].failed_executions == 1


# -- the audit trail -----------------------------------------------------------------------


def test_state_transition_audit_trail(make_harness):
    actions = [
        act("ok", tool="math_compute", confidence=0.95),
        act("dry", tool="form_fill", confidence=0.7, agent="agent_b"),
        act("held", tool="database_write", confidence=0.95, agent="agent_c"),
        act("bad", tool="text_extract", confidence=0.95, agent="agent_d", simulate={"fail_in": ["DRY_RUN"]}),
        act("child", tool="math_compute", confidence=0.95, agent="agent_d", depends_on=["bad"]),
    ]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()

    trail = list(h.controller.audit_trail)
    assert trail, "no transitions recorded"
    for record_ in trail:
        assert isinstance(record_.timestamp, datetime)
        assert record_.reason.strip()
        assert record_.to_state in ALLOWED_TRANSITIONS[record_.from_state]

    by_action: dict[str, list] = {}
    for record_ in trail:
        by_action.setdefault(record_.action_id, []).append(record_)
    assert set(by_action) == {"ok", "dry", "held", "bad", "child"}
    for chain in by_action.values():
        assert chain[0].from_state is S.MOCK
        for before, after in pairwise(chain):
            assert after.from_state is before.to_state
        assert chain[-1].to_state.terminal
    assert [r.to_state for r in by_action["held"]][-2:] == [S.AWAITING_APPROVAL, S.LOCKED]
    assert [r.to_state for r in by_action["bad"]] == [S.DRY_RUN, S.ROLLBACK, S.ABORTED]
    assert [r.to_state for r in by_action["child"]] == [S.ABORTED]

    # the file holds exactly the same transitions, in order, in the report's schema
    lines = read_jsonl(h.config.output_dir / "execution_state_transitions.jsonl")
    assert len(lines) == len(trail) == len(log.of(StateTransition))
    for line, record_ in zip(lines, trail, strict=True):
        assert {"from_state", "to_state", "timestamp", "reason"} <= set(line)
        assert (line["from_state"], line["to_state"], line["reason"]) == (
            record_.from_state.value,
            record_.to_state.value,
            record_.reason,
        )
        assert line["timestamp"].endswith("Z")


def test_illegal_transition_raises():
    controller, events = make_controller()
    ctx = make_ctx(controller)
    with pytest.raises(TransitionNotAllowed) as info:
        controller.transition(ctx, S.LIVE, "skip DRY_RUN")  # MOCK -> LIVE skips a mode
    assert (info.value.from_state, info.value.to_state, info.value.action_id) == ("MOCK", "LIVE", "a1")
    assert ctx.state is S.MOCK and events == [] and not controller.audit_trail

    controller.transition(ctx, S.COMPLETED, "done")
    for target in ExecutionState:
        with pytest.raises(TransitionNotAllowed):
            controller.transition(ctx, target, "after the end")
    assert len(controller.audit_trail) == 1

    awaiting = make_ctx(controller, action_id="a2")
    controller.transition(awaiting, S.DRY_RUN, "up")
    controller.transition(awaiting, S.AWAITING_APPROVAL, "ask")
    with pytest.raises(TransitionNotAllowed):
        controller.transition(awaiting, S.COMPLETED, "no LIVE without passing through it")


def test_allowed_transitions_table_shape():
    assert set(ALLOWED_TRANSITIONS) == set(ExecutionState)
    for state in (S.LOCKED, S.ABORTED, S.COMPLETED):
        assert state.terminal and ALLOWED_TRANSITIONS[state] == frozenset()
    assert S.LIVE not in ALLOWED_TRANSITIONS[S.MOCK]  # no skipping DRY_RUN
    assert ALLOWED_TRANSITIONS[S.ROLLBACK] == frozenset({S.ABORTED})
    assert S.LIVE in ALLOWED_TRANSITIONS[S.AWAITING_APPROVAL]


def test_identical_actions_each_run_live(make_harness):
    actions = [act("one", tool="math_compute", confidence=0.9), act("two", tool="math_compute", confidence=0.9)]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()
    assert [e.action_id for e in log.executed(mode=LIVE)] == ["one", "two"]
    assert results_by_id(h)["two"]["mode"] == "LIVE"


def test_lock_before_run_is_recorded_in_operator_decisions(make_harness):
    h = make_harness([plan([act("a", tool="math_compute", confidence=0.95)])])
    h.lock("locked before start")
    h.execute_orchestration_pipeline()
    assert results_by_id(h)["a"]["final_state"] == "LOCKED"
    decisions = read_jsonl(h.config.output_dir / "operator_decisions.jsonl")
    assert [d["decision"] for d in decisions] == ["LOCK"]
