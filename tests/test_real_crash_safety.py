"""The crash guarantees against the real local backends, not only the simulated world.

Each case runs tests/real_backends_runner.py (the in-process API with an approving gate) on
the files and SQLite backends with PHASE24_CRASH_AT set, checks that it died by SIGKILL,
resumes (which binds the executors the run recorded), and counts the real effects: lines
appended to a file and rows inserted in the database. No effect happens twice; an intent
left without an outcome is UNKNOWN and its action is never run again.
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

import pytest

from console.cli import main
from core.journal import JOURNAL_FILE, verify_journal

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "tests" / "data" / "real_crash_plan.json"
CONFIG = ROOT / "tests" / "data" / "real_crash.toml"
EFFECTFUL_LIVE = 7
COUNTED = {"append1", "append2", "row1", "row2", "total"}

CASES = [
    (point, n) for point in ("before_intent", "after_intent", "after_effect", "after_outcome") for n in (1, 4, 7)
] + [("after_transition", n) for n in (6, 20)]


def _runner(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    if crash_at:
        env["PHASE24_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "real_backends_runner.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _intents(run_dir: Path) -> dict[str, str]:
    conn = sqlite3.connect(run_dir / JOURNAL_FILE)
    try:
        return dict(conn.execute("SELECT action_id, status FROM intents").fetchall())
    finally:
        conn.close()


def _effects(run_dir: Path) -> Counter[str]:
    """Real effects: lines appended to effects.log and rows in the effects table."""
    world = run_dir / "world"
    log = world / "files" / "effects.log"
    counted: Counter[str] = Counter(log.read_text().splitlines() if log.exists() else [])
    db = world / "db.sqlite3"
    if db.exists():
        conn = sqlite3.connect(db)
        try:
            tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "effects" in tables:
                counted.update(a for (a,) in conn.execute("SELECT action_id FROM effects"))
        finally:
            conn.close()
    return counted


@pytest.mark.parametrize(("point", "n"), CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_sigkill_then_resume_never_repeats_a_real_effect(tmp_path: Path, point: str, n: int) -> None:
    run_dir = tmp_path / "run"
    first = _runner(["run", str(PLAN), str(CONFIG), str(run_dir)], f"{point}:{n}")
    assert first.returncode == -signal.SIGKILL, first.stderr
    pending_at_crash = {a for a, s in _intents(run_dir).items() if s == "PENDING"}
    effects_at_crash = _effects(run_dir)

    second = _runner(["resume", str(run_dir)])
    assert second.returncode in (0, 1), second.stderr
    assert "Traceback" not in second.stderr

    effects = _effects(run_dir)
    assert all(count <= 1 for count in effects.values()), effects
    every = _intents(run_dir)
    assert "PENDING" not in every.values()
    # Compensations are journalled like LIVE effects (`<action>:undo`): an UNKNOWN outcome fails
    # the resumed plan, which then undoes what it can (the rollback stack includes work done
    # before the crash).
    undone = {k.removesuffix(":undo") for k, v in every.items() if k.endswith(":undo") and v == "DONE"}
    after = {k: v for k, v in every.items() if not k.endswith(":undo")}
    if "UNKNOWN" in after.values():
        # An outcome the crash left UNKNOWN fails the resumed plan: nothing new starts after it.
        assert len(after) <= EFFECTFUL_LIVE
    else:
        assert len(after) == EFFECTFUL_LIVE, "every effectful action reached LIVE once, before or after the crash"
    for action_id in pending_at_crash:
        assert after[action_id] == "UNKNOWN"
        if action_id not in undone:
            assert effects[action_id] == effects_at_crash[action_id], "an UNKNOWN intent was run again"
    for action_id in COUNTED:
        if after.get(action_id) == "DONE" and action_id not in undone:
            assert effects[action_id] == 1, f"{action_id} is DONE but its effect is missing"
    if point in ("after_intent", "after_effect"):
        assert pending_at_crash, "the crash left an intent without an outcome"
    assert verify_journal(run_dir).ok
    summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["resumed"] is True and summary["simulated"] is False
    assert sorted(i["action_id"] for i in summary["unknown_outcomes"]) == sorted(
        a for a, s in after.items() if s == "UNKNOWN"
    )


def test_resume_with_real_executors_refuses_approve_all_and_denies_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert _runner(["run", str(PLAN), str(CONFIG), str(run_dir)], "after_intent:3").returncode == -signal.SIGKILL
    effects_at_crash = _effects(run_dir)
    before = _intents(run_dir)
    assert main(["resume", str(run_dir), "--approve-all"]) == 2
    err = capsys.readouterr().err
    assert "--approve-all is refused" in err and "Traceback" not in err
    assert _effects(run_dir) == effects_at_crash, "refused before anything ran"

    assert main(["resume", str(run_dir)]) == 1  # an UNKNOWN outcome: exit 1
    out = capsys.readouterr().out
    assert "UNKNOWN outcome, not retried" in out
    after = _intents(run_dir)
    assert {a for a, s in after.items() if s == "UNKNOWN"} == {a for a, s in before.items() if s == "PENDING"}
    # HIGH-risk steps not yet run were denied (no human): only LOW/MEDIUM ones went LIVE after the crash.
    # (and the UNKNOWN fails the plan, which undoes the reversible work done before the crash)
    # Which actions were done before the kill depends on how the agents' commits interleaved:
    # any of those may be undone, nothing else.
    undone_before = {f"{a}:undo" for a, s in before.items() if s == "DONE" and ":" not in a}
    assert set(after) - set(before) <= {"note", "fill", "total", "note:undo", "fill:undo"} | undone_before
    assert all(count <= 1 for count in _effects(run_dir).values())
    results = [json.loads(line) for line in (run_dir / "tool_execution_log.jsonl").read_text().splitlines()]
    assert {r["simulated"] for line in results for r in line["result"]["tool_results"]} == {False}
