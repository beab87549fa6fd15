"""Approval outcomes in the core: EXPIRED, denied earlier, deny and stop, edit then approve,
countdowns that start when a prompt is shown, and runs reported by what happened."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLES, act, plan, read_jsonl, record, results_by_id

from console import exit_codes
from core.approval import (
    ApprovalOutcome,
    ApprovalRequest,
    QueueGate,
    canonical_action_hash,
    deny,
    edited_args_problem,
    grant,
)
from core.clock import SystemClock
from core.contracts import ExecutionMode, RiskLevel
from core.controller import ExecutionContext
from core.events import ApprovalDecided, ApprovalRequested, StateTransition, SystemLocked
from core.executors import SimulatedExecutor
from core.harness import run_status
from core.lock_state import SystemLockState
from core.orchestrator import plan_status
from core.plans import PlannedAction

LIVE = ExecutionMode.LIVE


def high(action_id: str = "write", **extra: object) -> dict[str, object]:
    return act(action_id, tool="database_write", confidence=0.95, args={"table": "t", "id": 1}, **extra)


# -- EXPIRED and the countdown ---------------------------------------------------------------


def request(timeout_s: float = 0.2) -> ApprovalRequest:
    return ApprovalRequest(
        request_id="r1",
        plan_id="p",
        action_id="a",
        agent="ag",
        tool="database_write",
        risk_level=RiskLevel.HIGH,
        reversible=False,
        confidence=0.9,
        threshold=0.85,
        args={"x": 1},
        action_hash="h",
        requested_at=SystemClock().now(),
        timeout_s=timeout_s,
    )


async def test_a_request_expires_only_after_its_countdown_which_starts_when_it_is_shown() -> None:
    gate = QueueGate(timeout_from_shown=True)
    waiting = asyncio.create_task(gate.decide(request(timeout_s=0.2)))
    await asyncio.sleep(0.45)  # queued behind another prompt: not shown, its time does not run
    assert not waiting.done()
    assert gate.seconds_left(gate.pending[0]) is None
    gate.mark_shown("r1")
    started = time.monotonic()
    decision = await waiting
    assert 0.15 <= time.monotonic() - started < 1.0
    assert decision.kind is ApprovalOutcome.EXPIRED and not decision.approved
    assert decision.decided_by == "timeout"


def test_expired_is_its_own_outcome_and_fails_closed(make_harness) -> None:
    gate = QueueGate()  # never answers: the controller's own timeout ends it
    h = make_harness([plan([high()])], gate=gate, approval_timeout_s=0.05, clock=SystemClock())
    log = record(h)
    h.execute_orchestration_pipeline()
    (decided,) = log.of(ApprovalDecided)
    assert decided.outcome == "EXPIRED" and not decided.approved
    assert results_by_id(h)["write"]["final_state"] == "LOCKED"
    assert not log.executed(mode=LIVE)
    (line,) = [d for d in read_jsonl(h.config.output_dir / "operator_decisions.jsonl") if d["action_id"] == "write"]
    assert line["decision"] == "EXPIRED"
    assert h.summary["status"] == "PARTIAL"


# -- denied earlier ------------------------------------------------------------------------


async def test_an_identical_call_denied_earlier_is_refused_without_asking_again(make_harness) -> None:
    gate = QueueGate()
    asked: list[ApprovalRequest] = []

    def on_request(r: ApprovalRequest) -> None:
        asked.append(r)
        gate.answer(deny(r, "operator", "no"))

    gate.on_request = on_request
    h = make_harness([], gate=gate)
    controller = h.controller
    events: list[object] = []
    h.bus.subscribe(events.append)
    controller.bind_loop(asyncio.get_running_loop())

    def ctx(action_id: str) -> ExecutionContext:
        action = PlannedAction(id=action_id, agent="ag", tool="database_write", confidence=0.95, args={"k": 1})
        return ExecutionContext(plan_id="p1", action=action, contract=h.registry.get("database_write"), agent="ag")

    first, again = ctx("first"), ctx("again")  # another id, the same call: the same canonical hash
    for c in (first, again):
        await controller.run_action(c, SimulatedExecutor(c.contract, h.clock).binding())
    assert len(asked) == 1
    assert first.state.value == again.state.value == "LOCKED"
    assert "denied earlier" in again.reason
    decided = [e for e in events if isinstance(e, ApprovalDecided)]
    assert [d.outcome for d in decided] == ["DENY", "DENIED_EARLIER"]
    assert controller.denied_earlier == 1
    assert not [e for e in events if isinstance(e, ApprovalRequested) and e.action_id == "again"]


def test_an_expired_or_locked_request_is_asked_again_not_denied_earlier(make_harness) -> None:
    h = make_harness([], gate=QueueGate())
    assert not h.controller.denied_hashes  # only explicit denials are remembered
    # (an EXPIRED request adds nothing: see test_expired_is_its_own_outcome_and_fails_closed)
    gate = QueueGate()
    h2 = make_harness([plan([high()])], gate=gate, approval_timeout_s=0.05, clock=SystemClock())
    h2.execute_orchestration_pipeline()
    assert not h2.controller.denied_hashes


# -- deny and stop -------------------------------------------------------------------------


def test_deny_and_stop_cancels_the_agents_remaining_actions_only(make_harness) -> None:
    gate = QueueGate()
    gate.on_request = lambda r: gate.answer(deny(r, "operator", "stop it", outcome=ApprovalOutcome.DENIED_AND_STOPPED))
    p = plan(
        [
            high("write", agent="bad"),
            act("later", agent="bad", tool="math_compute", confidence=0.95, depends_on=["write"]),
            act("other", agent="good", tool="math_compute", confidence=0.95),
        ]
    )
    h = make_harness([p], gate=gate)
    h.execute_orchestration_pipeline()
    results = results_by_id(h)
    assert results["write"]["final_state"] == "LOCKED"
    assert results["later"]["final_state"] == "ABORTED"
    assert results["other"]["final_state"] == "COMPLETED" and results["other"]["mode"] == "LIVE"
    assert "bad" in h.controller.stopped_agents
    assert h.summary["plans"][0]["status"] == "PARTIAL"


# -- edit, then approve --------------------------------------------------------------------


def test_edited_arguments_run_and_the_decision_binds_to_their_hash(make_harness) -> None:
    gate = QueueGate()
    edited = {"table": "t", "id": 2}
    gate.on_request = lambda r: gate.answer(grant(r, "operator", "edited", edited_args=edited, args_fully_visible=True))
    h = make_harness([plan([high()])], gate=gate)
    log = record(h)
    h.execute_orchestration_pipeline()
    (decided,) = log.of(ApprovalDecided)
    original = canonical_action_hash("agent_a", "database_write", {"table": "t", "id": 1}, "p1", LIVE)
    assert decided.approved and decided.original_action_hash == original
    assert decided.action_hash == canonical_action_hash("agent_a", "database_write", edited, "p1", LIVE)
    assert decided.action_hash != original
    result = results_by_id(h)["write"]
    assert result["final_state"] == "COMPLETED" and result["mode"] == "LIVE"
    assert result["approval"]["operator_modified"] is True
    effects = read_jsonl(h.config.output_dir / "simulated_effects.jsonl")
    assert [e["args"] for e in effects if e.get("action_id") == "write"] == [edited]
    (line,) = [d for d in read_jsonl(h.config.output_dir / "operator_decisions.jsonl") if d["action_id"] == "write"]
    assert line["operator_modified"] is True and line["original_action_hash"] == original
    assert line["args_fully_visible"] is True and line["edited_args"] == edited


@pytest.mark.parametrize(
    "bad",
    [{"n": float("nan")}, {"n": float("inf")}, {"s": "\ud800"}],
    ids=["nan", "inf", "lone-surrogate"],
)
def test_edited_arguments_that_do_not_round_trip_are_refused(make_harness, bad) -> None:
    assert edited_args_problem(bad) is not None
    gate = QueueGate()
    # Built around `grant`'s own check, as a client that skipped it would send it.
    gate.on_request = lambda r: gate.answer(grant(r, "operator").model_copy(update={"edited_args": bad}))
    h = make_harness([plan([high()])], gate=gate)
    log = record(h)
    h.execute_orchestration_pipeline()
    (decided,) = log.of(ApprovalDecided)
    assert not decided.approved and "edited arguments rejected" in decided.reason
    assert not log.executed(mode=LIVE)


def test_edited_arguments_must_be_an_object() -> None:
    assert edited_args_problem(["not", "an", "object"]) == "the arguments must be a JSON object"


def test_edited_arguments_deeper_than_the_limit_are_refused() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(80):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    assert "nested deeper" in (edited_args_problem(deep) or "")
    assert edited_args_problem({"ok": [1, 2.5, "x", None, True]}) is None


# -- statuses ------------------------------------------------------------------------------


def test_plan_status_reports_what_happened() -> None:
    assert plan_status(failed=0, held_by_lock=False, interrupted=False, incomplete=0) == "SUCCEEDED"
    assert plan_status(failed=0, held_by_lock=False, interrupted=False, incomplete=2) == "PARTIAL"
    assert plan_status(failed=0, held_by_lock=True, interrupted=False, incomplete=2) == "LOCKED"
    assert plan_status(failed=0, held_by_lock=True, interrupted=True, incomplete=2) == "INTERRUPTED"
    assert plan_status(failed=1, held_by_lock=True, interrupted=True, incomplete=2) == "FAILED"
    assert run_status({"SUCCEEDED": 2}, interrupted=False, unknown=False) == "SUCCEEDED"
    assert run_status({"SUCCEEDED": 1, "LOCKED": 1}, interrupted=False, unknown=False) == "LOCKED"
    assert run_status({"SUCCEEDED": 1}, interrupted=True, unknown=False) == "INTERRUPTED"
    assert run_status({"SUCCEEDED": 1}, interrupted=False, unknown=True) == "FAILED"


def phase24(*args: str, state: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={"PHASE24_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"},
    )


def test_headless_exit_codes_follow_the_run_status(tmp_path: Path) -> None:
    state = tmp_path / "state"
    denied = phase24("run", str(SAMPLES / "approvals.json"), "--out", str(tmp_path / "a"), state=state)
    assert denied.returncode == exit_codes.PARTIAL, denied.stderr
    assert "PARTIAL" in denied.stdout
    approved = phase24(
        "run", str(SAMPLES / "approvals.json"), "--out", str(tmp_path / "b"), "--approve-all", state=state
    )
    assert approved.returncode == exit_codes.OK, approved.stderr
    assert json.loads((tmp_path / "b" / "orchestration_summary.json").read_text())["status"] == "SUCCEEDED"


def test_phase24_lock_and_unlock_from_a_shell_are_system_wide(tmp_path: Path) -> None:
    state = tmp_path / "state"
    locked = phase24("lock", "--reason", "incident 42", state=state)
    assert locked.returncode == 0 and "LOCKED" in locked.stdout
    assert phase24("lock-status", state=state).returncode == exit_codes.LOCKED
    run = phase24("run", str(SAMPLES / "approvals.json"), "--out", str(tmp_path / "r"), "--approve-all", state=state)
    assert run.returncode == exit_codes.LOCKED, run.stderr
    summary = json.loads((tmp_path / "r" / "orchestration_summary.json").read_text())
    assert summary["live_executions"] == 0 and summary["status"] == "LOCKED"
    refused = phase24("unlock", "--reason", "done", state=state, stdin="")
    assert refused.returncode == exit_codes.BAD_INPUT and "--yes" in refused.stderr
    assert SystemLockState(state).read().locked
    unlocked = phase24("unlock", "--reason", "incident closed", "--yes", state=state)
    assert unlocked.returncode == 0
    assert phase24("lock-status", state=state).returncode == 0
    history = SystemLockState(state).history()
    assert [(h["event"], h["reason"]) for h in history] == [("LOCK", "incident 42"), ("UNLOCK", "incident closed")]
    assert all(str(h["by"]).startswith("cli") for h in history)


def test_an_unreadable_lock_state_counts_as_locked(tmp_path: Path) -> None:
    state = SystemLockState(tmp_path)
    tmp_path.joinpath("lock.json").write_text("{not json", encoding="utf-8")
    record_ = state.read()
    assert record_.locked and "corrupt" in record_.reason


def test_a_lock_taken_elsewhere_reaches_a_running_run(make_harness, tmp_path: Path) -> None:
    slow = plan([act(f"a{i}", tool="math_compute", confidence=0.95, simulate={"latency_ms": 30}) for i in range(60)])
    h = make_harness([slow], clock=SystemClock(), lock_poll_s=0.05, state_dir=tmp_path / "state")
    log = record(h)
    # Taken from another thread once the run is under way (its fifth execution), not after a
    # fixed time: on a loaded machine the run may not have started by then.
    shell = threading.Thread(target=lambda: SystemLockState(tmp_path / "state").lock("from another shell", "cli:x"))

    def lock_when_running(event: Any) -> None:
        if not shell.is_alive() and shell.ident is None and len(log.executed()) >= 5:
            shell.start()

    h.bus.subscribe(lock_when_running)
    h.execute_orchestration_pipeline()
    shell.join()
    (locked,) = log.of(SystemLocked)
    assert locked.reason == "from another shell"
    went_live_before = {e.action_id for e in log.of(StateTransition, to_state="LIVE") if e.seq < locked.seq}
    assert not [e for e in log.of(StateTransition, to_state="LIVE") if e.seq > locked.seq]
    after = [e for e in log.executed() if e.seq > locked.seq]
    # Only an execution already in flight when the lock landed may finish above MOCK.
    assert after and {e.action_id for e in after if e.mode is not ExecutionMode.MOCK} <= went_live_before
    assert h.summary["status"] == "LOCKED"
