"""`GET /metrics`: the gate's state in the Prometheus text format.

Read at scrape time from the monitor (its 8 metrics and the health score) and the service
(pending approvals, lock and pause state, proposals, decisions, grants): nothing is kept
twice, so the figures are the ones the console and `system_health.json` show.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.gate_service import GateService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "tool_success_rate": "share of executions that succeeded, percent",
    "execution_latency_ms": "mean execution latency, milliseconds",
    "rollback_frequency": "share of executions undone, percent",
    "conflict_rate": "share of actions with a conflict, percent",
    "live_execution_ratio": "share of executions run LIVE, percent",
    "confidence_drift": "|mean confidence - success rate|, 0..1",
    "approval_rate": "approved LIVE executions that succeeded, percent",
    "system_health_score": "the monitor's health score, 0..100",
}


class GateCollector(Collector):
    def __init__(self, service: GateService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        metrics = service.monitor.metrics()
        for name, help_text in _HELP.items():
            yield GaugeMetricFamily(f"phase24_{name}", help_text, value=float(metrics.get(name, 0.0)))
        yield GaugeMetricFamily("phase24_health_score", "health score, 0..100", value=metrics["system_health_score"])
        yield GaugeMetricFamily(
            "phase24_pending_approvals", "approval requests waiting", value=len(service.approvals.pending)
        )
        yield GaugeMetricFamily("phase24_locked", "1 while the system is locked", value=1.0 if service.locked else 0.0)
        yield GaugeMetricFamily("phase24_paused", "1 while the gate is paused", value=1.0 if service.paused else 0.0)
        yield GaugeMetricFamily(
            "phase24_outstanding_grants", "LIVE grants awaiting their outcome", value=len(service.grants.outstanding)
        )
        yield GaugeMetricFamily(
            "phase24_last_event_seq", "sequence number of the newest event", value=service.bus.last_seq
        )
        counts = service.counts
        yield CounterMetricFamily("phase24_proposals", "proposals accepted", value=counts["proposals"])
        decisions = CounterMetricFamily("phase24_decisions", "proposals decided, by decision", labels=["decision"])
        approvals = CounterMetricFamily("phase24_approvals", "approval requests answered", labels=["answer"])
        grants = CounterMetricFamily("phase24_grants", "LIVE grants, by what became of them", labels=["status"])
        for key, value in sorted(counts.items()):
            if key.startswith("decision_"):
                decisions.add_metric([key.removeprefix("decision_")], value)
            elif key.startswith("approvals_"):
                approvals.add_metric([key.removeprefix("approvals_")], value)
            elif key.startswith("grants_"):
                grants.add_metric([key.removeprefix("grants_")], value)
        yield decisions
        yield approvals
        yield grants


def make_registry(service: GateService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GateCollector(service))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
