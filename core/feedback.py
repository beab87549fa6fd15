"""Feedback loop: learns from tool outcomes, conflicts and Phase 22 predictions, and turns them
into learning signals for Phase 16 (reward modeling) and Phase 19 (meta-learning).

Memory stays bounded however many executions it sees: counters per tool, mode, confidence
bucket and conflict pattern, and short bounded queues, never a list of every outcome.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import ExecutionMode
from core.events import ConflictDetected, ConflictResolved, Event, ToolExecuted


class SignalType(StrEnum):
    TOOL_RELIABILITY = "TOOL_RELIABILITY"
    TOOL_PERFORMANCE = "TOOL_PERFORMANCE"
    EXECUTION_MODE_ANALYSIS = "EXECUTION_MODE_ANALYSIS"
    CONFLICT_PATTERN = "CONFLICT_PATTERN"
    APPROVAL_MISMATCH = "APPROVAL_MISMATCH"


#: Which downstream phase consumes each signal type: 16 = reward modeling, 19 = meta-learning.
TARGET_PHASE: dict[SignalType, int] = {
    SignalType.TOOL_RELIABILITY: 16,
    SignalType.APPROVAL_MISMATCH: 16,
    SignalType.TOOL_PERFORMANCE: 19,
    SignalType.EXECUTION_MODE_ANALYSIS: 19,
    SignalType.CONFLICT_PATTERN: 19,
}

HIGH_RELIABILITY = 0.90
LOW_RELIABILITY = 0.70
MIN_CONFLICT_OCCURRENCES = 3
CALIBRATION_GAP = 0.20
#: Confidence buckets as (label, low, high); the last one includes 1.0.
CALIBRATION_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0.00-0.50", 0.0, 0.5),
    ("0.50-0.70", 0.5, 0.7),
    ("0.70-0.85", 0.7, 0.85),
    ("0.85-1.00", 0.85, 1.0),
)
ALL_TOOLS = "*"

# Conflict ids and Phase 22 mismatches are remembered only this far back: enough to pair a
# resolution with its detection or to show recent mismatches, without growing with the run.
_CONFLICT_MEMORY = 4096
_VALIDATION_MEMORY = 100


class LearningSignal(BaseModel):
    """One line of learning_signals.jsonl."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signal_type: SignalType
    tool_name: str
    insight: str
    recommended_action: str
    confidence: float = Field(ge=0.0, le=1.0)
    target_phase: int

    @model_validator(mode="after")
    def _phase_matches_type(self) -> LearningSignal:
        expected = TARGET_PHASE[self.signal_type]
        if self.target_phase != expected:
            raise ValueError(f"{self.signal_type} signals target phase {expected}")
        return self


@dataclass
class _ModeStats:
    executions: int = 0
    successful: int = 0
    total_ms: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successful / self.executions if self.executions else 0.0

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.executions if self.executions else 0.0


@dataclass
class _BucketStats:
    samples: int = 0
    confidence_sum: float = 0.0
    successful: int = 0
    by_tool: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Validation:
    index: int
    plan_id: str
    predicted: float
    actual: float


@dataclass(frozen=True)
class _Finding:
    """A signal plus what generate_signals needs to decide whether it is news."""

    signal: LearningSignal
    topic: tuple[SignalType, str, str]
    evidence: int


def _signal(signal_type: SignalType, tool: str, insight: str, action: str, confidence: float) -> LearningSignal:
    return LearningSignal(
        signal_type=signal_type,
        tool_name=tool,
        insight=insight,
        recommended_action=action,
        confidence=round(min(1.0, max(0.0, confidence)), 2),
        target_phase=TARGET_PHASE[signal_type],
    )


def _pct(rate: float) -> str:
    """A rate as a percentage with at most one decimal, so 90.5% is never shown as 90%."""
    text = f"{rate * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _evidence_confidence(samples: int, prior: int) -> float:
    # Grows with the amount of evidence: half-sure at `prior` samples, never certain.
    return min(0.99, samples / (samples + prior))


def _unit(value: float, name: str) -> float:
    if math.isnan(value):
        raise ValueError(f"{name} must be a number in [0, 1], got NaN")
    # Clamped rather than rejected: a float rounding to 1.0000001 must not lock the system.
    return min(1.0, max(0.0, value))


def _exceeds_gap(gap: float) -> bool:
    # Rounded first so a gap of exactly 0.2 (e.g. 0.8 - 0.6 = 0.20000000000000007) passes.
    return round(abs(gap), 9) > CALIBRATION_GAP


def _bucket_index(confidence: float) -> int:
    for index, (_, low, high) in enumerate(CALIBRATION_BUCKETS):
        if low <= confidence < high:
            return index
    return len(CALIBRATION_BUCKETS) - 1


