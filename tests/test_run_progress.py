"""`phase24 run`'s progress bar: drawn only on a terminal, counting plans and actions done
and the current rate; with output that is not a terminal, the output is unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES
from rich.console import Console

from console import run_progress
from console.cli import main
from console.run_progress import RunProgress
from core.events import Event
from tests.console_fixtures import build_harness, sample


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def headless_events() -> list[Event]:
    harness, events = build_harness([sample("approvals.json"), sample("conflicts.json")], None)
    harness.execute_orchestration_pipeline()
    return list(events)


def test_no_progress_unless_the_output_is_a_terminal() -> None:
    assert RunProgress.for_output(io.StringIO()) is None
    assert isinstance(RunProgress.for_output(FakeTerminal()), RunProgress)


def test_the_bar_counts_plans_actions_and_the_rate() -> None:
    events = headless_events()
    ticks = iter(float(i) for i in range(100_000))
    progress = RunProgress(Console(file=FakeTerminal(), force_terminal=True, width=120), clock=lambda: next(ticks))
    with progress:
        for event in events:
            progress(event)
    started = next(e for e in events if e.kind == "run_started")
    assert (progress.plans_done, progress.plans_total) == (2, 2)
    assert progress.actions_done == progress.actions_total == started.actions_total  # type: ignore[attr-defined]
    task = progress.progress.tasks[0]
    assert task.completed == task.total == started.actions_total  # type: ignore[attr-defined]
    assert task.fields["actions"] == f"actions {started.actions_total}/{started.actions_total}"  # type: ignore[attr-defined]
    assert task.fields["rate"].endswith("actions/s")


def test_the_rate_is_over_the_last_two_seconds() -> None:
    now = [0.0]
    progress = RunProgress(Console(file=FakeTerminal(), force_terminal=True), clock=lambda: now[0])
    for t, done in ((0.0, 0), (1.0, 100), (2.0, 200), (3.0, 210), (4.0, 220)):
        now[0] = t
        progress.actions_done = done
        rate = progress.rate(t)
    assert rate == pytest.approx(10.0)  # 200 -> 220 over the last 2 s, not 55 a second overall


def test_run_output_is_unchanged_when_not_a_terminal(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    plan = str(SAMPLES / "happy_path.json")
    assert main(["run", plan, "--out", str(tmp_path / "a"), "--retry-delay", "0"]) == 0
    with_progress_code = capsys.readouterr()
    # The same run with the progress bar taken out entirely.
    monkeypatch.setattr(run_progress.RunProgress, "for_output", classmethod(lambda cls, stream: None))
    assert main(["run", plan, "--out", str(tmp_path / "b"), "--retry-delay", "0"]) == 0
    without = capsys.readouterr()
    normalise = lambda text: text.replace(str(tmp_path / "a"), "OUT").replace(str(tmp_path / "b"), "OUT")  # noqa: E731
    run_ids = [json.loads((tmp_path / d / "orchestration_summary.json").read_text())["pipeline_id"] for d in "ab"]
    assert normalise(with_progress_code.out).replace(run_ids[0], "RUN") == normalise(without.out).replace(
        run_ids[1], "RUN"
    )
    assert with_progress_code.err == without.err == ""
    assert "actions/s" not in with_progress_code.out and "\x1b" not in with_progress_code.out


def test_run_on_a_terminal_draws_the_bar_then_the_summary(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(
        run_progress.RunProgress,
        "for_output",
        classmethod(lambda cls, stream: cls(Console(file=terminal, force_terminal=True, width=100))),
    )
    assert main(["run", str(SAMPLES / "happy_path.json"), "--out", str(tmp_path / "a"), "--retry-delay", "0"]) == 0
    drawn = terminal.getvalue()
    assert "actions 7/7" in drawn and "plans 1/1" in drawn and "actions/s" in drawn
    assert "Plans" in capsys.readouterr().out  # the summary still follows
