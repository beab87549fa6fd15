"""The orchestrator: the 7-step cycle, allocation, concurrency, dependencies, dry-run safety."""

from __future__ import annotations

import asyncio

import pytest
from conftest import SAMPLES, act, plan, read_jsonl, record, results_by_id

from core.approval import PolicyGate
from core.clock import ManualClock
from core.conflicts import ConflictResolver, ResolutionPlan
from core.contracts import ExecutionMode, standard_registry
from core.controller import ExecutionController
from core.errors import ContractError
from core.events import (
    ApprovalRequested,
    ConflictDetected,
    ConflictResolved,
    EventBus,
    RunStarted,
    StateTransition,
    ToolExecuted,
)
from core.executors import ExecutorRegistry
from core.orchestrator import OrchestrationResult, ToolOrchestrator
from core.plans import ToolExecutionPlan, load_plans

MOCK, DRY_RUN, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE


def build(gate=None, **controller_kwargs):
    clock = ManualClock()
    registry = standard_registry()
    bus = EventBus(clock, "orch_run")
    events = []
    bus.subscribe(events.append)
    controller = ExecutionController(registry, bus, gate or PolicyGate(), **controller_kwargs)
    resolver = ConflictResolver(registry, delay_range_s=(0.0, 0.0))
    executors = ExecutorRegistry(registry, clock)
    orchestrator = ToolOrchestrator(registry, controller, resolver, executors, bus)
    return orchestrator, events


def test_orchestrator_initialization():
    orchestrator, events = build()
    assert orchestrator.enable_rollback_on_failure is True
    assert orchestrator.agent_history == {}
    assert len(orchestrator.registry) == 18
    assert orchestrator.controller.registry is orchestrator.registry
    assert orchestrator.resolver.registry is orchestrator.registry
    assert orchestrator.executors.all_simulated is True
    assert events == []
    # the pause gate defaults to "never paused"
    assert asyncio.run(orchestrator.pause_gate()) is None


def test_orchestrator_tool_registration():
    orchestrator, _ = build()
    good = plan([act("a", tool="form_fill"), act("b", tool="database_write"), act("c", tool="form_fill")])
    assert orchestrator.validate_plan(good) == []
    orchestrator.register_tools(good)
    assert set(orchestrator.resolver.concurrency_limits) == {"form_fill", "database_write"}
    assert orchestrator.resolver.concurrency_limits["database_write"] == 1
    assert orchestrator.resolver.rate_limit_state == {"form_fill": 0, "database_write": 0}

    bad = ToolExecutionPlan.model_validate(
        {"plan_id": "bad", "actions": [act("a", tool="form_fill"), act("z", tool="teleport")]}
    )
    assert orchestrator.validate_plan(bad) == ["action 'z': unknown tool 'teleport'"]
    with pytest.raises(ContractError, match="teleport"):
        orchestrator.register_tools(bad)
    with pytest.raises(ContractError):
        asyncio.run(orchestrator.orchestrate(bad))


def test_tool_allocation():
    orchestrator, _ = build()
    p = plan(
        [
            act("a1", agent="alpha"),
            act("b1", agent="beta"),
            act("a2", agent="alpha"),
            act("b2", agent="beta"),
            act("a3", agent="alpha"),
        ]
    )
    queues = orchestrator.allocate_tools(p, ResolutionPlan())
    assert {agent: [a.id for a in actions] for agent, actions in queues.items()} == {
        "alpha": ["a1", "a2", "a3"],
        "beta": ["b1", "b2"],
    }
    moved = orchestrator.allocate_tools(p, ResolutionPlan(reassigned={"a2": "beta", "b2": "gamma"}))
    assert {agent: [a.id for a in actions] for agent, actions in moved.items()} == {
        "alpha": ["a1", "a3"],
        "beta": ["b1", "a2"],
        "gamma": ["b2"],
    }


