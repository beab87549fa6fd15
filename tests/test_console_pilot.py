"""The operator console driven by keys (Pilot, `App.run_test`).

Every test checks the effect in the core (harness, controller, gate) and in the run's output
files, not only on screen. Runs use virtual time (ManualClock) unless a test needs the run to
last: then a SystemClock and a plan of short LOW-risk actions keep it alive for a few seconds.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Log, Static
from textual.widgets._footer import FooterKey

from console.approval_prompt import ApprovalModal
from console.modals import ConfirmModal, HelpScreen
from console.panes import KeysFooter, LockBanner, Readout
from console.row_log import RowLog
from core.approval import ApprovalDecision, ApprovalRequest, canonical_action_hash
from core.clock import SystemClock
from core.contracts import ExecutionMode, RiskLevel
from core.events import ConflictDetected, SystemLocked
from core.outputs import OPERATOR_DECISIONS, REPORT_FILES
from tests.console_fixtures import (
    FIXED_START,
    SIZE,
    action,
    answer_all,
    build_harness,
    console_app,
    core_done,
    decisions,
    final_results,
    live_runs,
    modal_ready,
    read_jsonl,
    running,
    sample,
    slow_plan,
    wait_exit,
    wait_modal,
    wait_until,
)

APPROVALS = "approvals.json"


def pending_ids(app: Any) -> set[str]:
    return {r.request_id for r in app.gate.pending}


def decision_for(out: Path, action_id: str) -> list[dict[str, Any]]:
    return [d for d in decisions(out) if d.get("action_id") == action_id]


async def finish_and_quit(pilot: Any, app: Any, key: str = "n", seen: set[str] | None = None) -> None:
    """Answer what is left with `key`, let the run end, then quit with q."""
    await answer_all(pilot, app, key, seen)
    await wait_until(pilot, lambda: core_done(app), "the run to finish")
    await pilot.press("q")
    await wait_exit(pilot, app)


# -- approvals --------------------------------------------------------------------------


async def test_approve_key_runs_live(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        first = await wait_modal(pilot, app)
        modal = app.current_modal
        assert isinstance(modal, ApprovalModal) and modal.request is not None
        request = modal.request  # the prompt is reused: it shows the next request later
        request_id = request.request_id
        await pilot.press("y")
        await wait_until(pilot, lambda: request_id not in pending_ids(app), "the approval to reach the core")
        await finish_and_quit(pilot, app, "n", {request_id})

    in_core = {r["action_id"]: r for r in harness.results[0].tool_results}[first]
    assert in_core["final_state"] == "COMPLETED"
    assert in_core["mode"] == "LIVE"
    assert in_core["approval"]["approved"] is True
    assert in_core["approval"]["decided_by"] == "operator"

    logged = final_results(tmp_path)[first]
    assert logged["final_state"] == "COMPLETED"
    assert [run["success"] for run in live_runs(logged)] == [True]

    lines = decision_for(tmp_path, first)
    assert [(d["decision"], d["by"]) for d in lines] == [("APPROVE", "operator")]
    assert lines[0]["request_id"] == request_id
    assert lines[0]["action_hash"] == request.action_hash


async def test_deny_key_holds_action(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        first = await wait_modal(pilot, app)
        first_id = app.current_modal.request.request_id
        await pilot.press("n")

        second = await wait_modal(pilot, app, exclude={first_id})
        second_id = app.current_modal.request.request_id
        await pilot.press("r")
        box = app.current_modal.query_one("#deny-reason", Input)
        assert box.display and box.has_focus
        # "l" and "y" typed into the reason box are text, not the lock or approve keys.
        await pilot.press(*"needs legal review; y", "enter")
        await wait_until(pilot, lambda: second_id not in pending_ids(app), "the reasoned denial")
        assert not harness.controller.locked
        await finish_and_quit(pilot, app, "n", {first_id, second_id})

    results = final_results(tmp_path)
    for action_id in (first, second):
        assert results[action_id]["final_state"] == "LOCKED"
        assert live_runs(results[action_id]) == []

    (deny_first,) = decision_for(tmp_path, first)
    assert (deny_first["decision"], deny_first["by"], deny_first["why"]) == (
        "DENY",
        "operator",
        "denied at the console",
    )
    (deny_second,) = decision_for(tmp_path, second)
    assert (deny_second["decision"], deny_second["by"]) == ("DENY", "operator")
    assert deny_second["why"] == "needs legal review; y"
    assert not any(d["decision"] == "LOCK" for d in decisions(tmp_path))


@pytest.mark.parametrize("clock", ["manual", "system"])
async def test_timeout_denies(tmp_path: Path, clock: str) -> None:
    """Nobody answers: every request is denied by "timeout" (the core's wait_for, or the modal's
    own countdown when the console's clock is real time), and nothing runs LIVE."""
    app, harness, events = console_app(
        [sample(APPROVALS)],
        tmp_path,
        clock=SystemClock() if clock == "system" else None,
        approval_timeout_s=0.3,
    )
    async with running(app, harness) as pilot:
        # No key is pressed. (On virtual time the modal may close before a poll sees it.)
        await wait_until(pilot, lambda: core_done(app), "the run to finish", timeout=10)
        await wait_until(pilot, lambda: app.current_modal is None, "the last modal to close")
        await pilot.press("q")
        await wait_exit(pilot, app)

    requested = [e.action_id for e in events.kinds("approval_requested")]
    assert len(requested) >= 3
    lines = [d for d in decisions(tmp_path) if d["decision"] in ("APPROVE", "DENY", "EXPIRED")]
    assert sorted(d["action_id"] for d in lines) == sorted(requested)
    # Nobody answered: EXPIRED, its own outcome, which fails closed like a deny.
    assert {(d["decision"], d["by"]) for d in lines} == {("EXPIRED", "timeout")}
    results = final_results(tmp_path)
    for action_id in requested:
        assert results[action_id]["final_state"] == "LOCKED"
        assert results[action_id]["approval"]["outcome"] == "EXPIRED"
        assert "approval EXPIRED" in results[action_id]["reason"]
        assert live_runs(results[action_id]) == []
    assert not [e for e in events.kinds("tool_executed") if e.action_id in requested and e.mode.value == "LIVE"]


# -- lock / unlock ----------------------------------------------------------------------


def assert_nothing_went_live_while_locked(events: list[Any]) -> None:
    """No action entered LIVE between SystemLocked and SystemUnlocked (or the end).

    An execution already in flight when the lock lands may still report afterwards; only
    actions that entered LIVE before the lock may report a LIVE execution after it.
    """
    kinds = [e.kind for e in events]
    locked_at = kinds.index("system_locked")
    unlocked_at = kinds.index("system_unlocked") if "system_unlocked" in kinds else len(events)
    went_live_before = {
        e.action_id for e in events[:locked_at] if e.kind == "state_transition" and e.to_state == "LIVE"
    }
    window = events[locked_at:unlocked_at]
    assert not [e for e in window if e.kind == "state_transition" and e.to_state == "LIVE"]
    assert {e.action_id for e in window if e.kind == "tool_executed" and e.mode.value == "LIVE"} <= went_live_before


async def test_lock_denies_pending_approvals(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await wait_until(pilot, lambda: len(app.gate.pending) >= 2, "several pending approvals")
        waiting = {r.request_id: r.action_id for r in app.gate.pending}
        await pilot.press("l")
        assert harness.controller.locked is True
        await wait_until(pilot, lambda: not app.gate.pending and app.current_modal is None, "the denials")
        assert app.query_one(LockBanner).has_class("-locked")
        assert app.query_one(LockBanner).display
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)

    assert harness.controller.locked is True
    lines = decisions(tmp_path)
    locks = [d for d in lines if d["decision"] == "LOCK"]
    assert len(locks) == 1 and locks[0]["by"] == "operator"
    by_request = {d["request_id"]: d for d in lines if d["decision"] in ("APPROVE", "DENY")}
    for request_id in waiting:
        assert (by_request[request_id]["decision"], by_request[request_id]["by"]) == ("DENY", "lock")
    # Approvals asked for after the lock are denied by the lock too; nobody approved anything.
    assert {(d["decision"], d["by"]) for d in by_request.values()} == {("DENY", "lock")}

    results = final_results(tmp_path)
    for action_id in waiting.values():
        assert results[action_id]["final_state"] == "LOCKED"
    assert_nothing_went_live_while_locked(events)
    summary = json.loads((tmp_path / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["locked"] is True


async def test_unlock_requires_confirmation(tmp_path: Path) -> None:
    # A run that lasts a few seconds in real time, with no approvals (no modal in the way).
    app, harness, events = console_app([slow_plan(200, latency_ms=30)], tmp_path, clock=SystemClock())
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: events.kinds("tool_executed"), "the run to start")
        await pilot.press("l")
        assert harness.controller.locked
        await wait_until(pilot, lambda: app.query_one(LockBanner).has_class("-locked"), "the lock banner")

        await pilot.press("u")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmModal)
        assert harness.controller.locked

        await pilot.press("u")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        assert not isinstance(app.screen, ConfirmModal)
        # The unlock takes effect on the core's loop, once it is durably recorded.
        await wait_until(pilot, lambda: not harness.controller.locked, "the unlock")
        await wait_until(pilot, lambda: events.kinds("system_unlocked"), "the unlock event")
        await wait_until(pilot, lambda: not app.query_one(LockBanner).has_class("-locked"), "the banner to go")

        # Unlocked, actions climb above MOCK again.
        def live_after_unlock() -> bool:
            start = [e.kind for e in events].index("system_unlocked")
            return any(e.kind == "tool_executed" and e.mode.value == "LIVE" for e in list(events)[start:])

        await wait_until(pilot, live_after_unlock, "a LIVE execution after the unlock")
        await pilot.press("q")
        await wait_exit(pilot, app)

    lines = decisions(tmp_path)
    assert [(d["decision"], d["by"]) for d in lines] == [("LOCK", "operator"), ("UNLOCK", "operator")]
    assert "confirmed" in lines[1]["why"]
    assert_nothing_went_live_while_locked(events)
    assert not harness.controller.locked


# -- pause / resume ---------------------------------------------------------------------


async def test_pause_and_resume(tmp_path: Path) -> None:
    app, harness, events = console_app([slow_plan(24, agents=2, latency_ms=20)], tmp_path, clock=SystemClock())

    def started() -> set[str]:
        return {e.action_id for e in events.kinds("tool_executed")}

    def settled() -> set[str]:
        return {e.action_id for e in events.kinds("state_transition") if e.to_state in ("COMPLETED", "LOCKED")}

    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: started(), "the run to start")
        await pilot.press("p")
        assert harness.paused is True
        await wait_until(pilot, lambda: events.kinds("run_paused"), "the pause event")
        # Actions in flight finish; then nothing new starts.
        await wait_until(pilot, lambda: started() <= settled(), "actions in flight to finish")
        before = (len(events.kinds("tool_executed")), len(events.kinds("state_transition")), started())
        await pilot.pause(0.5)
        after = (len(events.kinds("tool_executed")), len(events.kinds("state_transition")), started())
        assert after == before
        assert len(before[2]) < 24
        assert app.view.paused and app.view.state_label == "paused"

        await pilot.press("p")
        assert harness.paused is False
        await wait_until(pilot, lambda: core_done(app), "the run to finish after resuming", timeout=10)
        await pilot.press("q")
        await wait_exit(pilot, app)

    lines = decisions(tmp_path)
    assert [(d["decision"], d["by"]) for d in lines] == [("PAUSE", "operator"), ("RESUME", "operator")]
    results = final_results(tmp_path)
    assert len(results) == 24
    assert {r["final_state"] for r in results.values()} == {"COMPLETED"}
    summary = json.loads((tmp_path / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is False


# -- quitting ---------------------------------------------------------------------------


def assert_outputs_complete(out: Path) -> dict[str, Any]:
    for name in (*REPORT_FILES, OPERATOR_DECISIONS):
        assert (out / name).exists(), name
    for name in (*REPORT_FILES, OPERATOR_DECISIONS):
        if name.endswith(".jsonl"):
            read_jsonl(out / name)
        else:
            json.loads((out / name).read_text(encoding="utf-8"))
    summary: dict[str, Any] = json.loads((out / "orchestration_summary.json").read_text(encoding="utf-8"))
    return summary


async def quit_mid_run(tmp_path: Path, how: str) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await wait_until(pilot, lambda: len(app.gate.pending) >= 2, "several pending approvals")
        waiting = set(pending_ids(app))
        if how == "key":
            await pilot.press("q")
        else:
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: CommandPalette.is_open(app), "the command palette")
            await pilot.press(*"Quit")
            await pilot.pause(0.3)
            await pilot.press("enter")
        await wait_exit(pilot, app)
    assert core_done(app)
    summary = assert_outputs_complete(tmp_path)
    assert summary["interrupted"] is True
    by_request = {d["request_id"]: d for d in decisions(tmp_path) if d["decision"] in ("APPROVE", "DENY")}
    assert waiting <= set(by_request)
    assert {by_request[r]["decision"] for r in waiting} == {"DENY"}
    results = final_results(tmp_path)
    waiting_actions = {d["action_id"] for d in by_request.values() if d["request_id"] in waiting}
    for action_id in waiting_actions:
        assert results[action_id]["final_state"] == "LOCKED"
        assert live_runs(results[action_id]) == []


async def test_quit_mid_run_completes_outputs(tmp_path: Path) -> None:
    await quit_mid_run(tmp_path, "key")


async def test_quit_from_palette_mid_run_completes_outputs(tmp_path: Path) -> None:
    """The command palette (ctrl+p, a priority binding) reaches Quit while an approval is on screen."""
    await quit_mid_run(tmp_path, "palette")


async def test_pause_key_works_while_an_approval_is_on_screen(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await pilot.press("p")
        paused = harness.paused
        if paused:
            await pilot.press("p")
        await finish_and_quit(pilot, app, "n")
    assert paused
    assert [d["decision"] for d in decisions(tmp_path) if d["decision"] in ("PAUSE", "RESUME")] == ["PAUSE", "RESUME"]


# -- help and palette ---------------------------------------------------------------------


async def test_help_overlay(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("happy_path.json")], tmp_path, autostart=False)
    async with running(app, harness) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        for key in ("y", "n", "r", "l", "u", "p", "q", "?"):
            assert re.search(rf"(^|\s){re.escape(key)}\s", text, re.MULTILINE), f"help does not list {key!r}"
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        assert not harness.controller.locked


async def test_command_palette_lists_and_runs_the_operator_commands(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        commands = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Lock", "Unlock", "Pause / resume", "Help", "Quit"):
            assert title in commands
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: CommandPalette.is_open(app), "the command palette")
        await pilot.press(*"Lock")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: harness.controller.locked, "the lock")
        await wait_until(pilot, lambda: not app.gate.pending, "the denials")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await wait_until(pilot, lambda: not CommandPalette.is_open(app) and app.current_modal is None, "no overlay")
        await pilot.press("q")
        await wait_exit(pilot, app)
    lines = decisions(tmp_path)
    assert [d["by"] for d in lines if d["decision"] == "LOCK"] == ["operator"]
    assert {d["by"] for d in lines if d["decision"] == "DENY"} == {"lock"}


