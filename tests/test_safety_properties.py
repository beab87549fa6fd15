"""Safety properties, checked with Hypothesis over random small plans (deterministic settings)."""

from __future__ import annotations

from typing import Any

from conftest import MODE_ORDER, EventLog, plan, record
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from core.approval import CallbackGate
from core.contracts import ExecutionMode, RiskLevel, standard_registry
from core.controller import evaluate_execution_mode, live_threshold
from core.events import ApprovalDecided, StateTransition, SystemLocked, ToolExecuted

REGISTRY = standard_registry()
TOOLS = REGISTRY.names
MOCK, DRY_RUN, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE
STATE_OF_MODE = {DRY_RUN: "DRY_RUN", LIVE: "LIVE"}

# The report's table, restated here so the property does not trust the code's copy.
TABLE = {RiskLevel.LOW: (0.5, 0.7), RiskLevel.MEDIUM: (0.65, 0.8), RiskLevel.HIGH: (0.8, 0.85)}

PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# plans lean towards confidences that escalate, and hit the thresholds exactly
plan_confidences = st.one_of(
    confidences,
    st.floats(min_value=0.85, max_value=1.0),
    st.sampled_from([0.5, 0.65, 0.7, 0.8, 0.85, 0.9, 1.0]),
)


# any registered tool, with extra weight on HIGH-risk tools that have no tool dependencies
plan_tools = st.one_of(
    st.sampled_from(TOOLS), st.sampled_from(["database_write", "file_operation", "ghl_update_contact"])
)