def test_orchestration_cycle_execution():
    orchestrator, events = build()
    plans = load_plans([SAMPLES / "happy_path.json"], orchestrator.registry)
    result = asyncio.run(orchestrator.orchestrate(plans[0]))
    assert isinstance(result, OrchestrationResult)
    assert result.plan_id == "happy_path"
    assert result.status == "SUCCEEDED"
    assert result.successful_executions == 7
    assert result.failed_executions == 0
    assert result.rollbacks_executed == 0
    assert len(result.tool_results) == 7
    assert [r["action_id"] for r in result.tool_results] == [a.id for a in plans[0].actions]
    by_id = {r["action_id"]: r for r in result.tool_results}
    assert by_id["quote"]["mode"] == "DRY_RUN"  # LOW at 0.6
    assert by_id["inspect"]["mode"] == "LIVE"
    for r in result.tool_results:
        assert r["final_state"] == "COMPLETED" and r["success"] is True and r["simulated"] is True
        assert [e["mode"] for e in r["executions"]] == ["MOCK", "DRY_RUN", "LIVE"][: len(r["executions"])]
    # dependencies honoured: extract after inspect, fill after extract
    done = {}
    for e in events:
        if isinstance(e, ToolExecuted) and e.action_id not in done:
            done[e.action_id] = e.seq
    finished = {e.action_id: e.seq for e in events if isinstance(e, StateTransition) and e.to_state == "COMPLETED"}
    assert finished["inspect"] < done["extract"]
    assert finished["extract"] < done["fill"]
    # agent history records each agent's queue
    assert orchestrator.agent_history["planner"] == ["goal", "extract", "fill"]


def test_orchestration_cycle_emits_conflicts_before_execution():
    orchestrator, events = build()
    plans = load_plans([SAMPLES / "conflicts.json"], orchestrator.registry)
    result = asyncio.run(orchestrator.orchestrate(plans[0]))
    first_exec = next(e.seq for e in events if isinstance(e, ToolExecuted))
    detected = [e for e in events if isinstance(e, ConflictDetected)]
    resolved = [e for e in events if isinstance(e, ConflictResolved)]
    planned = [e for e in detected if e.conflict_type != "TIMEOUT"]
    assert planned and all(e.seq < first_exec for e in planned)
    assert result.conflicts_detected == len(detected)
    assert result.conflicts_resolved == len(resolved)
    assert {e.conflict_id for e in detected} == {e.conflict_id for e in resolved}


def test_orchestration_dry_run_safety(make_harness):
    plans = load_plans(
        [SAMPLES / "happy_path.json", SAMPLES / "approvals.json", SAMPLES / "rollback.json"],
        standard_registry(),
    )
    h = make_harness(plans, gate=PolicyGate(approve_all=True), dry_run_only=True)
    log = record(h)
    summary = h.execute_orchestration_pipeline()
    assert log.executed(), "nothing ran"
    assert not log.executed(mode=LIVE)
    assert not log.of(ApprovalRequested)  # nothing ever needed to go LIVE
    assert not [e for e in log.of(StateTransition) if e.to_state in ("LIVE", "AWAITING_APPROVAL")]
    assert summary["live_executions"] == 0
    for result in h.results:
        for r in result.tool_results:
            assert r["mode"] != "LIVE"
            assert all(x["mode"] != "LIVE" for x in r["executions"])
    # the simulated external world saw no effect at all
    assert (h.config.output_dir / "simulated_effects.jsonl").read_text(encoding="utf-8") == ""
    # the run says it was capped
    assert log.of(RunStarted)[0].mode_ceiling is DRY_RUN
    # rollback.json's LIVE failure never happens in a dry run: nothing to roll back
    assert summary["total_rollbacks"] == 0
    lines = read_jsonl(h.config.output_dir / "tool_execution_log.jsonl")
    assert all(r["mode"] != "LIVE" for line in lines for r in line["result"]["tool_results"])


