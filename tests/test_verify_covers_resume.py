"""`verify` covers everything `resume` trusts: intents, run state (the lock) and run.json.

A run is killed after its second LIVE outcome; then the run directory is edited by hand
the ways an attacker (or an accident) would: intents deleted or changed, the stored state
edited, the arguments in run.json changed. Each edit makes `phase24 verify` exit 3 and
`phase24 resume` refuse (exit 3) without running anything: no new effect appears.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from console.cli import main
from core.journal import JOURNAL_FILE, Journal, verify_journal
from tests.test_crash_safety import PLAN, _cli, _effects


def _killed_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all", "--retry-delay", "0"], "after_outcome:2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    return run_dir


def _sql(run_dir: Path, statement: str) -> None:
    conn = sqlite3.connect(run_dir / JOURNAL_FILE)
    try:
        with conn:
            conn.execute(statement)
    finally:
        conn.close()


def _delete_intents(run_dir: Path) -> None:
    _sql(run_dir, "DELETE FROM intents")


def _delete_one_intent(run_dir: Path) -> None:
    _sql(run_dir, "DELETE FROM intents WHERE rowid = (SELECT max(rowid) FROM intents)")


def _intent_done_to_failed(run_dir: Path) -> None:
    _sql(run_dir, "UPDATE intents SET status = 'FAILED' WHERE status = 'DONE'")


def _intent_hash_edited(run_dir: Path) -> None:
    _sql(
        run_dir,
        "UPDATE intents SET action_hash = "
        "(CASE substr(action_hash, 1, 1) WHEN '0' THEN '1' ELSE '0' END) || substr(action_hash, 2)",
    )


def _state_unlocked_by_hand(run_dir: Path) -> None:
    _sql(run_dir, "INSERT INTO state (key, value) VALUES ('locked', '')")


def _state_digest_edited(run_dir: Path) -> None:
    _sql(run_dir, "UPDATE state SET value = 'x' WHERE key = 'run_record_sha256'")


def _run_json_args_edited(run_dir: Path) -> None:
    path = run_dir / "run.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    for action in record["plans"][0]["actions"]:
        if action["tool"] == "database_write":
            action["args"] = {**action["args"], "edited": True}
    path.write_text(json.dumps(record), encoding="utf-8")


def _run_json_deleted(run_dir: Path) -> None:
    (run_dir / "run.json").unlink()


EDITS: dict[str, Callable[[Path], None]] = {
    "intents_deleted": _delete_intents,
    "one_intent_deleted": _delete_one_intent,
    "intent_status_edited": _intent_done_to_failed,
    "intent_hash_edited": _intent_hash_edited,
    "state_unlocked_by_hand": _state_unlocked_by_hand,
    "state_digest_edited": _state_digest_edited,
    "run_json_args_edited": _run_json_args_edited,
    "run_json_deleted": _run_json_deleted,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_hand_edit_fails_verify_and_resume_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    run_dir = _killed_run(tmp_path)
    assert main(["verify", str(run_dir)]) == 0
    capsys.readouterr()
    effects = _effects(run_dir)
    # Two outcomes on disk; another agent's effect may have happened too (its outcome was
    # waiting for the next group commit).
    assert sum(effects.values()) >= 2

    EDITS[edit](run_dir)

    assert main(["verify", str(run_dir)]) == 3
    out = capsys.readouterr().out
    assert "BROKEN" in out
    second = _cli(["resume", str(run_dir), "--approve-all"])
    assert second.returncode == 3, second.stderr
    assert "fails verification" in second.stderr and "Traceback" not in second.stderr
    assert _effects(run_dir) == effects  # nothing ran, LIVE or otherwise


def test_untouched_run_verifies_before_and_after_resume(tmp_path: Path) -> None:
    run_dir = _killed_run(tmp_path)
    assert verify_journal(run_dir).ok
    assert _cli(["resume", str(run_dir), "--approve-all"]).returncode in (0, 1)  # 1: an UNKNOWN outcome
    report = verify_journal(run_dir)
    assert report.ok, report.problem


def test_intents_and_state_are_chained_records(tmp_path: Path) -> None:
    with Journal.open(tmp_path, "run-1") as journal:
        journal.record_intent("h1", "p", "a", "agent", "database_write", None)
        journal.record_outcome("h1", True)
        journal.record_intent("h2", "p", "b", "agent", "database_write", None)
        journal.set_state("locked", "operator lock")
    with Journal.open(tmp_path, "run-1") as journal:
        assert [i["status"] for i in journal.mark_unknown_intents()] == ["UNKNOWN"]
    assert verify_journal(tmp_path).ok
    _sql(tmp_path, "UPDATE state SET value = '' WHERE key = 'locked'")
    report = verify_journal(tmp_path)
    assert not report.ok and "state" in report.problem
    _sql(tmp_path, "UPDATE state SET value = 'operator lock' WHERE key = 'locked'")
    assert verify_journal(tmp_path).ok
    _sql(tmp_path, "UPDATE intents SET status = 'PENDING' WHERE action_hash = 'h2'")
    report = verify_journal(tmp_path)
    assert not report.ok and "status" in report.problem


def test_killed_before_the_digest_was_recorded_resumes_and_then_verifies(tmp_path: Path) -> None:
    """Found by the crash sweep: a kill after run.json is written, before its digest is chained."""
    run_dir = _killed_run(tmp_path)
    _sql(run_dir, "DELETE FROM records WHERE seq >= 1")
    _sql(run_dir, "DELETE FROM state")
    _sql(run_dir, "DELETE FROM intents")
    _sql(run_dir, "UPDATE meta SET value = '0' WHERE key = 'head_seq'")
    _sql(run_dir, f"UPDATE meta SET value = '{'0' * 64}' WHERE key = 'head_hash'")
    (run_dir / "simulated_effects.jsonl").write_text("")
    assert verify_journal(run_dir).ok  # nothing started: nothing to cover yet
    assert _cli(["resume", str(run_dir), "--approve-all"]).returncode == 0
    report = verify_journal(run_dir)
    assert report.ok, report.problem