# -- console and headless agree -----------------------------------------------------------


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k not in ("timestamp", "ts", "start_time", "end_time")}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _comparable(out: Path) -> dict[str, Any]:
    return {
        "tool_execution_log": _strip_times(read_jsonl(out / "tool_execution_log.jsonl")),
        "transitions": _strip_times(read_jsonl(out / "execution_state_transitions.jsonl")),
        "conflicts": _strip_times(json.loads((out / "tool_conflicts.json").read_text(encoding="utf-8"))),
    }


async def test_console_and_headless_produce_same_outputs(tmp_path: Path) -> None:
    plans = [sample("happy_path.json")]
    headless, _ = build_harness(plans, tmp_path / "headless", run_id="same_run")
    await headless.run_pipeline()

    app, harness, _ = console_app(plans, tmp_path / "console", run_id="same_run")
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)

    a, b = _comparable(tmp_path / "headless"), _comparable(tmp_path / "console")
    assert a["tool_execution_log"] and a["transitions"]
    assert a == b
    assert headless.summary["plans_successful"] == harness.summary["plans_successful"] == 1


# -- layout -------------------------------------------------------------------------------


async def test_narrow_terminal_uses_tabs(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("conflicts.json")], tmp_path)
    async with running(app, harness, size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.pause()
        assert app.screen.has_class("-narrow")
        panes = ("transitions", "health", "tools", "approvals", "conflicts", "signals")
        assert [p for p in panes if app.query_one(f"#{p}").display] == ["transitions"]
        assert app.query_one("#pane-tabs").display

        await pilot.press("3")
        assert [p for p in panes if app.query_one(f"#{p}").display] == ["conflicts"]
        table = app.query_one("#conflicts-table", DataTable)
        assert table.row_count == app.view.conflicts_total == harness.summary["total_conflicts"] > 0
        await pilot.press("q")
        await wait_exit(pilot, app)


async def test_a_following_pane_still_follows_after_the_terminal_shrinks_and_grows_back(tmp_path: Path) -> None:
    """Shrunk to 40x12 mid-prompt and grown back, the transitions pane went on showing its
    first rows while its title said it followed: Textual scrolls a log on write only if it
    was at the end, and the shrink had left it at the top."""
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        assert app.current_modal is not None and app.current_modal.request is not None
        first = app.current_modal.request.request_id
        await pilot.press("y")
        await wait_modal(pilot, app, {first})
        for size in ((80, 24), (40, 12), SIZE):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
        await answer_all(pilot, app, "n", {first})
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.pause(0.3)
        log = app.query_one("#transitions-log", RowLog)
        assert log.following
        assert log.max_scroll_y > 0, "the test needs more rows than the pane shows"
        assert log.scroll_y == log.max_scroll_y, f"at row {log.scroll_y} of {log.max_scroll_y}"
        await pilot.press("q")
        await wait_exit(pilot, app)


async def test_wide_terminal_shows_every_pane(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("happy_path.json")], tmp_path, autostart=False)
    async with running(app, harness) as pilot:
        await pilot.pause()
        assert not app.screen.has_class("-narrow")
        assert all(app.query_one(f"#{p}").display for p in ("transitions", "tools", "conflicts", "health"))
        assert not app.query_one("#pane-tabs").display


