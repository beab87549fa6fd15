"""Storage failures fail closed: the journal or an output file breaks -> the system locks.

Every test drives a real `Phase24Harness` on virtual time with an approve-all policy and a
plan whose actions all want LIVE, breaks storage part-way, and checks what must follow:
the system is locked, the summary names the error, a SystemLocked event says "storage
failure", nothing goes LIVE after the failure, and a failed commit is never retried.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from console.cli import main
from core.approval import ApprovalDecision, ApprovalRequest, PolicyGate, grant
from core.clock import ManualClock
from core.contracts import ExecutionMode, standard_registry
from core.errors import JournalError
from core.events import (
    ApprovalDecided,
    Event,
    RunStarted,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
)
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.journal import Journal, read_events
from core.outputs import OPERATOR_DECISIONS, STATE_TRANSITIONS, TOOL_EXECUTION_LOG, OutputWriter
from core.plans import ToolExecutionPlan

LIVE = ExecutionMode.LIVE
RUN_ID = "fail_closed_run"

# Effectful tools first (they need the journal before LIVE), then reversible/LOW ones.
TOOLS = ("database_write", "file_operation", "form_fill", "math_compute", "ghl_update_contact", "text_extract")


def live_plan(plan_id: str = "p1", tools: tuple[str, ...] = TOOLS) -> ToolExecutionPlan:
    """One agent, independent actions, all confident enough for LIVE (HIGH ones need approval)."""
    return ToolExecutionPlan.model_validate(
        {
            "plan_id": plan_id,
            "actions": [
                {"id": f"{plan_id}_w{i}", "agent": "a", "tool": tool, "confidence": 0.95, "args": {"i": i}}
                for i, tool in enumerate(tools)
            ],
        }
    )


def make_harness(out: Path, gate: Any = None, **config: Any) -> Phase24Harness:
    return Phase24Harness(
        Phase24ExecutionConfig(output_dir=out, retry_delay_range_s=(0.0, 0.0), **config),
        gate=gate if gate is not None else PolicyGate(approve_all=True),
        clock=ManualClock(),
        registry=standard_registry(),
        run_id=RUN_ID,
    )


def recorder(harness: Phase24Harness) -> list[Event]:
    events: list[Event] = []
    harness.bus.subscribe(events.append)
    return events


def of(events: list[Event], cls: type[Event]) -> list[Any]:
    return [e for e in events if type(e) is cls]


def final_states(events: list[Event]) -> dict[str, str]:
    states: dict[str, str] = {}
    for e in of(events, StateTransition):
        states[e.action_id] = e.to_state
    return states


def live_runs(events: list[Event]) -> list[ToolExecuted]:
    return [e for e in of(events, ToolExecuted) if e.mode is LIVE]


class BrokenDisk:
    """Stands in for the journal's sqlite connection: the `fail_at`-th COMMIT fails as on a full disk.

    Every statement is logged, so the test can check that nothing touches sqlite after the failure
    (apart from the ROLLBACK of the failed transaction itself).
    """

    def __init__(self, real: sqlite3.Connection, fail_at: int, on_fail: Callable[[], None]) -> None:
        self.real = real
        self.fail_at = fail_at
        self.on_fail = on_fail
        self.commits = 0
        self.failing_calls = 0
        self.after_failure: list[str] = []

    def _log(self, sql: str) -> None:
        if self.failing_calls:
            self.after_failure.append(sql.split()[0].upper())

    def execute(self, sql: str, *params: Any) -> Any:
        self._log(sql)
        if sql == "COMMIT" and not self.failing_calls:
            self.commits += 1
            if self.commits == self.fail_at:
                self.failing_calls += 1
                self.on_fail()
                raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *params)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._log(sql)
        return self.real.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def close(self) -> None:
        self.real.close()


def install_broken_disk(monkeypatch: pytest.MonkeyPatch, fail_at: int, on_fail: Callable[[], None]) -> list[BrokenDisk]:
    disks: list[BrokenDisk] = []
    original = Journal.open.__func__  # type: ignore[attr-defined]

    def open_broken(cls: type[Journal], *args: Any, **kwargs: Any) -> Journal:
        journal = original(cls, *args, **kwargs)
        disk = BrokenDisk(journal._conn, fail_at, on_fail)
        journal._conn = disk  # type: ignore[assignment]
        disks.append(disk)
        return journal

    monkeypatch.setattr(Journal, "open", classmethod(open_broken))
    return disks


# ------------------------------------------------------------------- (1) + (2)


@pytest.mark.parametrize(
    ("fail_at", "where"),
    [
        # Commit 1 records run.json's digest. A grant has no commit of its own: the
        # intent's commit carries the decision.
        (2, "recording the first intent"),
        (3, "recording the first outcome"),
        (4, "recording the second intent"),
        (5, "recording the second outcome"),
    ],
)
def test_journal_disk_full_locks_and_nothing_goes_live_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int, where: str
) -> None:
    harness = make_harness(tmp_path / "run")
    harness.load_phase21_plans([live_plan()])
    events = recorder(harness)
    failed_at: list[int] = []
    disks = install_broken_disk(monkeypatch, fail_at, lambda: failed_at.append(len(events)))

    summary = harness.execute_orchestration_pipeline()

    assert failed_at, f"the injected failure ({where}) was never reached"
    cut = failed_at[0]
    # (1) locked, the summary names the error, a storage-failure lock was published
    assert harness.controller.locked
    assert summary["locked"] is True
    assert summary["storage_error"] is not None
    assert "database or disk is full" in summary["storage_error"]
    locks = of(events, SystemLocked)
    assert len(locks) == 1
    assert "storage failure" in locks[0].reason and "database or disk is full" in locks[0].reason
    assert locks[0].by == "system"
    assert events.index(locks[0]) >= cut
    # no LIVE execution starts after the failure
    assert [e.action_id for e in live_runs(events[cut:])] == []
    # the actions that had not gone LIVE before the failure end LOCKED (held), none COMPLETED LIVE later
    states = final_states(events)
    went_live = {e.action_id for e in live_runs(events[:cut])}
    for action in harness.plans[0].actions:
        if action.id not in went_live:
            assert states[action.id] == "LOCKED", (action.id, states[action.id])
    assert len(went_live) == {2: 0, 3: 1, 4: 1, 5: 2}[fail_at]
    # (2) exactly one failing call, and nothing but the failed transaction's ROLLBACK touched sqlite after it
    [disk] = disks
    assert disk.failing_calls == 1
    assert disk.after_failure == ["ROLLBACK"]
    assert disk.commits == fail_at


def test_failed_journal_refuses_every_write_without_touching_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness(tmp_path / "run")
    harness.load_phase21_plans([live_plan()])
    disks = install_broken_disk(monkeypatch, 2, lambda: None)
    harness.execute_orchestration_pipeline()
    [disk] = disks
    journal = harness.journal
    assert journal is not None and journal.failed
    assert "database or disk is full" in (journal.failure or "")
    before = list(disk.after_failure)
    for write in (
        journal.commit,
        lambda: journal.record_intent("h", "p", "a", "agent", "database_write", None),
        lambda: journal.record_outcome("h", True),
        lambda: journal.set_state("locked", ""),
        journal.mark_unknown_intents,
    ):
        with pytest.raises(JournalError):
            write()
    assert disk.after_failure == before == ["ROLLBACK"]


def test_record_intent_error_is_named_in_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Journal.record_intent
    calls = {"n": 0}

    def failing_record_intent(self: Journal, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= 2:
            raise JournalError("intents table unwritable")
        original(self, *args)

    monkeypatch.setattr(Journal, "record_intent", failing_record_intent)
    harness = make_harness(tmp_path / "run")
    harness.load_phase21_plans([live_plan()])
    events = recorder(harness)
    summary = harness.execute_orchestration_pipeline()
    # locked, published, nothing LIVE after the failing intent
    assert harness.controller.locked
    assert any("intents table unwritable" in e.reason for e in of(events, SystemLocked))
    assert [e.action_id for e in live_runs(events)] == ["p1_w0"]
    # and the summary names the storage error (it did not, before the controller reported ledger errors)
    assert summary["storage_error"] is not None and "intents table unwritable" in summary["storage_error"]


# ------------------------------------------------------------------------- (3)


def enospc_line(monkeypatch: pytest.MonkeyPatch, names: set[str], after: int) -> dict[str, int]:
    """Make OutputWriter._line raise ENOSPC for files in `names` after `after` successful writes."""
    original = OutputWriter._line
    count = {"ok": 0, "failed": 0}

    def line(self: OutputWriter, name: str, record: dict[str, Any]) -> None:
        if name in names:
            if count["ok"] >= after:
                count["failed"] += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            count["ok"] += 1
        original(self, name, record)

    monkeypatch.setattr(OutputWriter, "_line", line)
    return count


def test_output_writer_enospc_locks_the_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    harness = make_harness(out)
    harness.load_phase21_plans([live_plan()])
    events = recorder(harness)
    # the event-driven outputs fail after two lines; the per-plan result line still works
    count = enospc_line(monkeypatch, {STATE_TRANSITIONS, OPERATOR_DECISIONS}, after=2)

    summary = harness.execute_orchestration_pipeline()

    assert count["failed"] >= 1
    assert harness.controller.locked and summary["locked"] is True
    assert summary["storage_error"] is not None and "No space left on device" in summary["storage_error"]
    [lock] = of(events, SystemLocked)
    assert "storage failure" in lock.reason and "No space left on device" in lock.reason
    cut = events.index(lock)
    # the lock came with the second state transition (the third line): MOCK and DRY_RUN of the first
    # action ran, nothing climbed after it
    assert [e.mode for e in of(events[cut:], ToolExecuted) if e.mode is not ExecutionMode.MOCK] == []
    assert live_runs(events) == []
    assert set(final_states(events).values()) == {"LOCKED"}
    # the lock is durable: the journal (which did not fail) recorded it
    with Journal.open(out, RUN_ID) as journal:
        assert "No space left on device" in (journal.get_state("locked") or "")


def test_output_writer_enospc_everywhere_still_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = make_harness(tmp_path / "run")
    harness.load_phase21_plans([live_plan()])
    events = recorder(harness)
    enospc_line(monkeypatch, {STATE_TRANSITIONS, OPERATOR_DECISIONS, TOOL_EXECUTION_LOG}, after=0)

    try:
        harness.execute_orchestration_pipeline()
    except OSError as exc:  # the per-plan result line is written directly, not through the bus
        assert exc.errno == errno.ENOSPC
    assert harness.controller.locked
    assert harness.summary["locked"] is True
    assert "No space left on device" in (harness.summary["storage_error"] or "")
    assert any("storage failure" in e.reason for e in of(events, SystemLocked))
    assert live_runs(events) == []
    # the first line (MOCK -> DRY_RUN of the first action) failed: every later action runs MOCK only
    later = [e for e in of(events, ToolExecuted) if e.action_id != "p1_w0"]
    assert [e.mode for e in later] == [ExecutionMode.MOCK] * (len(TOOLS) - 1)
    assert set(final_states(events).values()) == {"LOCKED"}


def test_storage_failure_publishing_the_live_transition_stops_the_live_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = OutputWriter._line

    def line(self: OutputWriter, name: str, record: dict[str, Any] | str) -> None:
        # Transition lines arrive pre-encoded (the event's own JSON).
        if (json.loads(record) if isinstance(record, str) else record).get("to_state") == "LIVE":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, name, record)

    monkeypatch.setattr(OutputWriter, "_line", line)
    harness = make_harness(tmp_path / "run")
    harness.load_phase21_plans([live_plan(tools=("database_write", "math_compute"))])
    events = recorder(harness)
    harness.execute_orchestration_pipeline()
    [lock] = of(events, SystemLocked)
    assert "No space left on device" in lock.reason
    assert harness.controller.locked
    assert live_runs(events[events.index(lock) :]) == []
    effects = (tmp_path / "run" / "simulated_effects.jsonl").read_text(encoding="utf-8")
    assert effects == ""


# ------------------------------------------------------------------------- (4)


def write_plan_file(path: Path) -> Path:
    path.write_text(live_plan().model_dump_json(exclude={"agent_assignments", "execution_order", "confidence_scores"}))
    return path


def test_cli_output_dir_below_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = write_plan_file(tmp_path / "plan.json")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "out"
    code = main(["run", str(plan_file), "--out", str(out), "--approve-all"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("phase24: error: ") and err.count("\n") == 1
    assert str(out) in err or str(blocker) in err
    assert "Not a directory" in err or "File exists" in err
    assert blocker.read_text() == "not a directory"


def test_cli_output_dir_is_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = write_plan_file(tmp_path / "plan.json")
    out = tmp_path / "out"
    out.write_text("x")
    code = main(["run", str(plan_file), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("phase24: error: ") and "Traceback" not in err
    assert str(out) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_cli_output_dir_in_a_read_only_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = write_plan_file(tmp_path / "plan.json")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code = main(["run", str(plan_file), "--out", str(parent / "out")])
    finally:
        parent.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("phase24: error: ") and "Traceback" not in err
    assert "Permission denied" in err


# ------------------------------------------------------------------------- (5)


class ForgingGate:
    """Answers every request with an approval that is wrong in one way."""

    def __init__(self, how: str, clock: ManualClock | None = None) -> None:
        self.how = how
        self.clock = clock
        self.first: ApprovalDecision | None = None

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        if self.how == "hash":
            return ApprovalDecision(
                request_id=request.request_id,
                action_hash="0" * 64,
                approved=True,
                decided_by="forger",
                reason="looks fine",
            )
        if self.how == "other-mode-hash":
            from core.approval import canonical_action_hash

            return ApprovalDecision(
                request_id=request.request_id,
                action_hash=canonical_action_hash(
                    request.agent, request.tool, request.args, request.plan_id, ExecutionMode.DRY_RUN
                ),
                approved=True,
                decided_by="forger",
            )
        if self.how == "replay":
            if self.first is None:
                self.first = grant(request, "operator")
                return self.first
            return self.first  # the first request's approval, again
        if self.how == "late":
            assert self.clock is not None
            self.clock.advance(request.timeout_s + 1)
            return grant(request, "operator")
        raise AssertionError(self.how)

    def cancel_pending(self, reason: str, by: str = "lock") -> None:
        """Nothing waits."""


@pytest.mark.parametrize(
    ("how", "fragment"),
    [("hash", "hash"), ("other-mode-hash", "hash"), ("replay", "another request"), ("late", "expired")],
)
def test_forged_approvals_are_refused(tmp_path: Path, how: str, fragment: str) -> None:
    clock = ManualClock()
    gate = ForgingGate(how, clock)
    harness = Phase24Harness(
        Phase24ExecutionConfig(output_dir=tmp_path / "run", retry_delay_range_s=(0.0, 0.0)),
        gate=gate,
        clock=clock,
        run_id=RUN_ID,
    )
    tools = ("database_write", "file_operation", "math_compute")
    harness.load_phase21_plans([live_plan(tools=tools)])
    events = recorder(harness)
    harness.execute_orchestration_pipeline()

    decided = of(events, ApprovalDecided)
    assert len(decided) == 2
    refused = decided if how != "replay" else decided[1:]
    for d in refused:
        assert d.approved is False
        assert fragment in d.reason and d.reason.startswith("refused: ")
    states = final_states(events)
    live = {e.action_id for e in live_runs(events)}
    for d in refused:
        assert states[d.action_id] == "LOCKED"
        assert d.action_id not in live
    assert "p1_w2" in live  # math_compute needs no approval and is not affected
    if how == "replay":
        assert decided[0].approved is True and live == {"p1_w0", "p1_w2"}
    else:
        assert live == {"p1_w2"}


# ------------------------------------------------------------------------- (6)


def test_lock_survives_restart_until_unlock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = make_harness(out)
    first.load_phase21_plans([live_plan("p1"), live_plan("p2")])
    events1 = recorder(first)

    def lock_then_stop(event: Event) -> None:
        if type(event) is ToolExecuted and not of(events1, SystemLocked):
            first.lock("operator lock before the crash")
        if event.kind == "plan_finished":
            first.stop("simulated interruption")

    first.bus.subscribe(lock_then_stop)
    summary1 = first.execute_orchestration_pipeline()
    assert summary1["locked"] is True and summary1["interrupted"] is True
    assert [s["plan_id"] for s in summary1["plans"]] == ["p1"]
    assert live_runs(events1) == []

    resumed = Phase24Harness.from_interrupted_run(out, gate=PolicyGate(approve_all=True), clock=ManualClock())
    assert [p.plan_id for p in resumed.plans] == ["p2"]
    events2 = recorder(resumed)
    locked_at_start: list[bool] = []
    reasons: list[str] = []
    unlock_after = 3  # MOCK runs while locked, then the operator unlocks

    def observe(event: Event) -> None:
        if type(event) is RunStarted:
            locked_at_start.append(resumed.controller.locked)
            reasons.append(resumed.controller.lock_reason)
        if type(event) is ToolExecuted and len(of(events2, ToolExecuted)) == unlock_after:
            assert resumed.controller.locked
            resumed.unlock("operator unlock after restart")

    resumed.bus.subscribe(observe)
    summary2 = resumed.execute_orchestration_pipeline()

    assert locked_at_start == [True]
    assert "operator lock before the crash" in reasons[0] and "survived a restart" in reasons[0]
    unlocks = of(events2, SystemUnlocked)
    assert len(unlocks) == 1 and of(events2, SystemLocked) == []
    cut = events2.index(unlocks[0])
    before = of(events2[:cut], ToolExecuted)
    assert len(before) == unlock_after
    assert {e.mode for e in before} == {ExecutionMode.MOCK}
    states = final_states(events2)
    assert [states[f"p2_w{i}"] for i in range(2)] == ["LOCKED", "LOCKED"]
    # after the unlock, actions climb again (the third action's MOCK triggered the unlock)
    assert {e.action_id for e in live_runs(events2[cut:])} == {f"p2_w{i}" for i in range(2, len(TOOLS))}
    assert summary2["locked"] is False
    with Journal.open(out, RUN_ID) as journal:
        assert journal.get_state("locked") == ""
    kinds = [e.kind for e in read_events(out)]
    assert kinds.count("system_locked") == 1 and kinds.count("system_unlocked") == 1


def test_resumed_harness_is_locked_before_its_run_starts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = make_harness(out)
    first.load_phase21_plans([live_plan("p1"), live_plan("p2")])

    def lock_then_stop(event: Event) -> None:
        if event.kind == "plan_finished":
            first.lock("operator lock")
            first.stop("simulated interruption")

    first.bus.subscribe(lock_then_stop)
    first.execute_orchestration_pipeline()
    resumed = Phase24Harness.from_interrupted_run(out, gate=PolicyGate(approve_all=True), clock=ManualClock())
    assert resumed.controller.locked
