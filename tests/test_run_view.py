"""`RunView.apply`: what the operator sees, as plain data, built from events (no screen)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from console.run_view import MAX_CONFLICT_ROWS, MAX_LINES_PER_TICK, RunView
from core.contracts import ExecutionMode, RiskLevel
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    ConflictDetected,
    ConflictResolved,
    Event,
    HealthUpdated,
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    SignalEmitted,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
    UnknownOutcomes,
)
from tests.console_fixtures import FIXED_START

HOSTILE = "\x1b[31mred [bold]x[/bold] [/x] \u202eevil \x9b2J\x00\x7f"
RAW = ("\x1b", "\u202e", "\x9b", "\x00", "\x7f")


class Events:
    """Builds events with increasing sequence numbers and timestamps."""

    def __init__(self) -> None:
        self.seq = itertools.count(1)

    def __call__(self, cls: type[Event], **fields: Any) -> Any:
        seq = next(self.seq)
        return cls(seq=seq, ts=FIXED_START + timedelta(milliseconds=seq), run_id="view_run", **fields)

    def transition(self, action_id: str = "a1", agent: str = "agent", reason: str = "why", **kw: Any) -> Any:
        fields = {"from_state": "MOCK", "to_state": "DRY_RUN", **kw}
        return self(
            StateTransition,
            plan_id="p1",
            action_id=action_id,
            agent=agent,
            tool="math_compute",
            reason=reason,
            **fields,
        )

    def tool(self, action_id: str = "a1", agent: str = "agent", **kw: Any) -> Any:
        fields = {"mode": ExecutionMode.MOCK, "success": True, "duration_ms": 1.0, "confidence": 0.9, **kw}
        return self(ToolExecuted, plan_id="p1", action_id=action_id, agent=agent, tool="math_compute", **fields)

    def conflict(self, conflict_id: str, agents: list[str] | None = None, resource: str | None = "db:x") -> Any:
        return self(
            ConflictDetected,
            plan_id="p1",
            conflict_id=conflict_id,
            conflict_type="RESOURCE_CONTENTION",
            agents=agents or ["a", "b"],
            tool="database_write",
            resource=resource,
            action_ids=["x", "y"],
            detail="two writers",
        )

    def resolved(self, conflict_id: str, outcome: str = "serialised") -> Any:
        return self(
            ConflictResolved,
            plan_id="p1",
            conflict_id=conflict_id,
            conflict_type="RESOURCE_CONTENTION",
            strategy="SERIALIZE",
            outcome=outcome,
        )

    def requested(self, request_id: str, agent: str = "agent") -> Any:
        return self(
            ApprovalRequested,
            request_id=request_id,
            plan_id="p1",
            action_id=f"act_{request_id}",
            agent=agent,
            tool="database_write",
            risk_level=RiskLevel.HIGH,
            reversible=False,
            confidence=0.9,
            threshold=0.85,
            args={},
            action_hash="0" * 64,
            timeout_s=120.0,
            expires_at=FIXED_START + timedelta(seconds=120),
        )

    def decided(self, request_id: str, approved: bool = False, by: str = "operator", reason: str = "no") -> Any:
        return self(
            ApprovalDecided,
            request_id=request_id,
            plan_id="p1",
            action_id=f"act_{request_id}",
            tool="database_write",
            approved=approved,
            decided_by=by,
            reason=reason,
            action_hash="0" * 64,
        )


@pytest.fixture
def ev() -> Events:
    return Events()


def assert_inert(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"raw {raw!r} in {text!r}"


# -- counters and run state ----------------------------------------------------------------


def test_counters_and_run_state(ev: Events) -> None:
    view = RunView()
    assert view.state_label == "idle"
    changes = view.apply(
        [
            ev(RunStarted, plans_total=2, actions_total=5, mode_ceiling=ExecutionMode.DRY_RUN, simulated=True),
            ev(PlanStarted, plan_id="p1", plan_index=0, actions_total=3, agents=["a"]),
            ev.transition("a1"),
            ev.tool("a1"),
            ev.tool("a2", success=False, error="boom"),
            ev.transition("a2", to_state="ROLLBACK"),
        ]
    )
    assert changes.header
    assert (view.run_id, view.plans_total, view.actions_total, view.mode_ceiling) == ("view_run", 2, 5, "DRY_RUN")
    assert (view.transitions, view.executions, view.events) == (2, 2, 6)
    assert view.current_plan == "p1"
    assert view.state_label == "running"
    assert len(changes.transitions) == 2 and len(changes.tools) == 2
    assert "FAILED" in changes.tools[1] and "boom" in changes.tools[1]

    changes = view.apply(
        [
            ev(
                PlanFinished,
                plan_id="p1",
                plan_index=0,
                status="FAILED",
                successful=1,
                failed=1,
                held=0,
                cancelled=1,
                conflicts_detected=0,
                conflicts_resolved=0,
                rollbacks=0,
            ),
            ev(RunPaused, by="operator"),
        ]
    )
    assert (view.plans_done, view.plans_failed) == (1, 1)
    assert view.paused and view.state_label == "paused"
    assert changes.header and not changes.transitions and not changes.tools

    view.apply([ev(RunResumed, by="operator")])
    assert not view.paused and view.state_label == "running"
    view.stopping = True
    assert view.state_label == "stopping"
    view.apply([ev(RunFinished, plans_processed=1, plans_successful=0, plans_failed=1, interrupted=True)])
    assert view.finished and view.state_label == "interrupted"
    assert view.events == 10


def test_finished_run_is_finished_not_interrupted(ev: Events) -> None:
    view = RunView()
    view.apply(
        [
            ev(RunStarted, plans_total=1, actions_total=1, mode_ceiling=ExecutionMode.LIVE, simulated=True),
            ev(RunFinished, plans_processed=1, plans_successful=1, plans_failed=0),
        ]
    )
    assert view.state_label == "finished"


def test_an_empty_batch_changes_nothing() -> None:
    view = RunView()
    changes = view.apply([])
    assert changes == type(changes)()
    assert view.events == 0


# -- bounded output ----------------------------------------------------------------------------


def test_lines_per_tick_are_bounded_and_drops_counted(ev: Events) -> None:
    view = RunView()
    extra = 57
    batch = [ev.transition(f"a{i}", reason=f"r{i}") for i in range(MAX_LINES_PER_TICK + extra)]
    batch += [ev.tool(f"a{i}") for i in range(MAX_LINES_PER_TICK + 3)]
    changes = view.apply(batch)
    assert len(changes.transitions) == MAX_LINES_PER_TICK
    assert len(changes.tools) == MAX_LINES_PER_TICK
    assert changes.dropped_lines == extra + 3
    # The newest lines are kept; the counters still count everything.
    assert changes.transitions[-1].endswith(f"r{MAX_LINES_PER_TICK + extra - 1}")
    assert changes.transitions[0].endswith(f"r{extra}")
    assert view.transitions == MAX_LINES_PER_TICK + extra
    assert view.executions == MAX_LINES_PER_TICK + 3

    changes = view.apply([ev.transition("b")])
    assert changes.dropped_lines == 0 and len(changes.transitions) == 1


def test_conflict_rows_are_bounded_oldest_dropped(ev: Events) -> None:
    view = RunView()
    total = MAX_CONFLICT_ROWS + 25
    changes = view.apply([ev.conflict(f"C{i:04d}") for i in range(total)])
    assert len(view.conflicts) == MAX_CONFLICT_ROWS
    assert view.conflicts_total == total
    assert next(iter(view.conflicts)) == "C0025"
    assert list(view.conflicts)[-1] == f"C{total - 1:04d}"
    assert "C0000" not in view.conflicts
    assert "C0025" in changes.conflicts

    # Resolving a row still shown updates it; resolving a dropped one is ignored.
    changes = view.apply([ev.resolved("C0030", "serialised behind C0029"), ev.resolved("C0001")])
    assert list(changes.conflicts) == ["C0030"]
    row = view.conflicts["C0030"]
    assert (row.strategy, row.outcome) == ("SERIALIZE", "serialised behind C0029")
    assert len(view.conflicts) == MAX_CONFLICT_ROWS


def test_new_conflict_row_is_pending_until_resolved(ev: Events) -> None:
    view = RunView()
    view.apply([ev.conflict("C1", resource=None)])
    row = view.conflicts["C1"]
    assert (row.strategy, row.outcome) == ("…", "pending")
    assert row.target == "database_write"
    assert row.agents == "a, b"


def test_health_updates(ev: Events) -> None:
    view = RunView()
    anomalies = [{"anomaly_type": "HIGH_FAILURE_RATE", "severity": 8, "detail": "many failures"}]
    for i in range(130):
        changes = view.apply(
            [
                ev(
                    HealthUpdated,
                    health_score=100.0 - i * 0.5,
                    health_assessment="POOR",
                    metrics={"failure_rate": 0.5},
                    anomalies=anomalies,
                )
            ]
        )
    assert changes.health
    assert view.health_score == pytest.approx(100.0 - 129 * 0.5)
    assert view.health_tier == "POOR"
    assert len(view.health_history) == 120
    assert view.health_history[-1] == pytest.approx(view.health_score)
    assert view.anomalies == anomalies and view.metrics == {"failure_rate": 0.5}


# -- approvals -------------------------------------------------------------------------------


def test_pending_approvals_keep_arrival_order(ev: Events) -> None:
    view = RunView()
    changes = view.apply([ev.requested("R3"), ev.requested("R1"), ev.requested("R2")])
    assert changes.approvals
    assert list(view.pending) == ["R3", "R1", "R2"]

    changes = view.apply([ev.decided("R1"), ev.requested("R4")])
    assert list(view.pending) == ["R3", "R2", "R4"]
    assert changes.decided == ["R1"]
    assert view.decisions[-1].request_id == "R1" and not view.decisions[-1].approved

    changes = view.apply([ev.decided("R3", approved=True), ev.decided("R2", by="lock"), ev.decided("R4", by="timeout")])
    assert changes.decided == ["R3", "R2", "R4"]
    assert not view.pending
    assert [d.decided_by for d in view.decisions] == ["operator", "operator", "lock", "timeout"]


def test_decision_for_unknown_request_is_harmless(ev: Events) -> None:
    view = RunView()
    view.apply([ev.requested("R1")])
    changes = view.apply([ev.decided("R9")])
    assert list(view.pending) == ["R1"]
    assert changes.decided == ["R9"]


def test_decision_history_is_bounded(ev: Events) -> None:
    view = RunView()
    view.apply([e for i in range(150) for e in (ev.requested(f"R{i}"), ev.decided(f"R{i}"))])
    assert len(view.decisions) == 100
    assert view.decisions[0].request_id == "R50"
    assert not view.pending


# -- lock ----------------------------------------------------------------------------------------


def test_lock_and_unlock(ev: Events) -> None:
    view = RunView()
    changes = view.apply([ev(SystemLocked, reason="lock key pressed", by="operator")])
    assert changes.header
    assert view.locked and view.lock_reason == "lock key pressed"

    changes = view.apply([ev(SystemUnlocked, reason="confirmed", by="operator")])
    assert changes.header
    assert not view.locked and view.lock_reason == ""

    # Lock, unlock and lock again in one tick: the last word wins.
    view.apply(
        [
            ev(SystemLocked, reason="first", by="operator"),
            ev(SystemUnlocked, reason="ok", by="operator"),
            ev(SystemLocked, reason="storage failure", by="system"),
        ]
    )
    assert view.locked and view.lock_reason == "storage failure"


# -- untrusted text --------------------------------------------------------------------------------


def test_hostile_agent_names_are_made_inert_everywhere(ev: Events) -> None:
    view = RunView()
    changes = view.apply(
        [
            ev(PlanStarted, plan_id=HOSTILE, plan_index=0, actions_total=1, agents=[HOSTILE]),
            ev.transition(agent=HOSTILE, reason=HOSTILE),
            ev.tool(agent=HOSTILE, success=False, error=HOSTILE),
            ev.conflict("C1", agents=[HOSTILE, "b"], resource=HOSTILE),
            ev.resolved("C1", outcome=HOSTILE),
            ev(
                SignalEmitted,
                signal_type="TOOL_RELIABILITY",
                tool_name=HOSTILE,
                insight=HOSTILE,
                recommended_action=HOSTILE,
                confidence=0.5,
                target_phase=21,
            ),
            ev(SystemLocked, reason=HOSTILE, by=HOSTILE),
            ev(UnknownOutcomes, intents=[{"tool": HOSTILE, "plan_id": "p1", "action_id": "a1", "agent": HOSTILE}]),
        ]
    )
    row = view.conflicts["C1"]
    shown = [
        *changes.transitions,
        *changes.tools,
        *changes.signals,
        row.agents,
        row.target,
        row.outcome,
        view.lock_reason,
        view.current_plan,
        *view.unknown_outcomes,
    ]
    assert all(shown)
    for text in shown:
        assert_inert(text)
    # Escaped, never deleted: the operator sees that something odd was there.
    assert "\\x1b[31mred" in changes.transitions[0]
    assert "\\x1b" in row.agents and "\\u202e" in row.outcome
    assert "\\x9b2J\\x00\\x7f" in view.lock_reason
    # Markup is kept as literal text (the panes render it with rich.text.Text, never as markup).
    assert "[bold]x[/bold] [/x]" in view.lock_reason


def test_very_long_fields_are_truncated(ev: Events) -> None:
    view = RunView()
    changes = view.apply([ev.transition(agent="A" * 5000, reason="R" * 5000)])
    line = changes.transitions[0]
    assert len(line) < 500
    assert "AAAAAAAAAA… math_compute" in line  # a long agent shrinks to its column (11 cells)
    assert "(+4700 chars)" in line  # the reason keeps 300


def test_long_names_shrink_and_the_state_column_stays_put(ev: Events) -> None:
    view = RunView()
    short = view.apply([ev.transition(agent="a")]).transitions[0]
    long = view.apply([ev.transition(agent="agent_" * 10)]).transitions[0]
    assert short.index("MOCK->DRY_RUN") == long.index("MOCK->DRY_RUN") == 46
    assert long.index("MOCK->DRY_RUN") + len("MOCK->DRY_RUN") < 80  # on screen in an 80-column pane
