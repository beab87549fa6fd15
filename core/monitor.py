"""Execution monitor: the 8 health metrics, the 0..100 health score, anomaly detection and a
bounded, timestamped history of every metric and of each tool's executions.

Metric definitions (as fractions; `metrics()` reports percentages 0..100 except where noted):

- tool_success_rate = successful executions / executions (100% before anything executed)
- execution_latency_ms = mean execution duration in milliseconds
- rollback_frequency = actions undone by rollback / executions (clamped to 1)
- conflict_rate = conflicts detected / distinct actions seen (clamped to 1); an action is
  counted on its first attempt (ToolExecuted.attempt == 1), so no action ids are stored
- live_execution_ratio = LIVE executions / executions
- confidence_drift = |mean confidence of executions - success rate|, reported as 0..1
- approval_rate = approval accuracy: share of approved LIVE executions that succeeded
  (100% while nothing approved has executed yet)
- system_health_score = the health score below, 0..100

Every count is a counter and every history a bounded deque: memory is O(1) per execution.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from core.clock import Clock, iso
from core.contracts import ExecutionMode
from core.events import ApprovalDecided, ConflictDetected, Event, RollbackPerformed, ToolExecuted


class HealthStatus(StrEnum):
    EXCELLENT = "EXCELLENT"
    GOOD = "GOOD"
    FAIR = "FAIR"
    POOR = "POOR"


class AnomalyType(StrEnum):
    UNSAFE_ESCALATION = "unsafe_escalation"
    REPEATED_FAILURES = "repeated_failures"
    HIGH_ROLLBACK = "high_rollback"
    HIGH_CONFLICT = "high_conflict"


class Anomaly(BaseModel):
    """One detected anomaly; `value` and `threshold` are in the metric's reported units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    anomaly_type: AnomalyType
    severity: int
    metric: str
    value: float
    threshold: float
    detail: str
    timestamp: datetime

    def to_dict(self) -> dict[str, object]:
        """The anomaly as it appears in system_health.json."""
        return {
            "anomaly_type": self.anomaly_type.value,
            "severity": self.severity,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
            "timestamp": iso(self.timestamp),
        }


# Anomaly thresholds as fractions (confidence drift is already 0..1).
DRIFT_THRESHOLD = 0.4
FAILURE_THRESHOLD = 0.5
ROLLBACK_THRESHOLD = 0.3
CONFLICT_THRESHOLD = 0.5

# The score's terms, in the order they are summed: (metric, weight, higher is worse). A term
# is the metric as a clamped 0..1 fraction, or 1 minus it when a higher value is worse.
SCORE_TERMS: tuple[tuple[str, float, bool], ...] = (
    ("tool_success_rate", 0.30, False),
    ("rollback_frequency", 0.15, True),
    ("conflict_rate", 0.15, True),
    ("confidence_drift", 0.10, True),
    ("approval_rate", 0.30, False),
)


class AnomalyRule(NamedTuple):
    """An anomaly fires when `metric` (a fraction) is strictly beyond `threshold`."""

    anomaly_type: AnomalyType
    severity: int
    metric: str
    below: bool  # fires below the threshold (else above)
    threshold: float
    scale: float  # 100 for a percentage in system_health.json, 1 for drift


ANOMALY_RULES: tuple[AnomalyRule, ...] = (
    AnomalyRule(AnomalyType.UNSAFE_ESCALATION, 7, "confidence_drift", False, DRIFT_THRESHOLD, 1),
    AnomalyRule(AnomalyType.REPEATED_FAILURES, 8, "tool_success_rate", True, FAILURE_THRESHOLD, 100),
    AnomalyRule(AnomalyType.HIGH_ROLLBACK, 6, "rollback_frequency", False, ROLLBACK_THRESHOLD, 100),
    AnomalyRule(AnomalyType.HIGH_CONFLICT, 8, "conflict_rate", False, CONFLICT_THRESHOLD, 100),
)

# Approved actions waiting for their LIVE outcome, remembered this far back.
_APPROVAL_MEMORY = 4096


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


