"""The approval gate at the console: no misfire, no bypass, honest outcomes (Pilot).

Keys are injected as raw key events at the timing a person produces (a double tap 10 ms apart,
a held key repeating every 30 ms), without waiting for the app to go idle in between, the way
a terminal delivers them. These tests use the console's real arming delay.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from textual import events as textual_events
from textual.widgets import Input, Static

from console import exit_codes
from console.app import OperatorConsole
from console.approval_prompt import DEFAULT_ARM_DELAY_S
from console.modals import ConfirmModal
from core.approval import canonical_action_hash
from core.clock import SystemClock
from core.contracts import ExecutionMode
from core.lock_state import SystemLockState
from tests.console_fixtures import (
    action,
    answer_all,
    console_app,
    core_done,
    decisions,
    final_results,
    live_runs,
    running,
    sample,
    slow_plan,
    wait_exit,
    wait_modal,
    wait_until,
)

APPROVALS = "approvals.json"


def approvals_granted(events: Any) -> list[str]:
    return [e.action_id for e in events.kinds("approval_decided") if e.approved]


async def type_key(app: OperatorConsole, key: str) -> None:
    """One key as the terminal delivers it: posted, not waited on."""
    event = textual_events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)  # what Pilot.press does, without waiting for the app to go idle
    await asyncio.sleep(0)


async def shown(pilot: Any, app: OperatorConsole, exclude: set[str] | None = None) -> str:
    """Wait until a prompt is drawn (not necessarily armed); return its request id."""
    skip = exclude or set()

    def drawn() -> bool:
        modal = app.current_modal
        return (
            modal is not None
            and modal.is_current
            and modal.request is not None
            and modal.request.request_id not in skip
            and modal.shown_id == modal.request.request_id
        )

    await wait_until(pilot, drawn, "a prompt on screen")
    assert app.current_modal is not None and app.current_modal.request is not None
    return app.current_modal.request.request_id


async def finish(pilot: Any, app: OperatorConsole) -> None:
    await answer_all(pilot, app, "n")
    await wait_until(pilot, lambda: core_done(app), "the run to finish")
    await pilot.press("q")
    await wait_exit(pilot, app)


# -- misfire ------------------------------------------------------------------------------


async def test_double_tapped_y_approves_exactly_one_action(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path, arm_delay=DEFAULT_ARM_DELAY_S)
    async with running(app, harness) as pilot:
        first = await wait_modal(pilot, app)
        await type_key(app, "y")
        await asyncio.sleep(0.012)
        await type_key(app, "y")
        await wait_until(pilot, lambda: events.kinds("approval_decided"), "the first answer")
        # The second y reached the next prompt before it was armed: dropped, nothing carried over.
        first_id = next(e.request_id for e in events.kinds("approval_decided"))
        second_id = await shown(pilot, app, exclude={first_id})
        await pilot.pause(DEFAULT_ARM_DELAY_S + 0.4)
        assert approvals_granted(events) == [first]
        assert any(r.request_id == second_id for r in app.gate.pending)
        await finish(pilot, app)
    assert [d["action_id"] for d in decisions(tmp_path) if d["decision"] == "APPROVE"] == [first]


async def test_holding_y_for_three_seconds_approves_exactly_one_action(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path, arm_delay=DEFAULT_ARM_DELAY_S)
    async with running(app, harness) as pilot:
        first = await wait_modal(pilot, app)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:  # auto-repeat: a y every 30 ms
            await type_key(app, "y")
            await asyncio.sleep(0.03)
        await pilot.pause(0.3)
        assert approvals_granted(events) == [first]
        modal = app.current_modal
        assert modal is not None and modal.dropped_keys > 10
        assert not modal.armed  # the repeats kept the next prompt unarmed
        await finish(pilot, app)
    assert [d["action_id"] for d in decisions(tmp_path) if d["decision"] == "APPROVE"] == [first]


async def test_y_a_tenth_of_a_second_after_the_prompt_appears_approves_nothing(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path, arm_delay=DEFAULT_ARM_DELAY_S)
    async with running(app, harness) as pilot:
        request_id = await shown(pilot, app)
        await asyncio.sleep(0.1)
        await type_key(app, "y")
        await pilot.pause(0.3)
        assert approvals_granted(events) == []
        assert request_id in {r.request_id for r in app.gate.pending}
        modal = app.current_modal
        assert modal is not None and modal.dropped_keys == 1 and not modal.armed
        keys = modal.query_one("#approval-keys", Static)
        assert keys.has_class("-unarmed")  # dimmed until armed
        await wait_until(pilot, lambda: modal.armed, "the prompt to arm")
        assert not keys.has_class("-unarmed")
        await finish(pilot, app)
    assert not [d for d in decisions(tmp_path) if d["decision"] == "APPROVE"]


async def test_prompt_says_how_many_wait_and_keeps_the_banner_and_status_line(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await wait_until(pilot, lambda: len(app.gate.pending) >= 3, "three waiting requests")
        modal = app.current_modal
        assert modal is not None
        await wait_until(
            pilot,
            lambda: f"1 of {len(app.gate.pending)} waiting" in str(modal.query_one("#approval-head").render()),
            "the prompt's count",
        )
        status = modal.query_one("#prompt-status-bar")
        assert status.region.y == 0 and "pending approvals" in str(status.render())
        await pilot.press("l")  # the lock: its banner shows above the prompt while it closes
        banner = modal.query_one("#prompt-lock-banner")
        assert banner.has_class("-locked") and "SYSTEM LOCKED" in str(banner.render())
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)


# -- prompts that do not fit -----------------------------------------------------------------


async def test_at_40x12_approve_is_refused_and_n_still_denies(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness, size=(40, 12)) as pilot:
        request_id = await shown(pilot, app)
        modal = app.current_modal
        assert modal is not None
        await wait_until(pilot, lambda: modal.armed, "the prompt to arm")
        assert not modal.fits
        assert "ENLARGE THE TERMINAL" in str(modal.query_one("#approval-too-small", Static).render())
        await pilot.press("y")
        await pilot.pause(0.2)
        assert approvals_granted(events) == [] and request_id in {r.request_id for r in app.gate.pending}
        await pilot.press("n")
        await wait_until(pilot, lambda: request_id not in {r.request_id for r in app.gate.pending}, "the denial")
        await pilot.press("l")
        assert harness.controller.locked
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert not [d for d in decisions(tmp_path) if d["decision"] == "APPROVE"]


async def test_at_60x20_the_prompt_keeps_countdown_and_keys_and_scrolls(tmp_path: Path) -> None:
    await prompt_fits_and_scrolls(tmp_path, (60, 20))


async def test_at_80x24_nine_argument_rows_keep_the_keys_line_and_reason_box_on_screen(tmp_path: Path) -> None:
    await prompt_fits_and_scrolls(tmp_path, (80, 24), reason=True)


async def prompt_fits_and_scrolls(tmp_path: Path, size: tuple[int, int], reason: bool = False) -> None:
    args = {f"field_{i}": f"value {i}" for i in range(9)}
    plan = {
        "plan_id": "rows",
        "actions": [action("write", agent="data", tool="database_write", confidence=0.95, args=args)],
    }
    app, harness, _events = console_app([plan], tmp_path)
    async with running(app, harness, size=size) as pilot:
        await wait_modal(pilot, app)
        modal = app.current_modal
        assert modal is not None and modal.fits
        height = size[1]
        for part in ("#approval-countdown", "#approval-keys", "#approval-args"):
            region = modal.query_one(part).region
            assert region.height > 0 and region.bottom <= height, part
        box = modal.query_one("#approval-args")
        if box.max_scroll_y > 0:
            assert not modal.args_fully_visible()
            await pilot.press("end")
            assert box.scroll_y == box.max_scroll_y
        assert modal.args_fully_visible()
        if reason:
            await pilot.press("r")
            reason_box = modal.query_one("#deny-reason", Input)
            await pilot.pause(0.1)
            assert reason_box.has_focus and 0 < reason_box.region.bottom <= height
            await pilot.press(*"too wide", "enter")
        else:
            await pilot.press("y")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    (line,) = [d for d in decisions(tmp_path) if d["decision"] in ("APPROVE", "DENY")]
    assert line["decision"] == ("DENY" if reason else "APPROVE")
    assert line["args_fully_visible"] is True


async def test_the_main_screen_follows_live_resizes_also_under_a_prompt(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        main = app.screen_stack[0]
        for size, narrow, tiny in (((80, 24), True, False), ((160, 48), False, False), ((40, 12), True, True)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            assert (main.has_class("-narrow"), main.has_class("-tiny")) == (narrow, tiny), size
        await pilot.resize_terminal(160, 48)
        await pilot.pause(0.1)
        assert not main.has_class("-narrow") and not main.has_class("-tiny")
        await pilot.press("l")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)


async def test_below_the_minimum_size_the_console_says_too_small_and_lock_works(tmp_path: Path) -> None:
    app, harness, events = console_app([slow_plan(100, latency_ms=20)], tmp_path, clock=SystemClock())
    async with running(app, harness, size=(40, 12)) as pilot:
        await wait_until(pilot, lambda: events.kinds("tool_executed"), "the run to start")
        too_small = app.query_one("#too-small", Static)
        assert too_small.display and "Terminal too small" in str(too_small.render())
        await pilot.press("l")
        assert harness.controller.locked
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)


# -- quit, lock, unlock ---------------------------------------------------------------------


async def test_quit_at_a_prompt_denies_everything_escalates_nothing_and_exits_interrupted(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path, clock=SystemClock())
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        loop = asyncio.get_running_loop()
        pressed = loop.time()
        await pilot.press("q")
        await wait_exit(pilot, app, timeout=2.0)
        assert loop.time() - pressed < 2.0
    assert app.return_value == exit_codes.INTERRUPTED
    kinds = [e.kind for e in events]
    assert "approval_requested" in kinds
    quit_at = next(i for i, e in enumerate(events) if e.kind == "approval_decided")
    # After the quit no new request was made and nothing entered LIVE.
    later = list(events)[quit_at:]
    assert not [e for e in later if e.kind == "approval_requested"]
    assert not [e for e in later if e.kind == "state_transition" and e.to_state == "LIVE"]
    assert not [d for d in decisions(tmp_path) if d["decision"] == "APPROVE"]
    summary = json.loads((tmp_path / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "INTERRUPTED" and summary["interrupted"] is True


async def test_lock_drops_the_rest_of_the_run_to_mock_and_it_finishes_locked(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await pilot.press("l")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert app.return_value == exit_codes.LOCKED
    locked_at = [e.kind for e in events].index("system_locked")
    after = list(events)[locked_at:]
    # Nothing above MOCK after the lock; the actions not yet run still ran, in MOCK.
    assert not [e for e in after if e.kind == "tool_executed" and e.mode is not ExecutionMode.MOCK]
    assert [e for e in after if e.kind == "tool_executed" and e.mode is ExecutionMode.MOCK]
    results = final_results(tmp_path)
    assert not [r for r in results.values() if r["final_state"] == "ABORTED"]
    summary = json.loads((tmp_path / "orchestration_summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "LOCKED" and summary["plans"][0]["status"] == "LOCKED"
    assert summary["plans_successful"] == 0


async def test_unlock_after_the_run_is_recorded_with_who_and_why(tmp_path: Path) -> None:
    app, harness, _events = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await pilot.press("l")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("enter")  # Cancel has the focus: Enter does not unlock
        assert harness.controller.locked and not isinstance(app.screen, ConfirmModal)
        await pilot.press("u")
        await pilot.press("y")
        await wait_until(pilot, lambda: not harness.controller.locked, "the unlock")
        await pilot.press("q")
        await wait_exit(pilot, app)
    lines = [d for d in decisions(tmp_path) if d["decision"] in ("LOCK", "UNLOCK")]
    assert [(d["decision"], d["by"]) for d in lines] == [("LOCK", "operator"), ("UNLOCK", "operator")]
    assert "confirmed" in lines[1]["why"]
    from core.journal import Journal, verify_journal

    assert verify_journal(tmp_path).ok
    with Journal.open(tmp_path, harness.run_id) as journal:
        assert journal.get_state("locked") == ""
    state = SystemLockState()
    assert not state.read().locked
    assert [h["event"] for h in state.history()] == ["LOCK", "UNLOCK"]


async def test_a_console_started_while_the_system_is_locked_starts_locked(tmp_path: Path) -> None:
    SystemLockState().lock("maintenance window", "cli:test")
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await wait_until(pilot, lambda: app.query_one("#lock-banner").has_class("-locked"), "the lock banner")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert not events.kinds("approval_requested")
    assert not [e for e in events.kinds("tool_executed") if e.mode is not ExecutionMode.MOCK]
    assert "maintenance window" in events.kinds("system_locked")[0].reason


# -- decisions the operator was missing ---------------------------------------------------------


async def test_deny_and_stop_cancels_the_agents_remaining_actions(tmp_path: Path) -> None:
    plan = {
        "plan_id": "stop",
        "actions": [
            action("first", agent="mailer", tool="database_write", confidence=0.95, args={"to": "a"}),
            action("second", agent="mailer", tool="math_compute", confidence=0.95, args={"x": 1}),
            action("third", agent="mailer", tool="math_compute", confidence=0.95, args={"x": 2}),
        ],
    }
    app, harness, _ = console_app([plan], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        await pilot.press("s")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    (line,) = [d for d in decisions(tmp_path) if d["action_id"] == "first"]
    assert line["decision"] == "DENY_AND_STOP" and line["by"] == "operator"
    results = final_results(tmp_path)
    assert results["first"]["final_state"] == "LOCKED"
    for later in ("second", "third"):
        assert results[later]["final_state"] == "ABORTED"
        assert "stopped" in results[later]["reason"]
        assert live_runs(results[later]) == []


async def test_edit_then_approve_runs_the_edited_arguments_and_records_both_hashes(tmp_path: Path) -> None:
    plan = {
        "plan_id": "edit",
        "actions": [action("write", agent="data", tool="database_write", confidence=0.95, args={"id": 1})],
    }
    app, harness, _events = console_app([plan], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        modal = app.current_modal
        assert modal is not None and modal.request is not None
        request = modal.request
        await pilot.press("e")
        editor = app.screen
        area = editor.query_one("#edit-args-text")
        area.text = '{"id": NaN}'
        await pilot.press("ctrl+s")
        assert app.screen is editor  # refused: not a JSON number
        assert "Cannot save" in str(editor.query_one("#edit-args-error").render())
        area.text = '{"id": 2}'
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is modal, "the prompt back")
        assert modal.edited_args == {"id": 2}
        assert "your edit" in str(modal.query_one("#approval-edited").render())
        await wait_until(pilot, lambda: modal.armed, "the edited prompt to arm again")
        await pilot.press("y")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    (line,) = [d for d in decisions(tmp_path) if d["action_id"] == "write"]
    assert line["decision"] == "APPROVE" and line["operator_modified"] is True
    assert line["original_action_hash"] == request.action_hash
    edited_hash = canonical_action_hash("data", "database_write", {"id": 2}, "edit", ExecutionMode.LIVE)
    assert line["action_hash"] == edited_hash and line["edited_args"] == {"id": 2}
    result = final_results(tmp_path)["write"]
    assert result["final_state"] == "COMPLETED" and result["mode"] == "LIVE"
    effects = [json.loads(x) for x in (tmp_path / "simulated_effects.jsonl").read_text().splitlines()]
    assert [e["args"] for e in effects if e["action_id"] == "write"] == [{"id": 2}]


async def test_a_prompt_for_a_request_settled_before_it_appeared_closes_itself(tmp_path: Path) -> None:
    """The lock (or quit) can settle a queued request in the core just as its prompt goes up,
    after the settling event was drawn: the prompt notices and closes, never a ghost prompt."""
    from tests.test_approval_outcomes import request as settled_request

    request = settled_request(timeout_s=120)
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path, autostart=False)
    async with running(app, harness) as pilot:
        modal = app.approval_prompt
        await wait_until(pilot, lambda: modal.is_mounted, "the prompt composed off screen")
        modal.show_request(request)  # not pending in the gate: already settled
        app.push_screen(modal)
        await wait_until(pilot, lambda: app.screen is not modal and modal.settled, "the prompt to close itself")
        await pilot.press("q")
        await wait_exit(pilot, app)


async def test_a_storage_failure_in_the_console_exits_4_never_as_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_fail_closed import install_broken_disk

    install_broken_disk(monkeypatch, 3, lambda: None)  # the journal's third commit fails
    app, harness, _ = console_app([slow_plan(20, latency_ms=0)], tmp_path)
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert harness.storage_error is not None and harness.controller.locked
    assert app.return_value == exit_codes.STORAGE_FAILED
