"""Tests for the feedback loop: metrics, the four analyses, deduplication and export."""

from __future__ import annotations

import pytest

from core.clock import ManualClock
from core.contracts import ExecutionMode
from core.events import ConflictDetected, ConflictResolved, EventBus, ToolExecuted
from core.feedback import FeedbackLoop, LearningSignal, SignalType

MOCK, DRY, LIVE = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE


def record(
    loop: FeedbackLoop,
    tool: str,
    successes: int,
    failures: int,
    mode: ExecutionMode = MOCK,
    duration_ms: float = 100.0,
    confidence: float = 0.8,
) -> None:
    for _ in range(successes):
        loop.record_outcome(tool, mode, True, duration_ms, confidence)
    for _ in range(failures):
        loop.record_outcome(tool, mode, False, duration_ms, confidence)


def of_type(signals: list[LearningSignal], kind: SignalType) -> list[LearningSignal]:
    return [s for s in signals if s.signal_type is kind]


def test_feedback_loop_initialization() -> None:
    loop = FeedbackLoop()
    assert loop.min_executions == 5
    assert loop.all_tool_metrics() == {}
    assert loop.generate_signals() == []
    assert loop.export_signals() == []
    assert FeedbackLoop(min_executions=10).min_executions == 10
    assert all(b["samples"] == 0 for b in loop.calibration().values())
    assert list(loop.calibration()) == ["0.00-0.50", "0.50-0.70", "0.70-0.85", "0.85-1.00"]
    with pytest.raises(ValueError):
        FeedbackLoop(min_executions=0)


def test_outcome_recording() -> None:
    loop = FeedbackLoop()
    loop.record_outcome("form_fill", MOCK, True, 100.0, 0.9)
    loop.record_outcome("form_fill", MOCK, False, 200.0, 0.9)
    loop.record_outcome("form_fill", LIVE, True, 300.0, 0.9)
    m = loop.tool_metrics("form_fill")
    assert m["total_executions"] == 3
    assert m["successful"] == 2
    assert m["failed"] == 1
    assert m["success_rate"] == pytest.approx(2 / 3)
    assert m["avg_execution_time"] == pytest.approx(200.0)
    assert m["by_mode"] == {
        "MOCK": {"executions": 2, "successful": 1, "success_rate": 0.5},
        "DRY_RUN": {"executions": 0, "successful": 0, "success_rate": 0.0},
        "LIVE": {"executions": 1, "successful": 1, "success_rate": 1.0},
    }
    assert list(loop.all_tool_metrics()) == ["form_fill"]
    assert loop.tool_metrics("unknown")["total_executions"] == 0
    with pytest.raises(ValueError):
        loop.record_outcome("form_fill", MOCK, True, -1.0, 0.5)


def test_outcome_recording_from_events() -> None:
    bus = EventBus(ManualClock(), "run")
    loop = FeedbackLoop()
    bus.subscribe(loop.observe)
    common = {"plan_id": "p1", "agent": "a1", "confidence": 0.9}
    bus.emit(
        ToolExecuted,
        action_id="x1",
        tool="vision_inspect",
        mode=MOCK,
        success=True,
        duration_ms=10.0,
        **common,
    )
    bus.emit(
        ToolExecuted,
        action_id="x2",
        tool="vision_inspect",
        mode=DRY,
        success=False,
        duration_ms=30.0,
        **common,
    )
    m = loop.tool_metrics("vision_inspect")
    assert (m["total_executions"], m["successful"], m["avg_execution_time"]) == (2, 1, 20.0)
    assert loop.calibration()["0.85-1.00"]["samples"] == 2


def test_tool_reliability_analysis() -> None:
    loop = FeedbackLoop()
    record(loop, "vision_inspect", 19, 1)  # 95% over 20
    record(loop, "button_click", 6, 4)  # 60% over 10
    record(loop, "form_fill", 4, 0)  # 100% but below min_executions
    signals = loop.analyze_tool_reliability()
    assert [s.tool_name for s in signals] == ["button_click", "vision_inspect"]
    low, high = signals
    assert high.insight == "Tool achieved 95% success rate over 20 executions"
    assert high.signal_type is SignalType.TOOL_RELIABILITY
    assert high.target_phase == 16
    assert high.confidence == 0.8  # 20 / (20 + 5)
    assert low.insight == "Tool achieved 60% success rate over 10 executions"
    assert low.recommended_action != high.recommended_action
    assert low.confidence == 0.67


