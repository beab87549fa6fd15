"""An executor that raises, hangs past its timeout or answers nonsense ends its action FAILED
(or UNKNOWN where the effect may have happened), with the reason, and never takes the run down."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from core.approval import CallbackGate
from core.bindings import EffectNotApplied, ExecutionOutcome, ToolBinding, ToolCall
from core.clock import ManualClock
from core.contracts import RiskLevel, ToolContract, standard_contracts
from core.function_binding import function_binding
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.journal import JOURNAL_FILE, verify_journal
from core.plugins import ExecutorPlugin, merge_contracts
from tests.conftest import ROOT, act, plan

SEND = ToolContract(
    name="crm_send",
    description="Send to a CRM (irreversible)",
    risk_level=RiskLevel.HIGH,
    reversible=False,
    requires_approval=True,
    timeout_seconds=0.3,
)
LOOKUP = ToolContract(
    name="crm_lookup",
    description="Look a contact up",
    risk_level=RiskLevel.LOW,
    reversible=True,
    read_only=True,
    timeout_seconds=0.3,
)
NOTE = ToolContract(
    name="crm_note",
    description="Add a note (undoable)",
    risk_level=RiskLevel.MEDIUM,
    reversible=True,
    timeout_seconds=0.3,
)


class Calls:
    def __init__(self) -> None:
        self.live: list[str] = []


def ok(call: ToolCall) -> dict[str, Any]:
    return {"ok": call.action.id}


def behaviour(kind: str, calls: Calls) -> Any:
    """A LIVE step that misbehaves in the named way (and records that it was called)."""

    async def raises(call: ToolCall) -> ExecutionOutcome:
        calls.live.append(call.action.id)
        raise ConnectionResetError("peer went away mid-request")

    async def hangs(call: ToolCall) -> ExecutionOutcome:
        calls.live.append(call.action.id)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def malformed(call: ToolCall) -> Any:
        calls.live.append(call.action.id)
        return "sent, probably"

    async def refuses(call: ToolCall) -> ExecutionOutcome:
        calls.live.append(call.action.id)
        raise EffectNotApplied("the CRM rejected the contact: 422")

    async def fine(call: ToolCall) -> ExecutionOutcome:
        calls.live.append(call.action.id)
        return ExecutionOutcome(success=True, duration_ms=1.0, simulated=False)

    return {"raises": raises, "hangs": hangs, "malformed": malformed, "refuses": refuses, "fine": fine}[kind]


async def step_ok(call: ToolCall) -> ExecutionOutcome:
    return ExecutionOutcome(success=True, duration_ms=0.0, simulated=False)


def harness_with(tmp_path: Path, bindings: list[ToolBinding], plans: list[Any]) -> Phase24Harness:
    plugin = ExecutorPlugin(name="crm", bind=lambda ctx: bindings, contracts=(SEND, LOOKUP, NOTE))
    registry = merge_contracts(standard_contracts(), [plugin])
    h = Phase24Harness(
        Phase24ExecutionConfig(output_dir=tmp_path / "out", retry_delay_range_s=(0.0, 0.0)),
        gate=CallbackGate(lambda tool, confidence: True, name="test-approver"),
        clock=ManualClock(),
        registry=registry,
    )
    for binding in bindings:
        h.executors.bind(binding.tool, binding)
    h.load_phase21_plans(plans)
    return h


def intents(h: Phase24Harness) -> dict[str, str]:
    conn = sqlite3.connect(h.config.output_dir / JOURNAL_FILE)
    try:
        return dict(conn.execute("SELECT action_id, status FROM intents").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("raises", "UNKNOWN", "raised ConnectionResetError: peer went away mid-request"),
        ("hangs", "UNKNOWN", "did not answer within 0.3s"),
        ("malformed", "UNKNOWN", "returned str, not an ExecutionOutcome"),
        ("refuses", "FAILED", "the CRM rejected the contact: 422"),
    ],
)
def test_a_misbehaving_live_step_ends_its_action_and_the_run_goes_on(
    tmp_path: Path, kind: str, status: str, reason: str
) -> None:
    calls = Calls()
    bad = ToolBinding("crm_send", step_ok, step_ok, behaviour(kind, calls))
    plans = [
        plan([act("send", tool="crm_send", confidence=0.95), act("after", agent="b", tool="math_compute")], "p1"),
        plan([act("next_plan", tool="math_compute")], "p2"),
    ]
    h = harness_with(tmp_path, [bad], plans)
    started = time.monotonic()
    summary = h.execute_orchestration_pipeline()
    assert time.monotonic() - started < 10
    result = {r["action_id"]: r for r in h.results[0].tool_results}["send"]
    assert result["final_state"] == "ABORTED"
    assert reason in result["reason"]
    assert calls.live == ["send"], "never retried, not even a timeout"
    assert intents(h)["send"] == status
    assert (status == "UNKNOWN") == ("outcome UNKNOWN, the effect may have happened" in result["reason"])
    assert [u["action_id"] for u in summary["unknown_outcomes"]] == (["send"] if status == "UNKNOWN" else [])
    assert [p["status"] for p in summary["plans"]] == ["FAILED", "SUCCEEDED"], "the next plan still ran"
    assert verify_journal(h.config.output_dir).ok  # an UNKNOWN outcome is chained like any other


@pytest.mark.parametrize("kind", ["raises", "hangs", "malformed"])
def test_a_misbehaving_mock_or_dry_run_step_fails_without_an_unknown_outcome(tmp_path: Path, kind: str) -> None:
    calls = Calls()
    live = behaviour("fine", calls)
    for broken_mode in ("mock", "dry_run"):
        steps = {"mock": step_ok, "dry_run": step_ok, broken_mode: behaviour(kind, Calls())}
        bad = ToolBinding("crm_send", steps["mock"], steps["dry_run"], live)
        h = harness_with(tmp_path / broken_mode, [bad], [plan([act("send", tool="crm_send", confidence=0.95)])])
        summary = h.execute_orchestration_pipeline()
        result = h.results[0].tool_results[0]
        assert result["final_state"] == "ABORTED" and f"crm_send {broken_mode.upper()}" in result["reason"]
        assert "UNKNOWN" not in result["reason"]
        assert summary["unknown_outcomes"] == [] and intents(h) == {}
    assert calls.live == []


def test_a_read_only_live_step_that_raises_is_failed_not_unknown(tmp_path: Path) -> None:
    calls = Calls()
    bad = ToolBinding("crm_lookup", step_ok, step_ok, behaviour("raises", calls))
    h = harness_with(tmp_path, [bad], [plan([act("look", tool="crm_lookup")])])
    summary = h.execute_orchestration_pipeline()
    result = h.results[0].tool_results[0]
    assert "crm_lookup LIVE raised" in result["reason"] and "UNKNOWN" not in result["reason"]
    assert summary["unknown_outcomes"] == [] and intents(h) == {}


def test_a_compensation_that_raises_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    def broken_undo(call: ToolCall, output: dict[str, Any]) -> None:
        raise OSError("backup volume is gone")

    note = function_binding("crm_note", live=ok, compensate=broken_undo)
    fails = ToolBinding("crm_send", step_ok, step_ok, behaviour("refuses", Calls()))
    plans = [plan([act("note", tool="crm_note"), act("send", tool="crm_send", confidence=0.95)])]
    h = harness_with(tmp_path, [note, fails], plans)
    h.execute_orchestration_pipeline()
    rollback = (h.config.output_dir / "rollback_events.jsonl").read_text()
    assert '"failed_to_undo":["note"]' in rollback.replace(" ", "")


def test_a_hung_sync_function_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    """A sync step runs in a daemon thread: after its timeout the run finishes and the process exits."""
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
            from tests.test_executor_failures import harness_with, SEND
            from core.function_binding import function_binding
            from tests.conftest import act, plan
            from pathlib import Path

            def hang(call):
                time.sleep(3600)

            binding = function_binding("crm_send", live=hang)
            plans = [plan([act("send", tool="crm_send", confidence=0.95)])]
            h = harness_with(Path({str(tmp_path)!r}), [binding], plans)
            summary = h.execute_orchestration_pipeline()
            print(summary["unknown_outcomes"][0]["action_id"])
            """
        )
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "send"
    assert time.monotonic() - started < 30
