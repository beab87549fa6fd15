"""Swap, not flag: each step holds only its own mode's implementation.

The live implementation must never run outside LIVE: not in MOCK or DRY_RUN, not under the
lock, not when an approval is denied, not over a run's ceiling, and not after a crash (a
SIGKILL at every point between intent and outcome, then a resume).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.approval import CallbackGate
from core.bindings import ExecutionOutcome, ToolBinding, ToolCall
from core.errors import ContractError
from core.executors import ExecutorRegistry
from core.harness import Phase24Harness
from core.journal import JOURNAL_FILE
from core.plans import load_plans
from tests.conftest import ROOT, act, plan
from tests.recording_bindings import CallLog, RecordingStep, StateTracker, bind_recording

CRASH_PLAN = ROOT / "tests" / "data" / "crash_plan.json"
EFFECTFUL = {"fill", "click", "create", "update", "write", "file"}  # read-only lookups may repeat
STEP_STATE = {"mock": "MOCK", "dry_run": "DRY_RUN", "live": "LIVE"}


def approving() -> CallbackGate:
    return CallbackGate(lambda tool, confidence: True, name="test-approver")


def crash_plans(h: Phase24Harness) -> None:
    h.load_phase21_plans(load_plans([CRASH_PLAN], h.registry))


def run_recorded(h: Phase24Harness) -> CallLog:
    log = CallLog()
    bind_recording(h.executors, h.registry, h.bus, log)
    h.execute_orchestration_pipeline()
    return log


def assert_each_step_ran_in_its_own_state(log: CallLog) -> None:
    for call in log.calls:
        if call["step"] in STEP_STATE:
            assert call["state"] == STEP_STATE[call["step"]], call


def live_transitions(h: Phase24Harness) -> list[str]:
    return [r.action_id for r in h.controller.audit_trail if r.to_state.value == "LIVE"]


def test_the_live_step_runs_only_in_live_and_once_per_live_escalation(make_harness: Any) -> None:
    h = make_harness(gate=approving())
    crash_plans(h)
    log = run_recorded(h)
    assert_each_step_ran_in_its_own_state(log)
    live = [c["action_id"] for c in log.of("live")]
    assert live and sorted(live) == sorted(live_transitions(h))
    assert len(log.of("mock")) == 8  # every action ran MOCK through its own step


@pytest.mark.parametrize(
    ("setting", "config"),
    [
        ("dry_run_only", {"dry_run_only": True}),
        ("max_live_zero", {"max_live_escalations": 0}),
        ("live_floor_unreachable", {"confidence_threshold_for_live": 1.0}),
    ],
)
def test_the_live_step_never_runs_over_the_runs_ceiling(make_harness: Any, setting: str, config: Any) -> None:
    h = make_harness(gate=approving(), **config)
    crash_plans(h)
    log = run_recorded(h)
    assert_each_step_ran_in_its_own_state(log)
    assert log.of("dry_run"), "the plan climbed to DRY_RUN, so LIVE was within reach"
    assert log.of("live") == []


def test_the_live_step_never_runs_when_approvals_are_denied(make_harness: Any) -> None:
    h = make_harness(plans=[plan([act("w", tool="database_write", confidence=0.95)])])  # deny-by-default gate
    log = run_recorded(h)
    assert [c["step"] for c in log.calls] == ["mock", "dry_run"]


def test_the_live_step_never_runs_under_the_lock(make_harness: Any) -> None:
    h = make_harness(gate=approving())
    crash_plans(h)
    h.lock("before the start")
    log = run_recorded(h)
    assert log.of("mock") and log.of("live") == []


def test_a_lock_taken_by_the_first_live_effect_stops_every_later_live_step(make_harness: Any) -> None:
    h = make_harness(gate=approving())
    crash_plans(h)
    log = CallLog()
    tracker = bind_recording(h.executors, h.registry, h.bus, log)

    class LockingLive(RecordingStep):
        async def __call__(self, call: ToolCall) -> ExecutionOutcome:
            outcome = await super().__call__(call)
            h.lock("operator saw the first effect")
            return outcome

    h.executors.bind(
        "ghl_update_contact",
        ToolBinding(
            tool="ghl_update_contact",
            mock=RecordingStep("mock", tracker, log),
            dry_run=RecordingStep("dry_run", tracker, log),
            live=LockingLive("live", tracker, log),
        ),
    )
    h.execute_orchestration_pipeline()
    assert_each_step_ran_in_its_own_state(log)
    first = log.calls.index(next(c for c in log.calls if c["action_id"] == "update" and c["step"] == "live"))
    assert [c for c in log.calls[first + 1 :] if c["step"] == "live"] == []


class LiveAccessSpy:
    """A binding that records the action's state each time its live step is looked up."""

    def __init__(self, inner: ToolBinding, tracker: StateTracker, reads: list[tuple[str, str]]) -> None:
        self._inner = inner
        self._tracker = tracker
        self._reads = reads
        self.tool, self.mock, self.dry_run = inner.tool, inner.mock, inner.dry_run
        self.compensate, self.simulated, self.backend = inner.compensate, inner.simulated, inner.backend

    @property
    def live(self) -> Any:
        states = self._tracker.states
        for (_, action_id), state in states.items():
            if state in ("DRY_RUN", "AWAITING_APPROVAL"):
                self._reads.append((action_id, state))
        return self._inner.live


