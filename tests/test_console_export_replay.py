"""`ctrl+s` export and `phase24 replay`: files where the operator is told they are, and a
replay that plays a journal read-only, with pause and step."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from console.app import ConsoleGate, make_app
from console.cli import main
from console.replay import ReplayConsole
from console.row_log import RowLog
from core.events import StateTransition
from core.journal import read_events
from core.lock_state import SystemLockState
from tests.console_fixtures import FIXED_START, SIZE, build_harness, sample, wait_until


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    harness, _ = build_harness([sample("approvals.json"), sample("conflicts.json")], out, run_id="replayed")
    harness.execute_orchestration_pipeline()
    return out


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


async def test_ctrl_s_saves_the_screen_and_the_filtered_rows_into_the_run_dir(finished_run: Path) -> None:
    events = list(read_events(finished_run))
    harness, _ = build_harness([sample("happy_path.json")], None, run_id="export", output_dir=finished_run)
    app = make_app(harness, ConsoleGate(), autostart=False, now=lambda: FIXED_START + timedelta(seconds=30))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        await pilot.press("1")
        app.query_one("#transitions-log", RowLog).set_filter("LOCKED")
        await pilot.press("ctrl+s")
        await pilot.pause()
        notes = [n.message for n in app._notifications]
    folder = finished_run / "console_exports"
    svgs, rows = sorted(folder.glob("*.svg")), sorted(folder.glob("*.jsonl"))
    assert len(svgs) == 1 and len(rows) == 1
    assert svgs[0].read_text().startswith("<svg")
    saved = [json.loads(line) for line in rows[0].read_text().splitlines()]
    expected = [e for e in events if isinstance(e, StateTransition) and "LOCKED" in e.to_state + e.reason.upper()]
    assert saved and len(saved) == len(expected)
    assert all(row["kind"] == "state_transition" for row in saved)
    assert any(str(svgs[0]) in note and str(rows[0]) in note for note in notes)  # it says where


async def test_replay_plays_the_whole_journal_read_only(finished_run: Path) -> None:
    before = digest(finished_run)
    events = list(read_events(finished_run))
    app = ReplayConsole(events, finished_run, speed=1_000_000)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.position == len(events), "the replay to reach the end")
        await pilot.pause(0.3)
        assert app.view.finished and app.view.run_status == "PARTIAL"
        shown = len(app.query_one("#transitions-log", RowLog).lines)
        assert shown == sum(isinstance(e, StateTransition) for e in events)
        # The operator's commands reach nothing: no harness, no lock taken anywhere.
        await pilot.press("l")
        await pilot.pause()
        assert not hasattr(app, "harness")
        assert not app.view.locked
        bar = str(app.query_one("#replay-bar", Static).render())
        assert f"event {len(events)}/{len(events)}" in bar and "end of the journal" in bar
        await pilot.press("q")
    assert digest(finished_run) == before
    assert not SystemLockState().read().locked  # this test's own state directory (conftest)


async def test_replay_pauses_and_steps_one_event_at_a_time(finished_run: Path) -> None:
    events = list(read_events(finished_run))
    app = ReplayConsole(events, finished_run, speed=1.0, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert app.position == 0
        await pilot.press("period", "period", "period")
        assert app.position == 3
        assert "PAUSED" in str(app.query_one("#replay-bar", Static).render())
        await pilot.press("p")
        app.speed = 1_000_000
        app._wake.set()
        await wait_until(pilot, lambda: app.position == len(events), "the replay to play on")


def test_replay_of_a_missing_run_is_a_one_line_error(tmp_path: Path, capsys: Any) -> None:
    assert main(["replay", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no journal here" in err


def test_replay_refuses_a_bad_speed(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(tmp_path), "--speed", "nan"])
    assert exit_info.value.code == 2
    assert "--speed" in capsys.readouterr().err