def test_tool_reliability_thresholds_are_strict() -> None:
    loop = FeedbackLoop()
    record(loop, "at_ninety", 18, 2)  # exactly 90%
    record(loop, "at_seventy", 7, 3)  # exactly 70%
    assert loop.analyze_tool_reliability() == []
    record(loop, "just_above", 181, 19)  # 90.5%
    [signal] = loop.analyze_tool_reliability()
    assert signal.insight == "Tool achieved 90.5% success rate over 200 executions"


def test_execution_mode_analysis() -> None:
    loop = FeedbackLoop()
    record(loop, "form_fill", 10, 0, mode=MOCK, duration_ms=10.0)
    record(loop, "form_fill", 10, 0, mode=DRY, duration_ms=50.0)
    record(loop, "form_fill", 8, 2, mode=LIVE, duration_ms=250.0)
    record(loop, "form_fill", 1, 0, mode=MOCK, duration_ms=10.0)  # MOCK: 11 runs
    record(loop, "single_mode", 10, 0)
    signals = loop.analyze_execution_modes()
    [best] = of_type(signals, SignalType.EXECUTION_MODE_ANALYSIS)
    assert best.tool_name == "form_fill"
    assert best.target_phase == 19
    # MOCK and DRY_RUN tie on success; MOCK wins on latency.
    assert best.insight.startswith("MOCK performed best: 100% success over 11 executions")
    assert best.recommended_action == "Prefer MOCK when scheduling form_fill"
    [perf] = of_type(signals, SignalType.TOOL_PERFORMANCE)
    assert perf.insight == "LIVE averages 250.0 ms vs 10.0 ms in MOCK (25.0x slower)"
    assert perf.target_phase == 19


def test_execution_mode_analysis_needs_evidence_in_two_modes() -> None:
    loop = FeedbackLoop()
    record(loop, "form_fill", 10, 0, mode=MOCK)
    record(loop, "form_fill", 4, 0, mode=LIVE)  # fewer than min_executions
    assert loop.analyze_execution_modes() == []
    record(loop, "form_fill", 0, 1, mode=LIVE, duration_ms=100.0)  # same latency as MOCK
    [best] = loop.analyze_execution_modes()  # no TOOL_PERFORMANCE: latencies are equal
    assert best.signal_type is SignalType.EXECUTION_MODE_ANALYSIS
    assert best.insight.startswith("MOCK performed best")


def test_conflict_pattern_detection() -> None:
    loop = FeedbackLoop()
    loop.record_conflict("resource_conflict", "form_fill", "DELAY")
    loop.record_conflict("resource_conflict", "form_fill", "DELAY")
    loop.record_conflict("duplicate_action", "database_write", "ABORT")
    loop.record_conflict("duplicate_action", "database_write", "ABORT")
    assert loop.detect_conflict_patterns() == []
    loop.record_conflict("resource_conflict", "form_fill", None)
    [signal] = loop.detect_conflict_patterns()
    assert signal.signal_type is SignalType.CONFLICT_PATTERN
    assert signal.tool_name == "form_fill"
    assert signal.target_phase == 19
    assert signal.insight == ("resource_conflict on form_fill occurred 3 times (resolved by: DELAY 2, unresolved 1)")
    assert signal.confidence == 0.5


def test_conflict_pattern_from_events_counts_each_conflict_once() -> None:
    bus = EventBus(ManualClock(), "run")
    loop = FeedbackLoop()
    bus.subscribe(loop.observe)
    for i in range(3):
        detected = {"plan_id": "p1", "conflict_id": f"c{i}", "conflict_type": "resource_conflict"}
        bus.emit(
            ConflictDetected,
            **detected,
            agents=["a1", "a2"],
            tool="form_fill",
            action_ids=["x1", "x2"],
            detail="same field",
        )
        bus.emit(ConflictResolved, **detected, strategy="DELAY", outcome="serialized")
        bus.emit(ConflictResolved, **detected, strategy="DELAY", outcome="serialized")
    [signal] = loop.detect_conflict_patterns()
    assert signal.insight == ("resource_conflict on form_fill occurred 3 times (resolved by: DELAY 3)")


