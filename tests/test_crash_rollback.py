"""After a SIGKILL and `resume`, a plan that then fails undoes what it did before the crash.

`sample_plans/rollback.json` (latencies set to 0, nothing else changed) is killed at every
crash point it reaches (core/faults.py: around each of its four LIVE intents, effects and
outcomes, around each of its three compensations, and after each of its 17 transitions),
then resumed. Actions done LIVE before the crash belong on the resumed run's rollback
stack: each reversible effect is compensated exactly once in all, before or after the
crash, or its compensation is UNKNOWN (never retried, reported).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.crash_sweep import _effects, _intents, check_run, fork_cli

ROOT = Path(__file__).resolve().parent.parent
ROLLBACK_PLAN = json.loads((ROOT / "sample_plans" / "rollback.json").read_text(encoding="utf-8"))
LIVE_EFFECTS = 4  # fill_name, fill_card, note_total, submit (whose LIVE run fails)
COMPENSATIONS = 3
TRANSITIONS = 17

CASES = (
    [(point, n) for point in ("before_intent", "after_intent", "after_effect", "after_outcome") for n in range(1, 5)]
    + [(point, n) for point in ("after_compensation_intent", "after_compensation") for n in range(1, 4)]
    + [("after_transition", n) for n in range(1, TRANSITIONS + 1)]
)


def _fast_plan(tmp_path: Path) -> Path:
    plan: dict[str, Any] = json.loads(json.dumps(ROLLBACK_PLAN))
    for action in plan["actions"]:
        action.setdefault("simulate", {})["latency_ms"] = 0
    path = tmp_path / "rollback.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path


def _crash_and_resume(tmp_path: Path, crash_at: str) -> tuple[Path, set[str], Any]:
    plan = _fast_plan(tmp_path)
    run_dir = tmp_path / "run"
    log = tmp_path / "log.txt"
    code = fork_cli(["run", str(plan), "--out", str(run_dir), "--retry-delay", "0"], log, crash_at=crash_at)
    assert code == -signal.SIGKILL, (crash_at, code, log.read_text())
    pending = {a for a, s in _intents(run_dir).items() if s == "PENDING"}
    before = _effects(run_dir)
    code = fork_cli(["resume", str(run_dir)], log)
    assert code in (0, 1), log.read_text()
    assert "Traceback" not in log.read_text()
    return run_dir, pending, before


@pytest.mark.parametrize(("point", "n"), CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_rollback_after_crash_compensates_what_was_done_before_it(tmp_path: Path, point: str, n: int) -> None:
    run_dir, pending, _ = _crash_and_resume(tmp_path, f"{point}:{n}")
    problems = check_run(run_dir, pending, [ROLLBACK_PLAN], must_fail=("rollback",))
    assert not problems, problems
    effects = _effects(run_dir)
    intents = _intents(run_dir)
    # Everything that was done LIVE and is reversible was undone (or its undo is UNKNOWN).
    for action_id in ("fill_name", "fill_card", "note_total"):
        if intents.get(action_id) == "DONE":
            undo = intents.get(f"{action_id}:undo")
            assert undo in ("DONE", "UNKNOWN"), (action_id, undo)
            assert (
                effects[("compensation", action_id)] == 1
                if undo == "DONE"
                else effects[("compensation", action_id)] <= 1
            )
    assert effects[("effect", "submit")] == 0  # its LIVE run always fails; never an effect


def test_killed_after_third_outcome_then_resumed_undoes_all_three(tmp_path: Path) -> None:
    """The case from the report: 3 effects before the crash, then 3 compensations, undone listed."""
    run_dir, _, before = _crash_and_resume(tmp_path, "after_outcome:3")
    assert sum(n for (kind, _), n in before.items() if kind == "effect") == 3
    effects = _effects(run_dir)
    assert {a for (kind, a), n in effects.items() if kind == "compensation" and n == 1} == {
        "fill_name",
        "fill_card",
        "note_total",
    }
    lines = [json.loads(line) for line in (run_dir / "rollback_events.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["undone"] == ["note_total", "fill_card", "fill_name"]
    summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["total_rollbacks"] == 3
    assert [p["status"] for p in summary["plans"]] == ["FAILED"]
