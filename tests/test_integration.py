"""End to end: the pipeline over the sample plans, the approval callback, Phase 22/16/19 links,
and the seven output files checked against the report's schema and against each other."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SAMPLES, VALIDATIONS, act, plan, read_jsonl, record, results_by_id

from core.approval import CallbackGate, PolicyGate
from core.contracts import ExecutionMode, standard_registry
from core.events import ApprovalDecided, ApprovalRequested, PlanFinished
from core.outputs import JSON_FILES, JSONL_FILES, OPERATOR_DECISIONS, REPORT_FILES
from core.plans import load_plans, load_validations

LIVE = ExecutionMode.LIVE
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
CONFLICT_TYPES = {"RESOURCE", "ORDERING", "RATE_LIMIT", "DUPLICATE_ACTION", "PERMISSION", "TIMEOUT"}
STRATEGIES = {"DELAY", "REASSIGN", "DOWNGRADE", "ABORT"}
METRICS = {
    "tool_success_rate",
    "execution_latency_ms",
    "rollback_frequency",
    "conflict_rate",
    "live_execution_ratio",
    "confidence_drift",
    "approval_rate",
    "system_health_score",
}
SIGNAL_FIELDS = {"signal_type", "tool_name", "insight", "recommended_action", "confidence", "target_phase"}
SIGNAL_PHASE = {
    "TOOL_RELIABILITY": 16,
    "APPROVAL_MISMATCH": 16,
    "TOOL_PERFORMANCE": 19,
    "EXECUTION_MODE_ANALYSIS": 19,
    "CONFLICT_PATTERN": 19,
}
RESULT_FIELDS = {
    "successful_executions",
    "failed_executions",
    "tool_results",
    "conflicts_detected",
    "conflicts_resolved",
    "rollbacks_executed",
}
SUMMARY_FIELDS = {
    "pipeline_id",
    "start_time",
    "end_time",
    "plans_processed",
    "plans_successful",
    "plans_failed",
    "total_tools_executed",
    "total_conflicts",
    "total_rollbacks",
}


class Run:
    def __init__(self, harness, summary, log):
        self.h = harness
        self.summary = summary
        self.log = log
        self.out: Path = harness.config.output_dir

    def jsonl(self, name):
        return read_jsonl(self.out / name)

    def json(self, name):
        return json.loads((self.out / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def samples_run(make_harness):
    """Every sample plan (the whole directory, large.json included), with Phase 22 validations."""
    registry = standard_registry()
    plans = load_plans([SAMPLES], registry)
    h = make_harness(plans, gate=PolicyGate(approve_all=True), run_id="samples_run")
    h.load_phase22_validations(load_validations(VALIDATIONS))
    log = record(h)
    summary = h.execute_orchestration_pipeline()
    return Run(h, summary, log)


# -- the three named integration tests -----------------------------------------------------


def test_full_pipeline_dry_run(make_harness):
    registry = standard_registry()
    plans = load_plans([SAMPLES / "happy_path.json", SAMPLES / "approvals.json", SAMPLES / "conflicts.json"], registry)
    h = make_harness(plans, gate=PolicyGate(approve_all=True), dry_run_only=True)
    h.load_phase22_validations(load_validations(VALIDATIONS))
    log = record(h)
    summary = h.execute_orchestration_pipeline()
    assert summary["plans_processed"] == 3
    assert summary["plans_failed"] == 0
    assert summary["live_executions"] == 0
    assert not log.executed(mode=LIVE)
    assert not log.of(ApprovalRequested)
    assert {*REPORT_FILES, OPERATOR_DECISIONS} <= {f.name for f in h.config.output_dir.iterdir()}
    happy = results_by_id(h, 0)
    assert {r["mode"] for r in happy.values()} == {"DRY_RUN"}
    assert all(r["final_state"] == "COMPLETED" for r in happy.values())
    # HIGH-risk actions stop at DRY_RUN without asking anyone
    approvals = results_by_id(h, 1)
    assert approvals["create_contact"]["mode"] == "DRY_RUN"
    assert approvals["create_contact"]["approval"] is None
    assert read_jsonl(h.config.output_dir / OPERATOR_DECISIONS) == []


def test_approval_gate_callback_integration(make_harness):
    calls: list[tuple[str, float]] = []

    def callback(tool_name: str, confidence: float) -> bool:
        calls.append((tool_name, confidence))
        if tool_name == "database_write":
            return True
        if tool_name == "file_operation":
            raise RuntimeError("approval service down")
        return False

    actions = [
        act("db", agent="a1", tool="database_write", confidence=0.9),
        act("file", agent="a2", tool="file_operation", confidence=0.87),
        act("mail", agent="a3", tool="ghl_update_contact", confidence=0.86),
        act("low", agent="a4", tool="math_compute", confidence=0.95),
        act("notyet", agent="a5", tool="database_write", confidence=0.84, args={"x": 1}),
    ]
    h = make_harness([plan(actions)], gate=CallbackGate(callback))
    log = record(h)
    h.execute_orchestration_pipeline()

    # the callback saw each HIGH-risk LIVE escalation once, with its tool and confidence
    assert sorted(calls) == sorted([("database_write", 0.9), ("file_operation", 0.87), ("ghl_update_contact", 0.86)])
    results = results_by_id(h)
    assert results["db"]["final_state"] == "COMPLETED" and results["db"]["mode"] == "LIVE"
    assert results["file"]["final_state"] == "LOCKED"
    assert "callback raised RuntimeError" in results["file"]["approval"]["reason"]
    assert results["mail"]["final_state"] == "LOCKED"
    assert "callback returned False" in results["mail"]["approval"]["reason"]
    assert results["low"]["mode"] == "LIVE" and results["low"]["approval"] is None  # LOW never asks
    assert results["notyet"]["mode"] == "DRY_RUN" and results["notyet"]["approval"] is None
    assert {e.action_id for e in log.executed(mode=LIVE)} == {"db", "low"}
    decided = {e.action_id: e for e in log.of(ApprovalDecided)}
    assert {k: v.approved for k, v in decided.items()} == {"db": True, "file": False, "mail": False}
    assert all(v.decided_by == "phase13-callback" for v in decided.values())


def test_callback_returning_truthy_non_bool_denies(make_harness):
    h = make_harness(
        [plan([act("db", tool="database_write", confidence=0.9)])],
        gate=CallbackGate(lambda tool, confidence: "yes"),
    )
    log = record(h)
    h.execute_orchestration_pipeline()
    assert results_by_id(h)["db"]["final_state"] == "LOCKED"
    assert not log.executed(mode=LIVE)


def test_phase_integration_points(make_harness):
    plans = [
        plan(
            [act("r1", tool="math_compute", confidence=0.9)],
            plan_id="rejected_plan",
            phase21_plan_id="p21-r",
            phase22_validation_id="v-bad",
        ),
        plan(
            [act(f"g{i}", tool="math_compute", confidence=0.9, args={"i": i}) for i in range(6)],
            plan_id="good_plan",
            phase21_plan_id="p21-g",
        ),
    ]
    h = make_harness(plans)
    h.load_phase22_validations(
        [
            {"validation_id": "v-bad", "plan_id": "p21-r", "valid": False, "issues": ["unsafe target"]},
            {"validation_id": "v-good", "plan_id": "p21-g", "valid": True, "predicted_success": 0.2},
        ]
    )
    assert h.validation_for(plans[0]).validation_id == "v-bad"
    assert h.validation_for(plans[1]).validation_id == "v-good"  # matched by phase21_plan_id
    log = record(h)
    summary = h.execute_orchestration_pipeline()

    # Phase 22: valid=false rejects the plan; nothing of it runs
    finished = {e.plan_id: e for e in log.of(PlanFinished)}
    assert finished["rejected_plan"].status == "REJECTED"
    assert "v-bad" in finished["rejected_plan"].reason and "unsafe target" in finished["rejected_plan"].reason
    assert not log.executed(plan_id="rejected_plan")
    assert h.results[0].status == "REJECTED" and h.results[0].tool_results == []
    assert finished["good_plan"].status == "SUCCEEDED"
    assert len(log.executed(plan_id="good_plan")) == 18

    # Phase 16/19: every learning signal targets the phase its type belongs to
    signals = read_jsonl(h.config.output_dir / "learning_signals.jsonl")
    assert signals, "no learning signals"
    for s in signals:
        assert SIGNAL_FIELDS <= set(s)
        assert s["target_phase"] == SIGNAL_PHASE[s["signal_type"]]
        assert 0.0 <= s["confidence"] <= 1.0
    assert {s["target_phase"] for s in signals} <= {16, 19}
    # predicted 20% success, actual 100%: Phase 16 hears about the mismatch
    assert any(s["signal_type"] == "APPROVAL_MISMATCH" and s["target_phase"] == 16 for s in signals)

    # Phase 25+: the orchestration summary has the report's fields
    on_disk = json.loads((h.config.output_dir / "orchestration_summary.json").read_text())
    assert SUMMARY_FIELDS <= set(on_disk)
    assert on_disk["plans_processed"] == 2
    assert on_disk["plans_successful"] == 1
    assert on_disk["plans_failed"] == 0
    assert on_disk["plans_rejected"] == 1
    assert on_disk["total_tools_executed"] == 6
    assert on_disk == json.loads(json.dumps(summary))


# -- every sample plan: the files, their schema, their agreement ---------------------------


def test_samples_write_all_files(samples_run):
    names = {f.name for f in samples_run.out.iterdir()}
    assert {*REPORT_FILES, OPERATOR_DECISIONS} <= names
    assert len(REPORT_FILES) == 7
    for name in JSONL_FILES:
        samples_run.jsonl(name)  # every line parses
    for name in JSON_FILES:
        assert isinstance(samples_run.json(name), dict)
    assert not [f for f in samples_run.out.iterdir() if f.name.endswith(".tmp")]


def test_samples_tool_execution_log_schema(samples_run):
    lines = samples_run.jsonl("tool_execution_log.jsonl")
    assert [line["plan_index"] for line in lines] == list(range(len(lines)))
    assert [line["plan_id"] for line in lines] == [p.plan_id for p in samples_run.h.plans]
    for line in lines:
        assert {"plan_index", "plan_id", "result"} <= set(line)
        result = line["result"]
        assert RESULT_FIELDS <= set(result)
        for key in RESULT_FIELDS - {"tool_results"}:
            assert isinstance(result[key], int) and result[key] >= 0
        assert isinstance(result["tool_results"], list)


def test_samples_summary_schema_and_totals(samples_run):
    summary = samples_run.json("orchestration_summary.json")
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["pipeline_id"] == "samples_run"
    assert ISO_Z.match(summary["start_time"]) and ISO_Z.match(summary["end_time"])
    assert summary["start_time"] <= summary["end_time"]
    log_lines = samples_run.jsonl("tool_execution_log.jsonl")
    results = [line["result"] for line in log_lines]
    rollbacks = samples_run.jsonl("rollback_events.jsonl")
    conflicts = samples_run.json("tool_conflicts.json")

    assert summary["plans_processed"] == len(log_lines) == 6
    assert summary["plans_successful"] + summary["plans_failed"] + summary["plans_rejected"] == len(log_lines)
    assert summary["plans_successful"] == sum(r["status"] == "SUCCEEDED" for r in results)
    assert summary["plans_failed"] == sum(r["status"] == "FAILED" for r in results) == 1
    assert summary["total_rollbacks"] == sum(line["total_rollbacks"] for line in rollbacks) == 3
    assert summary["total_rollbacks"] == sum(r["rollbacks_executed"] for r in results)
    assert summary["total_conflicts"] == sum(r["conflicts_detected"] for r in results)
    assert summary["total_conflicts"] == conflicts["total_conflicts"]
    assert summary["total_tools_executed"] == sum(
        r["successful_executions"] + r["failed_executions"] + r["held_executions"] for r in results
    )
    live = sum(t["mode"] == "LIVE" for r in results for t in r["tool_results"])
    assert summary["live_executions"] == live
    states = {}
    for r in results:
        for t in r["tool_results"]:
            states[t["final_state"]] = states.get(t["final_state"], 0) + 1
    assert summary["actions_by_final_state"] == states
    assert sum(states.values()) == sum(len(p.actions) for p in samples_run.h.plans)


def test_samples_transitions_schema_and_agreement(samples_run):
    lines = samples_run.jsonl("execution_state_transitions.jsonl")
    assert lines
    last_state = {}
    for line in lines:
        assert {"from_state", "to_state", "timestamp", "reason"} <= set(line)
        assert ISO_Z.match(line["timestamp"])
        assert line["reason"]
        last_state[(line["plan_id"], line["action_id"])] = line["to_state"]
    for line in samples_run.jsonl("tool_execution_log.jsonl"):
        for t in line["result"]["tool_results"]:
            assert last_state[(line["plan_id"], t["action_id"])] == t["final_state"]
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs)


def test_samples_conflicts_schema(samples_run):
    conflicts = samples_run.json("tool_conflicts.json")
    assert set(conflicts["by_type"]) == CONFLICT_TYPES
    assert set(conflicts["by_resolution_strategy"]) == STRATEGIES
    assert sum(conflicts["by_type"].values()) == conflicts["total_conflicts"]
    results = [line["result"] for line in samples_run.jsonl("tool_execution_log.jsonl")]
    assert sum(conflicts["by_resolution_strategy"].values()) == sum(r["conflicts_resolved"] for r in results)


def test_samples_rollback_schema(samples_run):
    lines = samples_run.jsonl("rollback_events.jsonl")
    assert len(lines) == 1
    for line in lines:
        assert {"total_rollbacks", "timestamp"} <= set(line)
        assert ISO_Z.match(line["timestamp"])
        assert line["total_rollbacks"] == len(line["undone"])
    assert lines[0]["plan_id"] == "rollback"


def test_samples_learning_signals_schema(samples_run):
    signals = samples_run.jsonl("learning_signals.jsonl")
    assert signals
    for s in signals:
        assert SIGNAL_FIELDS <= set(s)
        assert s["target_phase"] == SIGNAL_PHASE[s["signal_type"]]
        assert isinstance(s["insight"], str) and s["insight"]
        assert isinstance(s["recommended_action"], str) and s["recommended_action"]
        assert 0.0 <= s["confidence"] <= 1.0


def test_samples_system_health_schema(samples_run):
    health = samples_run.json("system_health.json")
    assert {"health_assessment", "health_score", "anomalies", "metrics", "timestamp"} <= set(health)
    assert set(health["metrics"]) == METRICS
    assert all(isinstance(v, int | float) for v in health["metrics"].values())
    assert 0 <= health["health_score"] <= 100
    assert health["metrics"]["system_health_score"] == health["health_score"]
    score = health["health_score"]
    expected = "EXCELLENT" if score >= 90 else "GOOD" if score >= 75 else "FAIR" if score >= 60 else "POOR"
    assert health["health_assessment"] == expected
    assert isinstance(health["anomalies"], list)
    assert ISO_Z.match(health["timestamp"])


def test_samples_operator_decisions(samples_run):
    decisions = samples_run.jsonl("operator_decisions.jsonl")
    approvals = [
        t["approval"]
        for line in samples_run.jsonl("tool_execution_log.jsonl")
        for t in line["result"]["tool_results"]
        if t["approval"]
    ]
    assert len(decisions) == len(approvals) > 0
    assert {d["decision"] for d in decisions} == {"APPROVE"}  # approve_all
    for d in decisions:
        assert {"timestamp", "decision", "by", "why", "request_id", "action_hash"} <= set(d)
        assert len(d["action_hash"]) == 64


def test_conflicts_sample_shows_every_type_and_strategy(make_harness):
    plans = load_plans([SAMPLES / "conflicts.json"], standard_registry())
    h = make_harness(plans)
    h.execute_orchestration_pipeline()
    conflicts = json.loads((h.config.output_dir / "tool_conflicts.json").read_text())
    assert {k for k, v in conflicts["by_type"].items() if v > 0} == CONFLICT_TYPES
    assert {k for k, v in conflicts["by_resolution_strategy"].items() if v > 0} == STRATEGIES
    results = results_by_id(h)
    assert results["a_create_again"]["final_state"] == "ABORTED"  # duplicate irreversible call
    assert results["d_update"]["agent"] != results["d_update"]["planned_agent"]  # reassigned
    assert results["g_email"]["mode"] in ("MOCK", "DRY_RUN")  # downgraded


def test_large_plan_accounts_for_every_action(samples_run):
    large = next(p for p in samples_run.h.plans if p.plan_id == "large_10000")
    assert len(large.actions) == 10_000
    result = next(r for r in samples_run.h.results if r.plan_id == "large_10000")
    ids = [t["action_id"] for t in result.tool_results]
    assert len(ids) == len(set(ids)) == 10_000
    assert set(ids) == {a.id for a in large.actions}
    counted = (
        result.successful_executions + result.failed_executions + result.held_executions + result.cancelled_executions
    )
    assert counted == 10_000
    assert all(t["executions"] for t in result.tool_results if t["final_state"] == "COMPLETED")
    executed_ids = {e.action_id for e in samples_run.log.executed(plan_id="large_10000")}
    completed = {t["action_id"] for t in result.tool_results if t["final_state"] == "COMPLETED"}
    assert completed <= executed_ids