def test_orchestration_summary_generation(make_harness):
    plans = [
        plan([act("a", tool="math_compute"), act("b", tool="form_fill", agent="agent_b")], plan_id="ok_plan"),
        plan(
            [act("x", tool="form_fill"), act("y", tool="math_compute", simulate={"fail_in": ["MOCK"]})],
            plan_id="bad_plan",
        ),
    ]
    h = make_harness(plans, run_id="summary_run")
    summary = h.execute_orchestration_pipeline()
    assert summary["pipeline_id"] == "summary_run"
    assert summary["start_time"] == "2024-01-15T14:30:22.000Z"
    assert summary["end_time"].endswith("Z") and summary["end_time"] >= summary["start_time"]
    assert summary["plans_processed"] == 2
    assert summary["plans_successful"] == 1
    assert summary["plans_failed"] == 1
    assert summary["plans_rejected"] == 0
    assert summary["total_tools_executed"] == 4
    assert summary["total_rollbacks"] == 1  # x (form_fill LIVE) undone
    assert summary["total_conflicts"] == 0
    assert summary["actions_by_final_state"] == {"ABORTED": 1, "COMPLETED": 3}
    assert summary["live_executions"] == 3
    assert summary["simulated"] is True
    assert [p["plan_id"] for p in summary["plans"]] == ["ok_plan", "bad_plan"]
    assert [p["status"] for p in summary["plans"]] == ["SUCCEEDED", "FAILED"]
    assert summary["plans"][1]["rollbacks"] == 1
    assert h.summary is summary


async def test_agents_run_concurrently(make_harness):
    actions = [
        act("left", agent="alpha", tool="math_compute", confidence=0.95, simulate={"latency_ms": 100}),
        act("right", agent="beta", tool="math_compute", confidence=0.95, simulate={"latency_ms": 100}),
    ]
    clock = ManualClock()
    h = make_harness([plan(actions)], clock=clock)
    order = []
    h.bus.subscribe(lambda e: order.append((e.action_id, e.mode.value)) if isinstance(e, ToolExecuted) else None)
    await h.run_pipeline()
    assert order == [
        ("left", "MOCK"),
        ("right", "MOCK"),
        ("left", "DRY_RUN"),
        ("right", "DRY_RUN"),
        ("left", "LIVE"),
        ("right", "LIVE"),
    ]
    # ManualClock: every sleep advances the shared virtual time (6 sleeps of 100 ms)
    assert clock.monotonic() == pytest.approx(0.6)


async def test_one_agent_runs_its_actions_in_order(make_harness):
    actions = [
        act("first", agent="alpha", confidence=0.3, simulate={"latency_ms": 50}),
        act("second", agent="alpha", confidence=0.3),
    ]
    h = make_harness([plan(actions)])
    log = record(h)
    await h.run_pipeline()
    assert [e.action_id for e in log.executed()] == ["first", "second"]


def test_dependency_failure_cancels_dependants(make_harness):
    actions = [
        act("root", agent="alpha", tool="form_fill", confidence=0.9, simulate={"fail_in": ["MOCK"]}),
        act("child", agent="beta", tool="math_compute", depends_on=["root"]),
        act("grandchild", agent="gamma", tool="math_compute", depends_on=["child"]),
    ]
    h = make_harness([plan(actions)], enable_rollback_on_failure=False)
    log = record(h)
    h.execute_orchestration_pipeline()
    results = results_by_id(h)
    assert results["root"]["final_state"] == "ABORTED"
    assert results["child"]["final_state"] == "ABORTED"
    assert "dependency root ended" in results["child"]["reason"]
    assert results["grandchild"]["final_state"] == "ABORTED"
    assert "dependency child ended ABORTED" in results["grandchild"]["reason"]
    assert [e.action_id for e in log.executed()] == ["root"]
    result = h.results[0]
    assert (result.failed_executions, result.cancelled_executions) == (1, 2)


def test_duplicate_irreversible_action_aborted(make_harness):
    actions = [
        act("w1", tool="database_write", confidence=0.95, args={"table": "t", "id": 7}),
        act("w2", tool="database_write", confidence=0.95, args={"id": 7, "table": "t"}),
        act("w3", tool="database_write", confidence=0.95, args={"table": "t", "id": 8}),
    ]
    h = make_harness([plan(actions)], gate=PolicyGate(approve_all=True))
    log = record(h)
    h.execute_orchestration_pipeline()
    results = results_by_id(h)
    assert results["w1"]["final_state"] == "COMPLETED"
    assert results["w2"]["final_state"] == "ABORTED"
    assert "conflict resolution" in results["w2"]["reason"]
    assert results["w3"]["final_state"] == "COMPLETED"
    assert not log.executed(action_id="w2")
    assert [e.action_id for e in log.executed(mode=LIVE)] == ["w1", "w3"]
    dup = log.of(ConflictDetected, conflict_type="DUPLICATE_ACTION")
    assert len(dup) == 1 and dup[0].action_ids == ["w1", "w2"]
    assert log.of(ConflictResolved, conflict_id=dup[0].conflict_id)[0].strategy == "ABORT"


