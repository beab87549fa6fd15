"""Tests for the execution monitor: metrics, health score and tiers, anomalies, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.clock import ManualClock
from core.contracts import ExecutionMode
from core.events import (
    ApprovalDecided,
    ConflictDetected,
    EventBus,
    RollbackPerformed,
    ToolExecuted,
)
from core.monitor import Anomaly, AnomalyType, ExecutionMonitor, HealthStatus

MOCK, DRY, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE
START = datetime(2024, 1, 15, 14, 30, 22, tzinfo=UTC)


def run(
    monitor: ExecutionMonitor,
    successes: int,
    failures: int,
    confidence: float = 0.75,
    mode: ExecutionMode = MOCK,
    duration_ms: float = 100.0,
) -> None:
    for _ in range(successes):
        monitor.record_execution("form_fill", mode, True, duration_ms, confidence)
    for _ in range(failures):
        monitor.record_execution("form_fill", mode, False, duration_ms, confidence)


def kinds(monitor: ExecutionMonitor) -> list[AnomalyType]:
    return [a.anomaly_type for a in monitor.detect_anomalies()]


def test_monitor_initialization() -> None:
    monitor = ExecutionMonitor(ManualClock())
    assert monitor.history_limit == 1000
    assert len(monitor.METRIC_NAMES) == 8
    assert monitor.metrics() == {
        "tool_success_rate": 100.0,
        "execution_latency_ms": 0.0,
        "rollback_frequency": 0.0,
        "conflict_rate": 0.0,
        "live_execution_ratio": 0.0,
        "confidence_drift": 0.0,
        "approval_rate": 100.0,
        "system_health_score": 100.0,
    }
    assert monitor.health_status() is HealthStatus.EXCELLENT
    assert monitor.detect_anomalies() == []
    assert all(monitor.metric_history(name) == [] for name in monitor.METRIC_NAMES)
    with pytest.raises(ValueError):
        ExecutionMonitor(ManualClock(), history_limit=0)


def test_metric_tracking() -> None:
    monitor = ExecutionMonitor(ManualClock())
    monitor.record_execution("form_fill", MOCK, True, 100.0, 0.9)
    monitor.record_execution("form_fill", LIVE, False, 300.0, 0.9)
    monitor.record_execution("form_fill", LIVE, True, 200.0, 0.9, attempt=2)  # a retry
    monitor.record_execution("vision_inspect", DRY, True, 400.0, 0.9)
    monitor.record_conflicts(1)
    monitor.record_rollback(actions_undone=1)
    m = monitor.metrics()
    assert m["tool_success_rate"] == 75.0
    assert m["execution_latency_ms"] == 250.0
    assert m["rollback_frequency"] == 25.0
    assert m["conflict_rate"] == pytest.approx(33.33)  # 1 conflict over 3 distinct actions
    assert m["live_execution_ratio"] == 50.0
    assert m["confidence_drift"] == 0.15
    assert m["approval_rate"] == 100.0  # nothing approved has run yet


def test_metric_tracking_from_events() -> None:
    bus = EventBus(ManualClock(), "run")
    monitor = ExecutionMonitor(bus.clock)
    bus.subscribe(monitor.observe)
    base = {"plan_id": "p1", "agent": "a1", "confidence": 0.8, "duration_ms": 50.0}
    bus.emit(
        ApprovalDecided,
        request_id="r1",
        plan_id="p1",
        action_id="x1",
        tool="database_write",
        approved=True,
        decided_by="operator",
        reason="ok",
        action_hash="h1",
    )
    bus.emit(
        ApprovalDecided,
        request_id="r2",
        plan_id="p1",
        action_id="x2",
        tool="database_write",
        approved=False,
        decided_by="operator",
        reason="no",
        action_hash="h2",
    )
    bus.emit(ToolExecuted, **base, action_id="x1", tool="database_write", mode=LIVE, success=False)
    bus.emit(
        ToolExecuted,
        **base,
        action_id="x1",
        tool="database_write",
        mode=LIVE,
        success=True,
        attempt=2,
    )
    bus.emit(ToolExecuted, **base, action_id="x3", tool="form_fill", mode=LIVE, success=True)
    bus.emit(ToolExecuted, **base, action_id="x4", tool="form_fill", mode=MOCK, success=True)
    bus.emit(
        ConflictDetected,
        plan_id="p1",
        conflict_id="c1",
        conflict_type="resource_conflict",
        agents=["a1", "a2"],
        tool="form_fill",
        action_ids=["x3", "x4"],
        detail="d",
    )
    bus.emit(
        RollbackPerformed,
        plan_id="p1",
        trigger_action_id="x1",
        undone=["x3", "x4"],
        total_rollbacks=1,
    )
    assert (monitor.approvals_granted, monitor.approvals_denied) == (1, 1)
    assert (monitor.approved_live_executions, monitor.approved_live_successes) == (2, 1)
    m = monitor.metrics()
    assert m["approval_rate"] == 50.0
    assert m["tool_success_rate"] == 75.0
    assert m["live_execution_ratio"] == 75.0
    assert m["rollback_frequency"] == 50.0
    assert m["conflict_rate"] == pytest.approx(33.33)  # x1, x3, x4
    assert [ok for _, ok, _ in monitor.tool_history("database_write")] == [False, True]


def test_health_score_calculation() -> None:
    monitor = ExecutionMonitor(ManualClock())
    assert monitor.calculate_health_score() == 100.0
    # 8/10 succeed at confidence 0.9 -> drift 0.1; 1 undone -> 10%; 2 conflicts / 10 -> 20%;
    # approved LIVE outcomes 1 of 2 -> 50%.
    run(monitor, 8, 2, confidence=0.9)
    monitor.record_rollback(1)
    monitor.record_conflicts(2)
    monitor.record_live_outcome_after_approval(True)
    monitor.record_live_outcome_after_approval(False)
    # 0.8*0.30 + 0.9*0.15 + 0.8*0.15 + 0.9*0.10 + 0.5*0.30 = 0.735
    assert monitor.calculate_health_score() == 73.5
    assert monitor.metrics()["system_health_score"] == 73.5
    assert monitor.health_status() is HealthStatus.FAIR

    worst = ExecutionMonitor(ManualClock())
    run(worst, 0, 4, confidence=1.0)
    worst.record_rollback(10)  # more undone than executed is clamped to 100%
    worst.record_conflicts(10)
    worst.record_live_outcome_after_approval(False)
    assert worst.metrics()["rollback_frequency"] == 100.0
    assert worst.metrics()["conflict_rate"] == 100.0
    assert worst.calculate_health_score() == 0.0
    assert worst.health_status() is HealthStatus.POOR


def test_health_status_categorization() -> None:
    monitor = ExecutionMonitor(ManualClock())
    expected = {
        100.0: HealthStatus.EXCELLENT,
        90.0: HealthStatus.EXCELLENT,
        89.9: HealthStatus.GOOD,
        75.0: HealthStatus.GOOD,
        74.9: HealthStatus.FAIR,
        60.0: HealthStatus.FAIR,
        59.9: HealthStatus.POOR,
        0.0: HealthStatus.POOR,
    }
    for score, status in expected.items():
        assert monitor.health_status(score) is status, score


def test_anomaly_detection() -> None:
    clock = ManualClock()
    monitor = ExecutionMonitor(clock)
    # Exactly at every threshold: success 50%, drift 0.4, rollback 30%, conflicts 50%.
    run(monitor, 5, 5, confidence=0.9)
    monitor.record_rollback(3)
    monitor.record_conflicts(5)
    assert monitor.detect_anomalies() == []

    monitor.record_execution("form_fill", MOCK, False, 100.0, 0.9, attempt=2)  # 5/11 succeed
    monitor.record_rollback(1)  # 4/11 undone
    monitor.record_conflicts(1)  # 6 conflicts over 10 actions
    clock.advance(3)
    anomalies = {a.anomaly_type: a for a in monitor.detect_anomalies()}
    assert list(anomalies) == [
        AnomalyType.UNSAFE_ESCALATION,
        AnomalyType.REPEATED_FAILURES,
        AnomalyType.HIGH_ROLLBACK,
        AnomalyType.HIGH_CONFLICT,
    ]
    assert {k.value: a.severity for k, a in anomalies.items()} == {
        "unsafe_escalation": 7,
        "repeated_failures": 8,
        "high_rollback": 6,
        "high_conflict": 8,
    }
    failures = anomalies[AnomalyType.REPEATED_FAILURES]
    assert (failures.metric, failures.value, failures.threshold) == (
        "tool_success_rate",
        45.4545,
        50.0,
    )
    rollback = anomalies[AnomalyType.HIGH_ROLLBACK]
    assert (rollback.value, rollback.threshold) == (36.3636, 30.0)
    conflict = anomalies[AnomalyType.HIGH_CONFLICT]
    assert (conflict.value, conflict.threshold) == (60.0, 50.0)
    assert conflict.detail == "conflict_rate 60% is above 50%"
    assert conflict.timestamp == START + timedelta(seconds=3)
    assert conflict.to_dict()["timestamp"] == "2024-01-15T14:30:25.000Z"


def test_no_anomalies_before_any_execution() -> None:
    monitor = ExecutionMonitor(ManualClock())
    monitor.record_conflicts(5)
    monitor.record_rollback(5)
    assert monitor.detect_anomalies() == []


def test_confidence_drift_detection() -> None:
    monitor = ExecutionMonitor(ManualClock())
    run(monitor, 3, 1, confidence=0.75)  # 0.75 vs 75%: calibrated
    assert monitor.metrics()["confidence_drift"] == 0.0
    assert kinds(monitor) == []
    run(monitor, 0, 6, confidence=0.75)  # 0.75 vs 30%: drift 0.45
    assert monitor.metrics()["confidence_drift"] == 0.45
    assert AnomalyType.UNSAFE_ESCALATION in kinds(monitor)
    [drift] = [a for a in monitor.detect_anomalies() if a.metric == "confidence_drift"]
    assert (drift.severity, drift.value, drift.threshold) == (7, 0.45, 0.4)
    # Underconfidence drifts too: 0.25 confidence on 100% success.
    under = ExecutionMonitor(ManualClock())
    run(under, 4, 0, confidence=0.25)
    assert under.metrics()["confidence_drift"] == 0.75
    assert kinds(under) == [AnomalyType.UNSAFE_ESCALATION]


def test_metrics_summary() -> None:
    clock = ManualClock()
    monitor = ExecutionMonitor(clock)
    empty = monitor.metrics_summary()
    assert empty["tool_success_rate"] == {
        "current": 100.0,
        "min": 100.0,
        "max": 100.0,
        "mean": 100.0,
    }
    monitor.snapshot()  # success 100
    run(monitor, 1, 1)
    monitor.snapshot()  # success 50
    run(monitor, 2, 0)
    summary = monitor.metrics_summary()  # current 75, not yet tracked
    assert set(summary) == set(monitor.METRIC_NAMES)
    assert summary["tool_success_rate"] == {
        "current": 75.0,
        "min": 50.0,
        "max": 100.0,
        "mean": 75.0,
    }
    assert summary["execution_latency_ms"] == {
        "current": 100.0,
        "min": 0.0,
        "max": 100.0,
        "mean": 50.0,
    }


def test_metric_history_tracking() -> None:
    clock = ManualClock()
    monitor = ExecutionMonitor(clock, history_limit=3)
    for i in range(5):
        monitor.track_metric("execution_latency_ms", float(i))
        clock.advance(1)
    history = monitor.metric_history("execution_latency_ms")
    assert history == [
        (START + timedelta(seconds=2), 2.0),
        (START + timedelta(seconds=3), 3.0),
        (START + timedelta(seconds=4), 4.0),
    ]
    with pytest.raises(ValueError):
        monitor.track_metric("no_such_metric", 1.0)
    with pytest.raises(ValueError):
        monitor.metric_history("no_such_metric")

    for i in range(5):
        monitor.record_execution("form_fill", MOCK, i % 2 == 0, 10.0 * i, 0.8)
    assert monitor.tool_history("form_fill") == [
        (START + timedelta(seconds=5), True, 20.0),
        (START + timedelta(seconds=5), False, 30.0),
        (START + timedelta(seconds=5), True, 40.0),
    ]
    assert monitor.tool_history("unknown") == []


def test_snapshot_matches_system_health_schema() -> None:
    clock = ManualClock()
    monitor = ExecutionMonitor(clock)
    run(monitor, 19, 1, confidence=0.95, duration_ms=245.0)
    monitor.record_execution("database_write", LIVE, True, 245.0, 0.95)
    clock.advance(3)
    snap = monitor.snapshot()
    assert list(snap) == ["health_assessment", "health_score", "anomalies", "metrics", "timestamp"]
    assert snap["timestamp"] == "2024-01-15T14:30:25.000Z"
    assert snap["anomalies"] == []
    metrics = snap["metrics"]
    assert isinstance(metrics, dict)
    assert list(metrics) == list(monitor.METRIC_NAMES)
    assert metrics["tool_success_rate"] == 95.24
    assert metrics["live_execution_ratio"] == 4.76
    assert snap["health_score"] == metrics["system_health_score"] == 98.5
    assert snap["health_assessment"] == "EXCELLENT"  # 0.9524*0.3 + 0.3 + 0.9976*0.1 + 0.3
    for name in monitor.METRIC_NAMES:
        [(ts, value)] = monitor.metric_history(name)
        assert ts == START + timedelta(seconds=3)
        assert value == metrics[name]


def test_snapshot_lists_anomaly_dicts() -> None:
    monitor = ExecutionMonitor(ManualClock())
    run(monitor, 1, 3, confidence=0.5)
    snap = monitor.snapshot()
    assert snap["anomalies"] == [
        {
            "anomaly_type": "repeated_failures",
            "severity": 8,
            "metric": "tool_success_rate",
            "value": 25.0,
            "threshold": 50.0,
            "detail": "tool_success_rate 25% is below 50%",
            "timestamp": "2024-01-15T14:30:22.000Z",
        }
    ]
    assert isinstance(Anomaly.model_validate(monitor.detect_anomalies()[0]), Anomaly)