def test_confidence_calibration_analysis() -> None:
    loop = FeedbackLoop()
    # Overconfident band: predicted 0.9, actual 50% over 10 runs, mostly one tool.
    record(loop, "database_write", 4, 4, confidence=0.9)
    record(loop, "form_fill", 1, 1, confidence=0.9)
    # Well calibrated band: 0.6 vs 60%.
    record(loop, "vision_inspect", 6, 4, confidence=0.6)
    # Band with too few samples is ignored whatever its gap.
    record(loop, "math_compute", 0, 4, confidence=0.75)
    cal = loop.calibration()
    assert cal["0.85-1.00"] == {
        "samples": 10,
        "mean_confidence": pytest.approx(0.9),
        "success_rate": 0.5,
    }
    assert cal["0.50-0.70"]["success_rate"] == 0.6
    [signal] = loop.analyze_confidence_calibration()
    assert signal.signal_type is SignalType.APPROVAL_MISMATCH
    assert signal.target_phase == 16
    assert signal.tool_name == "database_write"
    assert signal.insight == "Confidence 0.85-1.00: predicted 90% success, actual 50% over 10 executions"
    # Phase 22 validations: a gap of exactly 0.2 is tolerated, 0.5 is not.
    loop.record_validation("plan_a", 0.8, 0.6)
    loop.record_validation("plan_b", 0.9, 0.4)
    signals = loop.analyze_confidence_calibration()
    assert len(signals) == 2
    assert signals[1].tool_name == "*"
    assert signals[1].insight == (
        "Plan plan_b: Phase 22 predicted 90% success, actual 40% (1 of 2 validated plans diverged)"
    )
    assert signals[1].confidence == 0.5


def test_calibration_bucket_edges_and_mixed_tools() -> None:
    loop = FeedbackLoop()
    record(loop, "a_tool", 0, 3, confidence=0.5)
    record(loop, "b_tool", 0, 3, confidence=0.5)
    record(loop, "c_tool", 1, 0, confidence=1.0)
    cal = loop.calibration()
    assert cal["0.50-0.70"]["samples"] == 6
    assert cal["0.85-1.00"]["samples"] == 1
    [signal] = loop.analyze_confidence_calibration()
    assert signal.tool_name == "*"  # no tool has a majority of the band


def test_signal_export() -> None:
    loop = FeedbackLoop()
    record(loop, "vision_inspect", 19, 1)
    first = loop.generate_signals()
    assert [(s.signal_type, s.tool_name) for s in first] == [(SignalType.TOOL_RELIABILITY, "vision_inspect")]
    assert loop.generate_signals() == []  # nothing new
    record(loop, "vision_inspect", 1, 0)  # 21 runs: evidence has not doubled yet
    assert loop.generate_signals() == []
    record(loop, "vision_inspect", 19, 0)  # 40 runs: doubled
    [again] = loop.generate_signals()
    assert again.insight == "Tool achieved 97.5% success rate over 40 executions"
    record(loop, "vision_inspect", 0, 30)  # 70 runs at 55.7%: verdict flips, news at once
    [flip] = of_type(loop.generate_signals(), SignalType.TOOL_RELIABILITY)
    assert flip.insight == "Tool achieved 55.7% success rate over 70 executions"
    # The failures also made the 0.70-0.85 confidence band overconfident (0.8 vs 55.7%).
    assert loop.generate_signals() == []
    exported = loop.export_signals()
    assert [e["signal_type"] for e in exported] == [
        "TOOL_RELIABILITY",
        "TOOL_RELIABILITY",
        "TOOL_RELIABILITY",
        "APPROVAL_MISMATCH",
    ]
    assert all(len(e) == 6 for e in exported)
    assert exported[0] == {
        "signal_type": "TOOL_RELIABILITY",
        "tool_name": "vision_inspect",
        "insight": "Tool achieved 95% success rate over 20 executions",
        "recommended_action": first[0].recommended_action,
        "confidence": 0.8,
        "target_phase": 16,
    }


def test_signal_volume_stays_logarithmic() -> None:
    loop = FeedbackLoop()
    total = 0
    for plan in range(2000):
        record(
            loop,
            "vision_inspect",
            9,
            1,
            mode=MOCK if plan % 2 else DRY,
            duration_ms=10.0 if plan % 2 else 20.0,
            confidence=0.95,
        )
        total += len(loop.generate_signals())
    # 20,000 executions; one signal per plan would be thousands.
    assert total == len(loop.export_signals()) < 60


def test_learning_signal_validation() -> None:
    with pytest.raises(ValueError):
        LearningSignal(
            signal_type=SignalType.TOOL_RELIABILITY,
            tool_name="t",
            insight="i",
            recommended_action="r",
            confidence=0.5,
            target_phase=19,
        )
    with pytest.raises(ValueError):
        LearningSignal(
            signal_type=SignalType.CONFLICT_PATTERN,
            tool_name="t",
            insight="i",
            recommended_action="r",
            confidence=1.5,
            target_phase=19,
        )