class ExecutionMonitor:
    """Counts what happens, scores it and remembers a bounded history of the scores."""

    METRIC_NAMES = (
        "tool_success_rate",
        "execution_latency_ms",
        "rollback_frequency",
        "conflict_rate",
        "live_execution_ratio",
        "confidence_drift",
        "approval_rate",
        "system_health_score",
    )

    def __init__(self, clock: Clock, history_limit: int = 1000) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self.clock = clock
        self.history_limit = history_limit
        self.executions = 0
        self.successful = 0
        self.live_executions = 0
        self.actions_seen = 0
        self.conflicts = 0
        self.actions_undone = 0
        self.rollbacks = 0
        self.approvals_granted = 0
        self.approvals_denied = 0
        self.approved_live_executions = 0
        self.approved_live_successes = 0
        self._duration_sum = 0.0
        self._confidence_sum = 0.0
        self._approved: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._history: dict[str, deque[tuple[datetime, float]]] = {
            name: deque(maxlen=history_limit) for name in self.METRIC_NAMES
        }
        self._tool_history: dict[str, deque[tuple[datetime, bool, float]]] = {}

    # ---- recording -------------------------------------------------------------------

    def record_execution(
        self,
        tool: str,
        mode: ExecutionMode,
        success: bool,
        duration_ms: float,
        confidence: float,
        *,
        attempt: int = 1,
        at: datetime | None = None,
    ) -> None:
        """Count one execution; `attempt` > 1 marks a retry of an action already counted.
        `at` is when it happened (the event's timestamp; default: now on the monitor's clock)."""
        self.executions += 1
        self.successful += int(success)
        self.live_executions += int(mode is ExecutionMode.LIVE)
        self.actions_seen += int(attempt <= 1)
        self._duration_sum += max(0.0, duration_ms)
        self._confidence_sum += confidence if 0.0 <= confidence <= 1.0 else _clamp(confidence)
        history = self._tool_history.get(tool)
        if history is None:
            history = self._tool_history[tool] = deque(maxlen=self.history_limit)
        history.append((self.clock.now() if at is None else at, success, duration_ms))

    def record_conflicts(self, n: int = 1) -> None:
        self.conflicts += max(0, n)

    def record_rollback(self, actions_undone: int) -> None:
        self.rollbacks += 1
        self.actions_undone += max(0, actions_undone)

    def record_approval(self, approved: bool) -> None:
        if approved:
            self.approvals_granted += 1
        else:
            self.approvals_denied += 1

    def record_live_outcome_after_approval(self, success: bool) -> None:
        self.approved_live_executions += 1
        self.approved_live_successes += int(success)

    #: The event classes `observe` reads (the bus routes only these to it).
    OBSERVES: tuple[type[Event], ...] = (ToolExecuted, ConflictDetected, RollbackPerformed, ApprovalDecided)

    def observe(self, event: Event) -> None:
        """Event-bus subscriber feeding the counters above."""
        if isinstance(event, ToolExecuted):
            self.record_execution(
                event.tool,
                event.mode,
                event.success,
                event.duration_ms,
                event.confidence,
                attempt=event.attempt,
                at=event.ts,
            )
            # Every LIVE execution of an approved action (retries included) is judged.
            if event.mode is ExecutionMode.LIVE and (event.plan_id, event.action_id) in self._approved:
                self.record_live_outcome_after_approval(event.success)
        elif isinstance(event, ConflictDetected):
            self.record_conflicts(1)
        elif isinstance(event, RollbackPerformed):
            self.record_rollback(len(event.undone))
        elif isinstance(event, ApprovalDecided):
            self.record_approval(event.approved)
            if event.approved:
                self._approved[(event.plan_id, event.action_id)] = None
                while len(self._approved) > _APPROVAL_MEMORY:
                    self._approved.popitem(last=False)

    # ---- metrics ---------------------------------------------------------------------

    def _fractions(self) -> dict[str, float]:
        """The metrics as fractions 0..1 (latency in ms), unrounded, for scoring and checks."""
        n = self.executions
        success = self.successful / n if n else 1.0
        mean_confidence = self._confidence_sum / n if n else 0.0
        return {
            "tool_success_rate": success,
            "execution_latency_ms": self._duration_sum / n if n else 0.0,
            "rollback_frequency": _clamp(self.actions_undone / n) if n else 0.0,
            "conflict_rate": _clamp(self.conflicts / self.actions_seen) if self.actions_seen else 0.0,
            "live_execution_ratio": self.live_executions / n if n else 0.0,
            "confidence_drift": abs(mean_confidence - success) if n else 0.0,
            "approval_rate": (
                self.approved_live_successes / self.approved_live_executions if self.approved_live_executions else 1.0
            ),
        }

    def calculate_health_score(self) -> float:
        """The health score on 0..100.

        The report's formula yields 0..1 while its tiers are on 0..100; resolved by computing
        health = success*0.30 + (1-rollback)*0.15 + (1-conflict)*0.15 + (1-drift)*0.10
        + approval*0.30 with every term a clamped 0..1 fraction, and reporting
        round(100 * health, 1).
        """
        f = self._fractions()
        health = sum(
            ((1 - _clamp(f[metric])) if worse else _clamp(f[metric])) * weight for metric, weight, worse in SCORE_TERMS
        )
        return round(100 * health, 1)

    def metrics(self) -> dict[str, float]:
        """The 8 metrics in system_health.json units: percentages except drift and latency."""
        f = self._fractions()
        result: dict[str, float] = {}
        for name in self.METRIC_NAMES[:-1]:
            if name == "execution_latency_ms":
                result[name] = round(f[name], 2)
            elif name == "confidence_drift":
                result[name] = round(f[name], 4)
            else:
                result[name] = round(100 * f[name], 2)
        result["system_health_score"] = self.calculate_health_score()
        return result

    def health_status(self, score: float | None = None) -> HealthStatus:
        if score is None:
            score = self.calculate_health_score()
        if score >= 90:
            return HealthStatus.EXCELLENT
        if score >= 75:
            return HealthStatus.GOOD
        if score >= 60:
            return HealthStatus.FAIR
        return HealthStatus.POOR

    def detect_anomalies(self) -> list[Anomaly]:
        """Strict comparisons against the report's thresholds; none before any execution."""
        if self.executions == 0:
            return []
        # Rounded so a value at a threshold up to float noise (0.9 - 0.5) is not over it.
        f = {name: round(value, 9) for name, value in self._fractions().items()}
        now = self.clock.now()
        found: list[Anomaly] = []

        def add(kind: AnomalyType, severity: int, metric: str, scale: float, limit: float) -> None:
            value, threshold = round(f[metric] * scale, 4), round(limit * scale, 4)
            unit = "%" if scale == 100 else ""
            comparison = "below" if kind is AnomalyType.REPEATED_FAILURES else "above"
            found.append(
                Anomaly(
                    anomaly_type=kind,
                    severity=severity,
                    metric=metric,
                    value=value,
                    threshold=threshold,
                    detail=f"{metric} {value:g}{unit} is {comparison} {threshold:g}{unit}",
                    timestamp=now,
                )
            )

        for rule in ANOMALY_RULES:
            value = f[rule.metric]
            if (value < rule.threshold) if rule.below else (value > rule.threshold):
                add(rule.anomaly_type, rule.severity, rule.metric, rule.scale, rule.threshold)
        return found

    # ---- history ---------------------------------------------------------------------

    def track_metric(self, name: str, value: float) -> None:
        """Append a timestamped point to the metric's bounded history."""
        history = self._history.get(name)
        if history is None:
            raise ValueError(f"unknown metric {name!r}; expected one of {self.METRIC_NAMES}")
        history.append((self.clock.now(), float(value)))

    def snapshot(self) -> dict[str, object]:
        """Compute and record every metric; return the system_health.json document."""
        current = self.metrics()
        for name, value in current.items():
            self.track_metric(name, value)
        score = current["system_health_score"]
        return {
            "health_assessment": self.health_status(score).value,
            "health_score": score,
            "anomalies": [anomaly.to_dict() for anomaly in self.detect_anomalies()],
            "metrics": current,
            "timestamp": iso(self.clock.now()),
        }

    def metric_history(self, name: str) -> list[tuple[datetime, float]]:
        if name not in self._history:
            raise ValueError(f"unknown metric {name!r}; expected one of {self.METRIC_NAMES}")
        return list(self._history[name])

    def tool_history(self, tool: str) -> list[tuple[datetime, bool, float]]:
        return list(self._tool_history.get(tool, ()))

    def metrics_summary(self) -> dict[str, dict[str, float]]:
        """Per metric: the current value and min, max and mean over its history.

        A metric with no history yet summarizes to its current value.
        """
        current = self.metrics()
        summary: dict[str, dict[str, float]] = {}
        for name in self.METRIC_NAMES:
            values = [value for _, value in self._history[name]] or [current[name]]
            summary[name] = {
                "current": current[name],
                "min": min(values),
                "max": max(values),
                "mean": sum(values) / len(values),
            }
        return summary