class FeedbackLoop:
    """Aggregates outcomes and produces learning signals.

    `generate_signals` can be called after every plan: it returns only news. A signal is news
    when its (type, tool, insight) has not been returned before and, for a topic already
    signalled, either its verdict (recommended action) changed or its evidence at least
    doubled. The doubling rule keeps a million executions to O(log n) signals per topic
    instead of one per plan, because insights quote counts that change on every execution.
    """

    def __init__(self, min_executions: int = 5) -> None:
        if min_executions < 1:
            raise ValueError("min_executions must be at least 1")
        self.min_executions = min_executions
        self._tools: dict[str, dict[ExecutionMode, _ModeStats]] = {}
        self._buckets = [_BucketStats() for _ in CALIBRATION_BUCKETS]
        self._conflicts: Counter[tuple[str, str]] = Counter()
        self._strategies: dict[tuple[str, str], Counter[str]] = {}
        # conflict_id -> (conflict_type, tool, resolved?)
        self._conflict_ids: OrderedDict[str, tuple[str, str, bool]] = OrderedDict()
        self._validations = 0
        self._mismatches: deque[_Validation] = deque(maxlen=_VALIDATION_MEMORY)
        self._mismatch_count = 0
        self._seen: set[tuple[SignalType, str, str]] = set()
        self._last_emitted: dict[tuple[SignalType, str, str], tuple[str, int]] = {}
        self._emitted: list[LearningSignal] = []

    # ---- recording -------------------------------------------------------------------

    def record_outcome(
        self,
        tool_name: str,
        mode: ExecutionMode,
        success: bool,
        duration_ms: float,
        confidence: float,
    ) -> None:
        if not math.isfinite(duration_ms) or duration_ms < 0:
            raise ValueError(f"duration_ms must be a finite non-negative number, got {duration_ms}")
        if not 0.0 <= confidence <= 1.0:
            confidence = _unit(confidence, "confidence")
        modes = self._tools.get(tool_name)
        if modes is None:
            modes = self._tools[tool_name] = {}
        if type(mode) is not ExecutionMode:
            mode = ExecutionMode(mode)
        stats = modes.get(mode)
        if stats is None:
            stats = modes[mode] = _ModeStats()
        stats.executions += 1
        stats.successful += int(success)
        stats.total_ms += duration_ms
        bucket = self._buckets[_bucket_index(confidence)]
        bucket.samples += 1
        bucket.confidence_sum += confidence
        bucket.successful += int(success)
        bucket.by_tool[tool_name] += 1

    def record_conflict(self, conflict_type: str, tool_name: str, strategy: str | None) -> None:
        """Count one occurrence of a conflict; `strategy` is None while it is unresolved."""
        pair = (conflict_type, tool_name)
        self._conflicts[pair] += 1
        if strategy is not None:
            self._strategies.setdefault(pair, Counter())[strategy] += 1

    def record_validation(self, plan_id: str, predicted_success: float, actual_success_rate: float) -> None:
        """Compare a Phase 22 success prediction with what the plan actually achieved."""
        predicted = _unit(predicted_success, "predicted_success")
        actual = _unit(actual_success_rate, "actual_success_rate")
        self._validations += 1
        if _exceeds_gap(predicted - actual):
            self._mismatch_count += 1
            self._mismatches.append(_Validation(self._mismatch_count, plan_id, predicted, actual))

    #: The event classes `observe` reads (the bus routes only these to it).
    OBSERVES: tuple[type[Event], ...] = (ToolExecuted, ConflictDetected, ConflictResolved)

    def observe(self, event: Event) -> None:
        """Event-bus subscriber: tool outcomes and conflicts (each conflict counted once)."""
        if isinstance(event, ToolExecuted):
            self.record_outcome(event.tool, event.mode, event.success, event.duration_ms, event.confidence)
        elif isinstance(event, ConflictDetected):
            if event.conflict_id in self._conflict_ids:
                return
            self._remember_conflict(event.conflict_id, (event.conflict_type, event.tool, False))
            self.record_conflict(event.conflict_type, event.tool, None)
        elif isinstance(event, ConflictResolved):
            known = self._conflict_ids.get(event.conflict_id)
            if known is None:
                # Detection not seen (e.g. subscribed late): count it here, tool unknown.
                self._remember_conflict(event.conflict_id, (event.conflict_type, ALL_TOOLS, True))
                self.record_conflict(event.conflict_type, ALL_TOOLS, event.strategy)
            elif not known[2]:
                conflict_type, tool, _ = known
                self._conflict_ids[event.conflict_id] = (conflict_type, tool, True)
                pair = (conflict_type, tool)
                self._strategies.setdefault(pair, Counter())[event.strategy] += 1

    def _remember_conflict(self, conflict_id: str, entry: tuple[str, str, bool]) -> None:
        self._conflict_ids[conflict_id] = entry
        while len(self._conflict_ids) > _CONFLICT_MEMORY:
            self._conflict_ids.popitem(last=False)

    # ---- metrics ---------------------------------------------------------------------

    def tool_metrics(self, tool_name: str) -> dict[str, object]:
        modes = self._tools.get(tool_name, {})
        total = sum(s.executions for s in modes.values())
        successful = sum(s.successful for s in modes.values())
        total_ms = sum(s.total_ms for s in modes.values())
        by_mode: dict[str, dict[str, float]] = {}
        for mode in ExecutionMode:
            stats = modes.get(mode, _ModeStats())
            by_mode[mode.value] = {
                "executions": stats.executions,
                "successful": stats.successful,
                "success_rate": stats.success_rate,
            }
        return {
            "total_executions": total,
            "successful": successful,
            "failed": total - successful,
            "success_rate": successful / total if total else 0.0,
            "avg_execution_time": total_ms / total if total else 0.0,
            "by_mode": by_mode,
        }

    def all_tool_metrics(self) -> dict[str, dict[str, object]]:
        return {tool: self.tool_metrics(tool) for tool in sorted(self._tools)}

    def calibration(self) -> dict[str, dict[str, float]]:
        """Per confidence bucket: samples, mean predicted confidence, actual success rate."""
        result: dict[str, dict[str, float]] = {}
        for (label, _, _), bucket in zip(CALIBRATION_BUCKETS, self._buckets, strict=True):
            n = bucket.samples
            result[label] = {
                "samples": n,
                "mean_confidence": bucket.confidence_sum / n if n else 0.0,
                "success_rate": bucket.successful / n if n else 0.0,
            }
        return result

    # ---- analyses --------------------------------------------------------------------

    def analyze_tool_reliability(self) -> list[LearningSignal]:
        return [f.signal for f in self._reliability_findings()]

    def analyze_execution_modes(self) -> list[LearningSignal]:
        return [f.signal for f in self._mode_findings()]

    def detect_conflict_patterns(self) -> list[LearningSignal]:
        return [f.signal for f in self._conflict_findings()]

    def analyze_confidence_calibration(self) -> list[LearningSignal]:
        return [f.signal for f in self._calibration_findings()]

    def _reliability_findings(self) -> list[_Finding]:
        findings: list[_Finding] = []
        for tool in sorted(self._tools):
            modes = self._tools[tool].values()
            n = sum(s.executions for s in modes)
            if n < self.min_executions:
                continue
            rate = sum(s.successful for s in modes) / n
            # Strict comparisons: exactly 90% or 70% is unremarkable.
            if rate > HIGH_RELIABILITY:
                action = "Weight this tool's outcomes as reliable in reward modeling"
            elif rate < LOW_RELIABILITY:
                action = "Lower this tool's confidence and keep it out of LIVE escalation"
            else:
                continue
            insight = f"Tool achieved {_pct(rate)} success rate over {n} executions"
            signal = _signal(
                SignalType.TOOL_RELIABILITY,
                tool,
                insight,
                action,
                _evidence_confidence(n, self.min_executions),
            )
            findings.append(_Finding(signal, (SignalType.TOOL_RELIABILITY, tool, ""), n))
        return findings

    def _mode_findings(self) -> list[_Finding]:
        findings: list[_Finding] = []
        for tool in sorted(self._tools):
            # A mode with a couple of lucky runs must not beat one with a long record.
            used = [
                (mode, stats)
                for mode in ExecutionMode
                if (stats := self._tools[tool].get(mode)) is not None and stats.executions >= self.min_executions
            ]
            if len(used) < 2:
                continue
            evidence = sum(stats.executions for _, stats in used)
            best_mode, best = min(used, key=lambda ms: (-ms[1].success_rate, ms[1].avg_ms))
            others = ", ".join(f"{mode.value} {_pct(stats.success_rate)}" for mode, stats in used if mode != best_mode)
            insight = (
                f"{best_mode.value} performed best: {_pct(best.success_rate)} success over "
                f"{best.executions} executions, avg {best.avg_ms:.1f} ms (vs {others})"
            )
            findings.append(
                _Finding(
                    _signal(
                        SignalType.EXECUTION_MODE_ANALYSIS,
                        tool,
                        insight,
                        f"Prefer {best_mode.value} when scheduling {tool}",
                        _evidence_confidence(evidence, self.min_executions),
                    ),
                    (SignalType.EXECUTION_MODE_ANALYSIS, tool, ""),
                    evidence,
                )
            )
            fast_mode, fast = min(used, key=lambda ms: ms[1].avg_ms)
            slow_mode, slow = max(used, key=lambda ms: ms[1].avg_ms)
            # Compared at the precision they are reported with, so "differ" is visible.
            if round(slow.avg_ms, 1) == round(fast.avg_ms, 1):
                continue
            ratio = f" ({slow.avg_ms / fast.avg_ms:.1f}x slower)" if fast.avg_ms > 0 else ""
            insight = (
                f"{slow_mode.value} averages {slow.avg_ms:.1f} ms vs {fast.avg_ms:.1f} ms in {fast_mode.value}{ratio}"
            )
            findings.append(
                _Finding(
                    _signal(
                        SignalType.TOOL_PERFORMANCE,
                        tool,
                        insight,
                        f"Budget {tool} timeouts and schedules on {slow_mode.value} latency",
                        _evidence_confidence(evidence, self.min_executions),
                    ),
                    (SignalType.TOOL_PERFORMANCE, tool, ""),
                    evidence,
                )
            )
        return findings

    def _conflict_findings(self) -> list[_Finding]:
        findings: list[_Finding] = []
        for (conflict_type, tool), count in sorted(self._conflicts.items()):
            if count < MIN_CONFLICT_OCCURRENCES:
                continue
            strategies = self._strategies.get((conflict_type, tool), Counter())
            parts = [f"{name} {n}" for name, n in sorted(strategies.items())]
            unresolved = count - sum(strategies.values())
            if unresolved > 0:
                parts.append(f"unresolved {unresolved}")
            insight = f"{conflict_type} on {tool} occurred {count} times (resolved by: {', '.join(parts)})"
            action = f"Serialize or reorder {tool} actions across agents to avoid {conflict_type}"
            findings.append(
                _Finding(
                    _signal(
                        SignalType.CONFLICT_PATTERN,
                        tool,
                        insight,
                        action,
                        _evidence_confidence(count, MIN_CONFLICT_OCCURRENCES),
                    ),
                    (SignalType.CONFLICT_PATTERN, tool, conflict_type),
                    count,
                )
            )
        return findings

    def _calibration_findings(self) -> list[_Finding]:
        findings: list[_Finding] = []
        for (label, _, _), bucket in zip(CALIBRATION_BUCKETS, self._buckets, strict=True):
            n = bucket.samples
            if n < self.min_executions:
                continue
            mean_conf = bucket.confidence_sum / n
            rate = bucket.successful / n
            gap = mean_conf - rate
            if not _exceeds_gap(gap):
                continue
            # Name the tool when one tool supplies most of the bucket; otherwise "*".
            top_tool, top_n = bucket.by_tool.most_common(1)[0]
            tool = top_tool if top_n * 2 > n else ALL_TOOLS
            if gap > 0:
                action = "Confidence overstates success here: lower it or raise the LIVE threshold"
            else:
                action = "Confidence understates success here: it can be raised"
            insight = (
                f"Confidence {label}: predicted {_pct(mean_conf)} success, actual {_pct(rate)} over {n} executions"
            )
            findings.append(
                _Finding(
                    _signal(
                        SignalType.APPROVAL_MISMATCH,
                        tool,
                        insight,
                        action,
                        _evidence_confidence(n, self.min_executions),
                    ),
                    (SignalType.APPROVAL_MISMATCH, tool, label),
                    n,
                )
            )
        for v in self._mismatches:
            insight = (
                f"Plan {v.plan_id}: Phase 22 predicted {_pct(v.predicted)} success, actual "
                f"{_pct(v.actual)} ({v.index} of {self._validations} validated plans diverged)"
            )
            findings.append(
                _Finding(
                    _signal(
                        SignalType.APPROVAL_MISMATCH,
                        ALL_TOOLS,
                        insight,
                        "Recalibrate Phase 22 success predictions against observed outcomes",
                        abs(v.predicted - v.actual),
                    ),
                    (SignalType.APPROVAL_MISMATCH, ALL_TOOLS, "phase22"),
                    v.index,
                )
            )
        return findings

    # ---- signals ---------------------------------------------------------------------

    def generate_signals(self) -> list[LearningSignal]:
        """Run every analysis and return only the signals that are news (see the class doc)."""
        findings = [
            *self._reliability_findings(),
            *self._mode_findings(),
            *self._conflict_findings(),
            *self._calibration_findings(),
        ]
        new: list[LearningSignal] = []
        for finding in findings:
            signal = finding.signal
            key = (signal.signal_type, signal.tool_name, signal.insight)
            if key in self._seen:
                continue
            last = self._last_emitted.get(finding.topic)
            if last is not None:
                last_action, last_evidence = last
                if last_action == signal.recommended_action and finding.evidence < 2 * last_evidence:
                    continue
            self._seen.add(key)
            self._last_emitted[finding.topic] = (signal.recommended_action, finding.evidence)
            self._emitted.append(signal)
            new.append(signal)
        return new

    def export_signals(self) -> list[dict[str, object]]:
        """Every signal generated so far, as learning_signals.jsonl records."""
        return [signal.model_dump(mode="json") for signal in self._emitted]
