"""Noticing: health explains itself, an approval request rings and notifies (when enabled),
and keys are remappable from a keys file that is refused as a whole when unsafe."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from console.app import ConsoleGate, OperatorConsole, make_app
from console.cli import main
from console.health_explain import HealthExplained, explain
from console.keymap import KeymapError, default_keys_path, load_keymap
from console.modals import HelpScreen
from console.notice import ApprovalNotice
from console.replay import ReplayConsole
from console.run_view import RunView
from core.approval import PolicyGate
from core.events import Event, HealthUpdated
from tests.console_fixtures import (
    FIXED_START,
    SIZE,
    action,
    answer_all,
    build_harness,
    console_app,
    core_done,
    running,
    sample,
    wait_exit,
    wait_modal,
    wait_until,
)


def degraded_events() -> list[Event]:
    actions = []
    for i in range(12):
        agent = f"agent_{i % 3}"
        if i % 3 == 0:
            simulate = {"latency_ms": 40, "fail_in": ["LIVE"]}
            actions.append(action(f"w{i:02d}", agent, "database_write", 0.95, resource="db:orders", simulate=simulate))
        else:
            simulate = {"latency_ms": 30, "fail_in": ["MOCK"]}
            actions.append(action(f"m{i:02d}", agent, "math_compute", 0.95, simulate=simulate))
    harness, events = build_harness(
        [{"plan_id": "degraded", "actions": actions}],
        None,
        gate=PolicyGate(approve_all=True),
        health_every=2,
        health_min_interval_s=0,
        enable_rollback_on_failure=False,
    )
    harness.execute_orchestration_pipeline()
    return list(events)


def plain(renderable: Any) -> str:
    console = Console(width=160, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# -- health explains itself ---------------------------------------------------------------


def test_health_explanation_adds_up_and_names_the_rules_that_fired() -> None:
    view = RunView()
    view.apply(degraded_events())
    text = plain(explain(view))
    assert view.health_score is not None and view.anomalies
    # Each scored metric's points and what it lost: success 18.18% x 0.30 = 5.45, 24.55 lost.
    row = next(line for line in text.splitlines() if line.startswith("tool_success_rate"))
    assert row.split()[1:5] == ["18.18%", "0.30", "5.45", "24.55"]
    assert "< 50%: repeated_failures (sev 8)" in text
    assert "> 0.4: unsafe_escalation (sev 7)" in text
    for anomaly in view.anomalies:
        assert f"▲ {anomaly['anomaly_type']}" in text
    assert "rule tool_success_rate < 50% fired" in text
    assert "not in the score" in text  # latency and the LIVE ratio are shown but not scored
    assert "↓" in text or "↑" in text  # trends


def test_health_explanation_sums_to_the_score() -> None:
    from console.health_explain import fraction
    from core.monitor import SCORE_TERMS

    events = degraded_events()
    last = [e for e in events if isinstance(e, HealthUpdated)][-1]
    total = 0.0
    for metric, weight, worse in SCORE_TERMS:
        f = min(1.0, max(0.0, fraction(metric, last.metrics[metric])))
        total += 100 * weight * ((1 - f) if worse else f)
    assert total == pytest.approx(last.health_score, abs=0.1)


@pytest.fixture
def degraded() -> list[Event]:
    return degraded_events()


async def test_enter_on_the_health_pane_explains_it(degraded: list[Event]) -> None:
    events = degraded
    harness, _ = build_harness([sample("happy_path.json")], None)
    app = make_app(harness, ConsoleGate(), autostart=False, now=lambda: FIXED_START + timedelta(seconds=5))
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.press("4", "enter")
        await pilot.pause()
        assert isinstance(app.screen, HealthExplained)
        shown = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")
        assert "repeated_failures" in shown and "points" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HealthExplained)


# -- bell and desktop notification ----------------------------------------------------------


class Spawned(list[Sequence[str]]):
    def __call__(self, argv: Sequence[str]) -> None:
        self.append(list(argv))


async def test_an_approval_request_rings_and_notifies_when_enabled(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("approvals.json")], tmp_path)
    spawned = Spawned()
    app.notice = ApprovalNotice(bell=True, desktop=True, which=lambda name: f"/usr/bin/{name}", spawn=spawned)
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        assert rings and spawned
        argv = spawned[0]
        assert argv[0] == "/usr/bin/notify-send" and "approval needed" in argv[-2]
        assert app.current_modal is not None and app.current_modal.request.agent in argv[-1]
        await answer_all(pilot, app, "n")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert len(rings) == len(spawned) >= 2  # one each per request


async def test_no_bell_and_no_notification_unless_asked(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("approvals.json")], tmp_path)
    assert not app.notice.bell and not app.notice.desktop
    spawned = Spawned()
    app.notice.spawn = spawned
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await answer_all(pilot, app, "n")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert not rings and not spawned


def test_desktop_notification_is_skipped_without_notify_send() -> None:
    spawned = Spawned()
    notice = ApprovalNotice(desktop=True, which=lambda name: None, spawn=spawned)
    from core.approval import ApprovalRequest

    request = ApprovalRequest(
        request_id="r1",
        plan_id="p",
        action_id="a",
        agent="agent\x1b[31m",
        tool="database_write",
        risk_level="HIGH",
        reversible=False,
        confidence=0.9,
        threshold=0.8,
        args={},
        action_hash="h",
        requested_at=FIXED_START,
        timeout_s=10,
    )
    notice.approval_requested(request, lambda: None)
    assert not spawned
    notice.which = lambda name: "/bin/notify-send"
    notice.approval_requested(request, lambda: None)
    assert spawned and "\x1b" not in spawned[0][-1] and "\\x1b" in spawned[0][-1]


# -- keymaps ------------------------------------------------------------------------------


def keys_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(body, encoding="utf-8")
    return path


async def test_a_keys_file_moves_the_lock_and_the_help_shows_it(tmp_path: Path) -> None:
    keymap = load_keymap(keys_file(tmp_path, '[keys]\nlock = "ctrl+k"\nfilter = "g"\n'), OperatorConsole, required=True)
    app, harness, _ = console_app([sample("approvals.json")], tmp_path / "out", autostart=False)
    app.use_keymap(keymap)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_shown = str(app.screen.query_one(Static).render())
        assert "ctrl+k   LOCK the whole system" in help_shown
        assert "g        filter the focused pane" in help_shown
        assert "\n  l        LOCK" not in help_shown
        await pilot.press("escape")
        await pilot.press("l")  # the old key does nothing now
        assert not harness.controller.locked
        await pilot.press("ctrl+k")
        assert harness.controller.locked


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[keys]\nlock = ""\n', "lock: no key given"),
        ('[keys]\napprove = "a"\n', "cannot be remapped"),
        ('[keys]\nfilter = "y"\n', "y is reserved for approve"),
        ('[keys]\nhelp = "n"\n', "n is reserved for deny"),
        ('[keys]\nfilter = "f"\n', "f would be both"),
        ('[keys]\nexport = "q"\n', "q would be both"),
        ('[keys]\nlaunch = "x"\n', "launch: no such binding"),
        ("[keys]\nlock = 5\n", "expected a key as a string"),
        ('[keys]\nlock = "ctrl+k ctrl+j"\n', "is not a key name"),
        ("[keys\nlock = 1\n", "not valid TOML"),
        ('[colours]\nlock = "x"\n', "unknown table"),
    ],
)
def test_a_bad_keys_file_is_refused_with_one_line(tmp_path: Path, body: str, needle: str, capsys: Any) -> None:
    path = keys_file(tmp_path, body)
    with pytest.raises(KeymapError, match=needle):
        load_keymap(path, OperatorConsole, required=True)
    plan = tmp_path / "plan.json"
    plan.write_text('{"plan_id": "p", "actions": [{"id": "a", "agent": "x", "tool": "math_compute"}]}')
    out = tmp_path / "out"
    assert main(["console", str(plan), "--out", str(out), "--keys", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and needle.split(":")[0] in err
    assert not out.exists()  # refused before anything started


def test_the_default_keys_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_keys_path() == tmp_path / "phase24" / "keys.toml"
    assert load_keymap(default_keys_path(), OperatorConsole, required=False) == {}  # absent: nothing moved
    default_keys_path().parent.mkdir()
    default_keys_path().write_text('[keys]\npause = "ctrl+z"\n')
    assert load_keymap(default_keys_path(), OperatorConsole, required=False) == {"pause": "ctrl+z"}
    with pytest.raises(KeymapError, match="no such keys file"):
        load_keymap(tmp_path / "missing.toml", OperatorConsole, required=True)


def test_the_replay_keys_can_be_remapped_too(tmp_path: Path) -> None:
    path = keys_file(tmp_path, '[keys]\nstep = "j"\n')
    assert load_keymap(path, ReplayConsole, required=True) == {"step": "j"}
    with pytest.raises(KeymapError, match="no such binding"):
        load_keymap(path, OperatorConsole, required=True)