# -- untrusted text ---------------------------------------------------------------------

HOSTILE = "\x1b[31mred [bold]x[/bold] [/x] \u202eevil \x9b2J"


def _svg_text(svg: str) -> str:
    """The characters of an exported screenshot, markup removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def test_injection_rendered_literally(tmp_path: Path) -> None:
    hostile_plan = {
        "plan_id": "hostile",
        "actions": [
            action("read", agent=HOSTILE, tool="ghl_search", args={"q": HOSTILE}, resource="crm:x"),
            action("write", agent=HOSTILE, tool="ghl_create_contact", args={"name": HOSTILE}, resource="crm:x"),
            action("other", agent="b" + HOSTILE, tool="ghl_update_contact", args={"n": HOSTILE}, resource="crm:x"),
        ],
    }
    app, harness, _ = console_app([hostile_plan], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        # Under load the modal can be mounted before its first paint: wait for it on screen.
        await wait_until(pilot, lambda: "APPROVAL NEEDED" in _svg_text(app.export_screenshot()), "the modal painted")
        modal_svg = app.export_screenshot()
        modal_text = str(app.current_modal.query_one("#approval-details", Static).render())
        modal_args = str(app.current_modal.query_one("#approval-args-text", Static).render())
        await answer_all(pilot, app, "n")
        await pilot.pause(0.2)
        app.drain()
        await pilot.pause()
        main_svg = app.export_screenshot()
        logs = [line for log in app.query(Log) for line in log.lines]
        await pilot.press("q")
        await wait_exit(pilot, app)

    for text in (modal_text, modal_args, "\n".join(logs), modal_svg, main_svg):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\x9b" not in text
    escaped = "\\x1b[31mred [bold]x[/bold] [/x] \\u202eevil \\x9b2J"
    assert escaped in modal_text
    # Arguments are shown as JSON: ESC is JSON-escaped, the other controls made inert.
    assert "\\u001b[31mred" in modal_args and "\\u202e" in modal_args and "\\x9b" in modal_args
    # A long agent name shrinks to its column in a log line (the row's detail has all of it).
    assert any("\\x1b[31mre…" in line for line in logs)
    assert "\\x1b[31mred" in _svg_text(modal_svg)
    assert "\\x1b[31mred" in _svg_text(main_svg)
    # The files keep the data as it was: escaping is the console's job only.
    assert HOSTILE in {r["agent"] for r in final_results(tmp_path).values()}


async def test_core_error_notification_is_inert(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("happy_path.json")], tmp_path)

    async def explode() -> dict[str, Any]:
        raise ValueError(f"bad agent {HOSTILE}")

    harness.run_pipeline = explode  # type: ignore[method-assign]
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: app.core_error is not None, "the core error")
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert app.return_value == 1  # exit code: the run failed
    assert messages and "bad agent" in messages[-1]
    assert "\x1b" not in messages[-1] and "\u202e" not in messages[-1] and "\x9b" not in messages[-1]


# -- more approval behaviour ----------------------------------------------------------------


async def test_modals_come_one_at_a_time_oldest_first(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    shown: list[str] = []
    async with running(app, harness) as pilot:
        while not core_done(app):
            await wait_until(
                pilot, lambda: core_done(app) or modal_ready(app, set(shown)), "the next approval or the end"
            )
            if modal_ready(app, set(shown)):
                assert sum(isinstance(s, ApprovalModal) for s in app.screen_stack) == 1
                waiting = [r.request_id for r in app.gate.pending]
                assert app.current_modal.request.request_id == waiting[0]  # the oldest one
                shown.append(app.current_modal.request.request_id)
                await pilot.press("n")
        await pilot.press("q")
        await wait_exit(pilot, app)
    requested = [e.request_id for e in events.kinds("approval_requested")]
    assert shown == requested
    assert [d["request_id"] for d in decisions(tmp_path)] == requested


async def test_ctrl_l_locks_while_typing_a_reason(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await pilot.press("r", *"l", "ctrl+l")
        await wait_until(pilot, lambda: harness.controller.locked, "the lock")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    lines = decisions(tmp_path)
    assert [d["by"] for d in lines if d["decision"] == "LOCK"] == ["operator"]
    assert {(d["decision"], d["by"]) for d in lines if d["decision"] in ("APPROVE", "DENY")} == {("DENY", "lock")}


async def test_conflict_rows_keep_detection_order(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("happy_path.json")], tmp_path, autostart=False)
    batch = [
        ConflictDetected(
            seq=i + 1,
            ts=FIXED_START,
            run_id="console_test",
            plan_id="p1",
            conflict_id=f"C{i + 1:04d}",
            conflict_type="RESOURCE",
            agents=["a", "b"],
            tool="database_write",
            resource="db:x",
            action_ids=["x", "y"],
            detail="two writers",
        )
        for i in range(30)
    ]
    async with running(app, harness) as pilot:
        app.ingest(batch)
        app.drain()
        await pilot.pause()
        table = app.query_one("#conflicts-table", DataTable)
        rows = [key.value for key in table.rows]
    assert list(app.view.conflicts) == [e.conflict_id for e in batch]
    assert rows == list(app.view.conflicts)


async def test_a_drain_after_the_screens_are_gone_renders_nothing_and_raises_nothing(tmp_path: Path) -> None:
    # The drain timer runs in its own task, so it can fire while Textual is removing the
    # screens at exit (CI once saw NoMatches for '#status-bar' there). Drive that moment
    # directly: events arrive after the app has shut down.
    app, harness, _ = console_app([sample("happy_path.json")], tmp_path, autostart=False)
    async with running(app, harness) as pilot:
        await pilot.pause()
    assert not app.is_running
    app.ingest([SystemLocked(seq=1, ts=FIXED_START, run_id="console_test", reason="late", by="operator")])
    app.drain()
    assert not app.view.locked


async def test_mouse_click_on_the_prompt_approves_and_denies(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        first = await wait_modal(pilot, app)
        first_request = app.current_modal.request.request_id
        # " y approve " starts the keys line; " n deny " follows after two spaces.
        await pilot.click("#approval-keys", offset=(3, 0))
        await wait_until(pilot, lambda: first_request not in pending_ids(app), "the click to approve")
        second = await wait_modal(pilot, app, exclude={first_request})
        second_request = app.current_modal.request.request_id
        await pilot.click("#approval-keys", offset=(16, 0))
        await wait_until(pilot, lambda: second_request not in pending_ids(app), "the click to deny")
        await finish_and_quit(pilot, app, "n", {first_request, second_request})

    assert [d["decision"] for d in decision_for(tmp_path, first)] == ["APPROVE"]
    assert [d["decision"] for d in decision_for(tmp_path, second)] == ["DENY"]
    assert final_results(tmp_path)[first]["mode"] == "LIVE"
    assert live_runs(final_results(tmp_path)[second]) == []


async def test_short_arguments_in_place_long_ones_in_a_scrolling_box(tmp_path: Path) -> None:
    long_args = {f"field_{i:02d}": f"value {i}" for i in range(40)}
    plan = {
        "plan_id": "args",
        "actions": [
            action("find", agent="crm", tool="ghl_search", args={"q": "Ada"}),  # the provider create depends on
            action("short", agent="crm", tool="ghl_create_contact", args={"name": "Ada"}),
            action("long", agent="crm", tool="ghl_create_contact", args=long_args),
        ],
    }
    app, harness, _ = console_app([plan], tmp_path)
    seen: dict[str, tuple[bool, str]] = {}
    shown: set[str] = set()
    async with running(app, harness) as pilot:
        for _ in range(2):
            action_id = await wait_modal(pilot, app, exclude=shown)
            modal = app.current_modal
            assert modal is not None
            shown.add(modal.request.request_id)
            text = str(modal.query_one("#approval-args-text", Static).render())
            box = modal.query_one("#approval-args")
            await wait_until(pilot, lambda: box.size.height > 0, "the arguments box laid out")  # noqa: B023
            seen[action_id] = (box.max_scroll_y > 0, text)
            await pilot.press("n")
        await pilot.press("q")
        await wait_exit(pilot, app)

    scrolls, text = seen["short"]
    assert not scrolls and '"name": "Ada"' in text
    scrolls, text = seen["long"]
    assert scrolls  # 40 lines: a box that scrolls, never a prompt taller than the screen
    assert all(f'"field_{i:02d}": "value {i}"' in text for i in range(40))


def test_wrapped_rows_counts_every_row_a_wrapped_text_takes():
    from console.approval_prompt import wrapped_rows

    assert wrapped_rows("\n".join(["x"] * 10), 60) == 10
    # One long line wraps: it counts as the rows it takes, so the box is sized to show it all.
    assert wrapped_rows("y" * 600, 60) == 10
    assert wrapped_rows("y" * 601, 60) == 11
    assert wrapped_rows("a\n" + "y" * 61, 60) == 3
    assert wrapped_rows("", 60) == 1


# -- drawing cost -----------------------------------------------------------------------


async def test_footer_keys_are_rebuilt_only_when_they_change(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        footer = app.screen_stack[0].query_one(KeysFooter)
        await wait_until(pilot, lambda: footer.query(FooterKey) and not footer._rebuild_pending, "the footer's keys")
        keys = list(footer.query(FooterKey))
        first = await wait_modal(pilot, app)
        request_id = app.current_modal.request.request_id
        await pilot.press("n")
        await wait_until(
            pilot,
            lambda: app.current_modal is None or app.current_modal.request.action_id != first,
            "the prompt to close",
        )
        await pilot.pause(0.2)
        # A prompt came and went, focus moved twice: the same keys, not rebuilt.
        assert list(footer.query(FooterKey)) == keys
        assert all(key.is_attached for key in keys)
        # Locking changes which keys are enabled: now the footer is rebuilt, lock dimmed.
        await pilot.press("l")
        await wait_until(pilot, lambda: not app.gate.pending and app.current_modal is None, "the lock's denials")
        # The rebuild removes the old keys before it mounts the new ones: wait for the new lock key.
        await wait_until(
            pilot,
            lambda: list(footer.query(FooterKey)) != keys and any(k.action == "lock" for k in footer.query(FooterKey)),
            "the footer to show the lock",
        )
        lock_keys = [key for key in footer.query(FooterKey) if key.action == "lock"]
        assert lock_keys and all(key.has_class("-disabled") for key in lock_keys)
        await finish_and_quit(pilot, app, "n", {request_id})


class _Readouts(App[None]):
    CSS = (
        "#fixed { height: 1; } #auto { height: auto; } #hidden { height: auto; display: none; }"
        " #shrink { height: 1; width: auto; }"
    )

    def compose(self) -> ComposeResult:
        yield Readout(id="fixed")
        yield Readout(id="auto")
        yield Readout(id="hidden")
        yield Readout("start", id="shrink")


async def test_readouts_skip_the_layout_pass_only_when_their_size_cannot_change() -> None:
    app = _Readouts()
    async with app.run_test(size=(40, 12)) as pilot:
        fixed, auto = app.query_one("#fixed", Readout), app.query_one("#auto", Readout)
        hidden, shrink = app.query_one("#hidden", Readout), app.query_one("#shrink", Readout)
        await pilot.pause()
        layouts: list[tuple[str, bool]] = []
        for widget in (fixed, auto, hidden, shrink):
            refresh = widget.refresh

            def spy(*regions: Any, _w: Readout = widget, _r: Any = refresh, **kwargs: Any) -> Any:
                layouts.append((str(_w.id), bool(kwargs.get("layout"))))
                return _r(*regions, **kwargs)

            widget.refresh = spy  # type: ignore[method-assign]

        for widget in (fixed, hidden):
            widget.show(Text("first"))  # the first text always asks for a layout
        fixed.show(Text("a"))
        fixed.show(Text("b" * 100 + "\nmore"))  # cut off by its fixed height, never taller
        auto.show(Text("one"))  # the first text: its size is not known yet
        auto.show(Text("two"))
        auto.show(Text("two\nlines"))
        auto.show(Text("and\nmore"))
        auto.show(Text("x" * 100))  # one row fewer
        auto.show(Text("y" * 100))  # same row count, but it wraps at 40 columns
        hidden.show(Text("not\nshown"))  # measured when it is shown
        shrink.show(Text("wider"))  # one row high, but as wide as its text
        assert layouts == [
            ("fixed", True),
            ("hidden", True),
            ("fixed", False),
            ("fixed", False),
            ("auto", True),
            ("auto", False),
            ("auto", True),
            ("auto", False),
            ("auto", True),
            ("auto", True),
            ("hidden", False),
            ("shrink", True),
        ]
        auto.show(Text("1\n2\n3"))
        await pilot.pause()
        assert auto.size.height == 3 and fixed.size.height == 1
        assert "3" in str(auto.render())
        hidden.display = True
        await pilot.pause()
        assert hidden.size.height == 2 and shrink.size.width == len("wider")


async def test_a_key_pressed_before_the_prompt_is_drawn_never_answers_it(tmp_path: Path) -> None:
    """A second `y` meant for the previous prompt must not approve the next one, unseen."""
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = app.approval_prompt
        assert prompt.is_mounted  # composed off screen at start-up, before any request
        request = approval_request("R1", harness.clock.now())
        prompt.is_pending = lambda request_id: True  # no core here: the request stands as pending
        prompt.show_request(request)
        results: list[object] = []
        app.push_screen(prompt, results.append)
        prompt.action_approve()  # pushed, not drawn yet: the key is ignored
        prompt.action_deny_with_reason()
        assert not prompt.settled and results == []
        assert not prompt.query_one("#deny-reason", Input).display
        await wait_until(pilot, lambda: prompt.shown_id == "R1", "the prompt to be drawn")
        await wait_until(pilot, lambda: prompt.armed, "the prompt to arm")
        await pilot.press("y")
        await wait_until(pilot, lambda: results, "the approval")
    (decision,) = results
    assert isinstance(decision, ApprovalDecision)
    assert decision.approved and decision.request_id == "R1" and decision.action_hash == request.action_hash


async def test_the_prompt_is_reused_and_shows_only_the_current_request(tmp_path: Path) -> None:
    """One prompt serves every request: each shows its own facts, and nothing of the last one
    (a typed reason, a scrolled box, focus) carries over."""
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = app.approval_prompt
        prompt.is_pending = lambda request_id: True  # no core here: the requests stand as pending
        answers: list[object] = []
        long_args = {f"field_{i:02d}": f"value {i}" for i in range(40)}
        for request_id, args in (("R1", long_args), ("R2", {"to": "ada@example.com"})):
            prompt.show_request(approval_request(request_id, harness.clock.now(), args))
            app.push_screen(prompt, answers.append)
            await wait_until(pilot, lambda: prompt.shown_id == request_id, "the prompt")  # noqa: B023
            await wait_until(pilot, lambda: prompt.armed, "the prompt to arm")
            details = str(prompt.query_one("#approval-details", Static).render())
            text = str(prompt.query_one("#approval-args-text", Static).render())
            reason = prompt.query_one("#deny-reason", Input)
            assert f"/ act-{request_id}" in details
            assert not reason.display and reason.value == "" and prompt.focused is not reason
            if request_id == "R1":
                assert '"field_39": "value 39"' in text
                await pilot.press("r", *"too long", "enter")
            else:
                assert text.strip().startswith("{") and "field_" not in text and "ada@example.com" in text
                await pilot.press("y")
            await wait_until(pilot, lambda: len(answers) == int(request_id[1]), "the answer")  # noqa: B023
    decisions = [a for a in answers if isinstance(a, ApprovalDecision)]
    assert [(d.request_id, d.approved, d.reason) for d in decisions] == [
        ("R1", False, "too long"),
        ("R2", True, "approved at the console"),
    ]


def approval_request(request_id: str, now: datetime, args: dict[str, Any] | None = None) -> ApprovalRequest:
    """A HIGH-risk request as the core would ask it (the prompt tests need no running core)."""
    args = {"to": "ada@example.com"} if args is None else args
    return ApprovalRequest(
        request_id=request_id,
        plan_id="plan",
        action_id=f"act-{request_id}",
        agent="mail_agent",
        tool="msgraph_send_email",
        risk_level=RiskLevel.HIGH,
        reversible=False,
        confidence=0.9,
        threshold=0.85,
        args=args,
        action_hash=canonical_action_hash("mail_agent", "msgraph_send_email", args, "plan", ExecutionMode.LIVE),
        requested_at=now,
        timeout_s=120.0,
    )