@st.composite
def random_plans(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-6 actions over 3 agents; tools from the registry; dependencies point backwards only."""
    n = draw(st.integers(min_value=1, max_value=6))
    actions = []
    for i in range(n):
        simulate: dict[str, Any] = {"latency_ms": draw(st.sampled_from([0, 0, 20, 50]))}
        fault = draw(st.sampled_from(["none", "none", "none", "fail", "timeout"]))
        if fault != "none":
            key = "fail_in" if fault == "fail" else "timeout_in"
            simulate[key] = [draw(st.sampled_from(["MOCK", "DRY_RUN", "LIVE"]))]
        action: dict[str, Any] = {
            "id": f"x{i}",
            "agent": draw(st.sampled_from(["a", "b", "c"])),
            "tool": draw(plan_tools),
            "confidence": draw(plan_confidences),
            "args": {"i": i} if draw(st.booleans()) else {},
            "simulate": simulate,
        }
        if i and draw(st.booleans()):
            action["depends_on"] = [f"x{draw(st.integers(min_value=0, max_value=i - 1))}"]
        actions.append(action)
    return actions


def _high(i: int, tool: str = "database_write", agent: str = "a", confidence: float = 0.9, **simulate: Any):
    return {
        "id": f"x{i}",
        "agent": agent,
        "tool": tool,
        "confidence": confidence,
        "args": {"i": i},
        "simulate": simulate,
    }


MIXED_PLAN = [
    _high(0),
    _high(1, "file_operation", "b", 0.86),
    _high(2, "math_compute", "c", 0.95, latency_ms=20),
    _high(3, "ghl_update_contact", "a", 0.85),
    _high(4, "form_fill", "b", 0.9, fail_in=["LIVE"]),
]


def cycling_callback(answers: list[bool]):
    calls = {"n": 0}

    def callback(tool: str, confidence: float) -> bool:
        answer = answers[calls["n"] % len(answers)]
        calls["n"] += 1
        return answer

    return callback


def run(make_harness, actions, answers, lock_at: int | None = None) -> tuple[EventLog, int | None]:
    h = make_harness([plan(actions)], gate=CallbackGate(cycling_callback(answers)), write_outputs=False)
    log = record(h)
    lock_seq: list[int] = []
    if lock_at is not None:

        def tripwire(event) -> None:
            if not lock_seq and len(log) >= lock_at:
                lock_seq.append(event.seq)
                h.lock("property tripwire")

        h.bus.subscribe(tripwire)
    h.execute_orchestration_pipeline()
    return log, (lock_seq[0] if lock_seq else None)


# (1) -------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(risk=st.sampled_from(list(RiskLevel)), confidence=confidences)
def test_mode_evaluation_matches_table(risk, confidence):
    dry, live = TABLE[risk]
    expected = LIVE if confidence >= live else DRY_RUN if confidence >= dry else MOCK
    assert evaluate_execution_mode(risk, confidence) is expected


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    risk=st.sampled_from(list(RiskLevel)),
    confidence=confidences,
    floor=st.one_of(st.none(), confidences),
)
def test_live_floor_only_raises_the_bar(risk, confidence, floor):
    mode = evaluate_execution_mode(risk, confidence, floor)
    assert mode.rank <= evaluate_execution_mode(risk, confidence).rank
    assert (mode is LIVE) == (confidence >= live_threshold(risk, floor))


# (2) -------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(actions=random_plans(), answers=st.lists(st.booleans(), min_size=1, max_size=6))
@example(actions=MIXED_PLAN, answers=[True])
@example(actions=MIXED_PLAN, answers=[True, False])
@example(actions=MIXED_PLAN, answers=[False, True, True])
def test_no_high_risk_live_without_prior_approval(make_harness, actions, answers):
    log, _ = run(make_harness, actions, answers)
    granted: dict[str, int] = {}
    for event in log.of(ApprovalDecided):
        if event.approved:
            granted.setdefault(event.action_id, event.seq)
    by_id = {a["id"]: a for a in actions}
    for event in log.executed(mode=LIVE):
        contract = REGISTRY.get(event.tool)
        assert event.confidence >= live_threshold(contract.risk_level)
        if contract.requires_approval:
            assert event.action_id in granted, f"{event.action_id} ran LIVE without an approval"
            assert granted[event.action_id] < event.seq
        assert by_id[event.action_id]["tool"] == event.tool
    # a denied approval never leads to LIVE
    high_live = [e for e in log.executed(mode=LIVE) if REGISTRY.get(e.tool).requires_approval]
    hypothesis_event(f"high-risk LIVE runs: {min(len(high_live), 2)}")
    denied = {e.action_id for e in log.of(ApprovalDecided) if not e.approved}
    assert not denied & {e.action_id for e in log.executed(mode=LIVE)}


# (3) -------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    actions=random_plans(),
    answers=st.lists(st.booleans(), min_size=1, max_size=6),
    lock_at=st.integers(min_value=1, max_value=40),
)
@example(actions=MIXED_PLAN, answers=[True], lock_at=3)
@example(actions=MIXED_PLAN, answers=[True], lock_at=12)
@example(actions=MIXED_PLAN, answers=[True], lock_at=20)
def test_lock_stops_escalation_of_later_actions(make_harness, actions, answers, lock_at):
    log, lock_seq = run(make_harness, actions, answers, lock_at=lock_at)
    if lock_seq is None:
        assert not log.of(SystemLocked)
        return
    assert len(log.of(SystemLocked)) == 1
    hypothesis_event("locked mid-run")
    started_before_lock = {
        e.action_id for e in log if isinstance(e, ToolExecuted | StateTransition) and e.seq <= lock_seq
    }
    for event in log.executed():
        if event.mode is MOCK:
            continue
        if event.seq > lock_seq:
            hypothesis_event("escalated run finishing after the lock")
        # an action that had not been seen before the lock never goes past MOCK
        assert event.action_id in started_before_lock, f"{event.action_id} escalated after the lock"
        # and an escalated run after the lock had entered that mode before the lock
        if event.seq > lock_seq:
            entered = [
                t.seq for t in log.of(StateTransition, action_id=event.action_id, to_state=STATE_OF_MODE[event.mode])
            ]
            assert entered and entered[0] <= lock_seq
    # nothing enters DRY_RUN or LIVE after the lock
    late = [t for t in log.of(StateTransition) if t.seq > lock_seq and t.to_state in ("DRY_RUN", "LIVE")]
    assert late == []


# (4) -------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(actions=random_plans(), answers=st.lists(st.booleans(), min_size=1, max_size=6))
@example(actions=MIXED_PLAN, answers=[True])
def test_modes_are_never_skipped(make_harness, actions, answers):
    log, _ = run(make_harness, actions, answers)
    modes: dict[str, list[ExecutionMode]] = {}
    for event in log.executed():
        if event.attempt == 1:
            modes.setdefault(event.action_id, []).append(event.mode)
    for action_id, seen in modes.items():
        assert seen == MODE_ORDER[: len(seen)], (action_id, seen)
    # the state machine agrees: no action ever enters LIVE without having been in DRY_RUN
    for action_id in modes:
        states = [t.to_state for t in log.of(StateTransition, action_id=action_id)]
        if "LIVE" in states:
            assert "DRY_RUN" in states[: states.index("LIVE")]
