"""SIGKILL the runner at every point between intent, effect and outcome, then resume.

Each case runs the real CLI in a subprocess with PHASE24_CRASH_AT set (core/faults.py),
checks that it died by SIGKILL, resumes the run, and then checks the promises: no
irreversible effect happened twice, every intent without an outcome is UNKNOWN (and was
not retried), the journal verifies and every JSONL file parses.
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

from core.journal import JOURNAL_FILE, verify_journal
from core.jsonl import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "tests" / "data" / "crash_plan.json"
EFFECTFUL_LIVE = 6  # fill, click, create, update, write, file (all approved by --approve-all)
IRREVERSIBLE = {"click", "create", "update", "write", "file"}

CASES = [
    (point, n)
    for point in ("before_intent", "after_intent", "after_effect", "after_outcome")
    for n in range(1, EFFECTFUL_LIVE + 1)
] + [("after_transition", n) for n in (1, 7, 15, 22)]


def _cli(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    if crash_at:
        env["PHASE24_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
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
    path = run_dir / "simulated_effects.jsonl"
    if not path.exists():
        return Counter()
    lines = path.read_text(encoding="utf-8").splitlines()
    return Counter(json.loads(line)["action_id"] for line in lines if json.loads(line)["kind"] == "effect")


@pytest.mark.parametrize(("point", "n"), CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_sigkill_then_resume_never_repeats_an_irreversible_effect(tmp_path: Path, point: str, n: int) -> None:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all", "--retry-delay", "0"], f"{point}:{n}")
    assert first.returncode == -signal.SIGKILL, first.stderr
    before = _intents(run_dir)
    pending_at_crash = {a for a, s in before.items() if s == "PENDING"}
    effects_at_crash = _effects(run_dir)

    second = _cli(["resume", str(run_dir), "--approve-all"])
    assert second.returncode in (0, 1), second.stderr
    assert "Traceback" not in second.stderr

    effects = _effects(run_dir)
    assert all(count <= 1 for count in effects.values()), effects
    after = _intents(run_dir)
    assert "PENDING" not in after.values()
    for action_id in pending_at_crash:
        assert after[action_id] == "UNKNOWN"
        assert effects[action_id] == effects_at_crash[action_id], "an UNKNOWN intent was retried"
    # Every effectful LIVE action is accounted for exactly once: done before or after the crash.
    for action_id in IRREVERSIBLE:
        assert effects[action_id] <= 1
        if after.get(action_id) == "DONE":
            assert effects[action_id] == 1
    if point == "after_intent":
        # The action killed right after its durable intent never had its effect. Other agents'
        # intents may be PENDING too (their outcomes wait for the next group commit): those
        # may have had their effect, and are UNKNOWN now (checked above), never retried.
        assert pending_at_crash, "the intent the run died after is not on disk"
        assert any(effects_at_crash[a] == 0 for a in pending_at_crash)

    report = verify_journal(run_dir)
    assert report.ok, report.problem
    for path in run_dir.glob("*.jsonl"):
        records = read_jsonl(path)
        assert records.torn_tail_bytes == 0, f"{path.name} still has a torn tail after resume"
    summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["resumed"] is True
    assert sorted(i["action_id"] for i in summary["unknown_outcomes"]) == sorted(
        a for a, s in after.items() if s == "UNKNOWN"
    )


def test_crash_after_outcome_is_not_repeated_and_resume_twice_is_stable(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all", "--retry-delay", "0"], "after_outcome:2")
    assert first.returncode == -signal.SIGKILL
    at_crash = _intents(run_dir)
    done_before = {a for a, s in at_crash.items() if s == "DONE"}
    assert len(done_before) == 2
    # Agents run concurrently and share commits: another agent's intent may have been on disk
    # without its outcome when the run died. Resume marks it UNKNOWN (exit 1) and never reruns it.
    pending_at_crash = {a for a, s in at_crash.items() if s == "PENDING"}
    resumed = _cli(["resume", str(run_dir), "--approve-all"])
    assert resumed.returncode == (1 if pending_at_crash else 0), resumed.stdout + resumed.stderr
    after = _intents(run_dir)
    assert {a for a, s in after.items() if s == "UNKNOWN"} == pending_at_crash
    effects = _effects(run_dir)
    assert all(effects[a] == 1 for a in done_before)
    assert all(count == 1 for count in effects.values())
    if not pending_at_crash:
        assert set(effects) == {"fill", *IRREVERSIBLE}
    # (With an UNKNOWN the plan fails closed: its later actions are not run, let alone twice.)
    # A finished run resumed again runs nothing and changes nothing.
    again = _cli(["resume", str(run_dir), "--approve-all"])
    assert again.returncode == resumed.returncode, again.stderr
    assert _effects(run_dir) == effects
    assert verify_journal(run_dir).ok