def test_timeout_is_retried_once_for_reversible_tool(make_harness):
    actions = [act("slow", tool="text_extract", confidence=0.95, simulate={"timeout_in": ["DRY_RUN"]})]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()
    runs = [(e.mode, e.attempt, e.success) for e in log.executed()]
    assert runs == [(MOCK, 1, True), (DRY_RUN, 1, False), (DRY_RUN, 2, True), (LIVE, 1, True)]
    assert results_by_id(h)["slow"]["final_state"] == "COMPLETED"
    assert h.results[0].conflicts_detected == 1


def test_timeout_of_irreversible_tool_is_not_retried(make_harness):
    actions = [act("click", tool="button_click", confidence=0.95, simulate={"timeout_in": ["DRY_RUN"]})]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()
    assert [(e.mode, e.attempt) for e in log.executed()] == [(MOCK, 1), (DRY_RUN, 1)]
    assert results_by_id(h)["click"]["final_state"] == "ABORTED"
    resolved = log.of(ConflictResolved, conflict_type="TIMEOUT")
    assert [r.strategy for r in resolved] == ["ABORT"]


def test_rate_limit_is_a_real_wait(make_harness):
    """database_write allows one call at a time: one agent's climb ends before the next starts."""
    actions = [
        act(
            f"w{i}",
            agent=f"agent_{i}",
            tool="database_write",
            confidence=0.8,
            args={"id": i},
            simulate={"latency_ms": 100},
        )
        for i in range(3)
    ]
    h = make_harness([plan(actions)])
    log = record(h)
    h.execute_orchestration_pipeline()
    order = [(e.action_id, e.mode) for e in log.executed()]
    assert order == [(f"w{i}", mode) for i in range(3) for mode in (MOCK, DRY_RUN)]
    assert log.of(ConflictDetected, conflict_type="RATE_LIMIT")


def test_without_rate_limit_agents_interleave(make_harness):
    actions = [
        act(f"f{i}", agent=f"agent_{i}", tool="form_fill", confidence=0.7, simulate={"latency_ms": 100})
        for i in range(2)
    ]
    h = make_harness([plan(actions)])  # form_fill allows 2 at a time
    log = record(h)
    h.execute_orchestration_pipeline()
    order = [(e.action_id, e.mode) for e in log.executed()]
    assert order == [("f0", MOCK), ("f1", MOCK), ("f0", DRY_RUN), ("f1", DRY_RUN)]


def _deadlock_or_done(make_harness, actions):
    """Either the plan is refused up front, or it runs to the end (never hangs)."""
    from core.errors import PlanError
    from core.plans import parse_plans

    try:
        plans = parse_plans({"plan_id": "p", "actions": actions}, "inline.json", standard_registry())
    except PlanError as exc:
        assert "dependency cycle" in str(exc)
        return None
    h = make_harness(plans)

    async def go():
        await asyncio.wait_for(h.run_pipeline(), 1.0)

    asyncio.run(go())
    return h


def test_dependency_on_later_action_of_same_agent_does_not_hang(make_harness):
    actions = [act("A", agent="x", depends_on=["B"]), act("B", agent="x")]
    h = _deadlock_or_done(make_harness, actions)
    if h is not None:
        assert {r["action_id"] for r in h.results[0].tool_results} == {"A", "B"}


def test_crossing_dependencies_between_agents_do_not_hang(make_harness):
    actions = [
        act("A1", agent="x", depends_on=["B2"]),
        act("B1", agent="x"),
        act("A2", agent="y", depends_on=["B1"]),
        act("B2", agent="y"),
    ]
    h = _deadlock_or_done(make_harness, actions)
    if h is not None:
        assert len(h.results[0].tool_results) == 4


def test_forward_dependencies_across_agents_run(make_harness):
    actions = [
        act("A1", agent="x", args={"n": 1}),
        act("B1", agent="y", depends_on=["A1"], args={"n": 2}),
        act("A2", agent="x", depends_on=["B1"], args={"n": 3}),
    ]
    h = _deadlock_or_done(make_harness, actions)
    assert h is not None
    assert all(r["final_state"] == "COMPLETED" for r in h.results[0].tool_results)