def test_mock_and_dry_run_steps_never_get_the_live_implementation(make_harness: Any) -> None:
    """The live step is looked up only once the action is cleared for LIVE, never to run MOCK or DRY_RUN."""
    reads: list[tuple[str, str]] = []
    for dry_only in (True, False):
        h = make_harness(gate=approving(), dry_run_only=dry_only)
        h.load_phase21_plans([plan([act("w", agent="db", tool="database_write", confidence=0.95)])])
        log = CallLog()
        tracker = bind_recording(h.executors, h.registry, h.bus, log)
        spy = LiveAccessSpy(h.executors.for_tool("database_write"), tracker, reads)
        h.executors._bound["database_write"] = spy  # type: ignore[assignment]
        h.execute_orchestration_pipeline()
        if dry_only:
            assert reads == [] and [c["step"] for c in log.calls] == ["mock", "dry_run"]
    # The one read in the LIVE run happened after the approval, on its way to LIVE.
    assert reads == [("w", "AWAITING_APPROVAL")]


def test_a_binding_is_checked_against_its_contract(make_harness: Any) -> None:
    h = make_harness()
    step = RecordingStep("live", StateTracker(h.bus), CallLog())
    with pytest.raises(ContractError, match="reversible but its binding has no compensate"):
        h.executors.bind("form_fill", ToolBinding("form_fill", step, step, step))
    with pytest.raises(ContractError, match="irreversible or read-only but its binding has a compensate"):
        h.executors.bind("button_click", ToolBinding("button_click", step, step, step, compensate=step))
    with pytest.raises(ContractError, match="the binding is for 'form_fill'"):
        h.executors.bind("button_click", ToolBinding("form_fill", step, step, step))
    with pytest.raises(ContractError, match="unknown tool"):
        h.executors.bind("no_such_tool", ToolBinding("no_such_tool", step, step, step))


def test_unbound_tools_stay_simulated(make_harness: Any) -> None:
    h = make_harness()
    executors: ExecutorRegistry = h.executors
    assert executors.for_tool("form_fill").simulated and executors.all_simulated
    assert executors.real_backends() == {}
    step = RecordingStep("live", StateTracker(h.bus), CallLog())
    executors.bind("button_click", ToolBinding("button_click", step, step, step, backend="clicker"))
    assert not executors.all_simulated
    assert executors.real_backends() == {"clicker": ["button_click"]}


# -- after a crash --------------------------------------------------------------------------


def _runner(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    if crash_at:
        env["PHASE24_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "live_only_runner.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


CRASHES = ["before_intent:2", "after_intent:1", "after_intent:4", "after_effect:3", "after_transition:9"]


@pytest.mark.parametrize("crash_at", CRASHES)
def test_after_a_crash_the_live_step_runs_only_in_live_and_never_again_for_an_unknown_intent(
    tmp_path: Path, crash_at: str
) -> None:
    run_dir, before, after = tmp_path / "run", tmp_path / "calls_before.jsonl", tmp_path / "calls_after.jsonl"
    first = _runner(["run", str(CRASH_PLAN), str(run_dir), str(before)], crash_at)
    assert first.returncode == -signal.SIGKILL, first.stderr
    conn = sqlite3.connect(run_dir / JOURNAL_FILE)
    try:
        pending = {a for (a,) in conn.execute("SELECT action_id FROM intents WHERE status = 'PENDING'")}
    finally:
        conn.close()
    second = _runner(["resume", str(run_dir), str(after)])
    assert second.returncode in (0, 1), second.stderr

    calls = _calls(before) + _calls(after)
    assert calls, "the runner recorded nothing"
    for call in calls:
        if call["step"] in STEP_STATE:
            assert call["state"] == STEP_STATE[call["step"]], call
    live_after = Counter(c["action_id"] for c in _calls(after) if c["step"] == "live")
    assert not (set(live_after) & pending), "an intent left PENDING by the crash ran LIVE again"
    live_all = Counter(c["action_id"] for c in calls if c["step"] == "live" and c["action_id"] in EFFECTFUL)
    assert all(n == 1 for n in live_all.values()), live_all
    assert [c for c in _calls(after) if c["step"] == "mock"], "the resume ran the remaining plan"
