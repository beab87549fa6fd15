"""Find and inspect in the console: `/` filter, Enter detail with links, follow mode, columns.

The events come from headless runs on virtual time and are fed to an app that never starts a
core (autostart=False), so each test drives only the console.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, OptionList, Static

from console.app import ConsoleGate, OperatorConsole, make_app
from console.filter_prompt import FilterPrompt
from console.panes import Pane
from console.row_detail import RowDetail
from console.row_log import RowLog
from core.events import ApprovalDecided, Event, StateTransition
from tests.console_fixtures import (
    FIXED_START,
    SIZE,
    action,
    answer_all,
    build_harness,
    console_app,
    decisions,
    running,
    sample,
    wait_exit,
    wait_modal,
)

RUN_ID = "phase24_inspect"


def headless_events(plans: list[dict[str, Any]]) -> list[Event]:
    harness, events = build_harness(plans, None, run_id=RUN_ID)
    harness.execute_orchestration_pipeline()
    return list(events)


@pytest.fixture
def approvals_run() -> list[Event]:
    return headless_events([sample("approvals.json")])


@pytest.fixture
def conflicts_run() -> list[Event]:
    return headless_events([sample("conflicts.json")])


@pytest.fixture
def many_rows_run() -> list[Event]:
    plan = {"plan_id": "many", "actions": [action(f"a{i:03d}", agent=f"agent_{i % 3}") for i in range(40)]}
    return headless_events([plan])


@pytest.fixture
def long_agent_run() -> list[Event]:
    return headless_events(
        [{"plan_id": "long", "actions": [action("a1", agent="an_agent_with_a_very_long_name_indeed")]}]
    )


def idle_app(plans: list[dict[str, Any]] | None = None) -> OperatorConsole:
    harness, _ = build_harness(plans or [sample("happy_path.json")], None, run_id=RUN_ID)
    app = make_app(harness, ConsoleGate(), autostart=False, now=lambda: FIXED_START + timedelta(seconds=30))
    app.animation_level = "none"
    return app


def title_of(app: OperatorConsole, pane: str) -> str:
    title = app.query_one(f"#{pane}", Pane).border_title
    return str(title or "")


def detail_text(app: OperatorConsole) -> str:
    screen = app.screen
    assert isinstance(screen, RowDetail)
    rendered = screen.query_one("#detail-text", Static).render()
    return rendered.plain if isinstance(rendered, Text) else str(rendered)


async def test_slash_filters_the_focused_pane_and_escape_clears_it(approvals_run: list[Event]) -> None:
    events = approvals_run
    app = idle_app()
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        log = app.query_one("#transitions-log", RowLog)
        everything = list(log.lines)
        assert any("denied" not in line for line in everything)
        await pilot.press("1", "slash")
        assert isinstance(app.screen, FilterPrompt)
        await pilot.press(*"DENIED", "enter")
        await pilot.pause()
        assert log.lines and all("denied" in line.lower() for line in log.lines)
        assert len(log.lines) < len(everything)
        assert "filter /DENIED" in title_of(app, "transitions")
        # New rows that do not match stay out while the filter is on.
        app.ingest([events[-1].model_copy(update={"seq": 10_000})])
        app.drain()
        assert all("denied" in line.lower() for line in log.lines)
        await pilot.press("escape")
        await pilot.pause()
        assert list(log.lines) == everything
        assert "filter" not in title_of(app, "transitions")


async def test_conflicts_filter_keeps_only_matching_rows(conflicts_run: list[Event]) -> None:
    events = conflicts_run
    app = idle_app()
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        table = app.query_one("#conflicts-table", DataTable)
        total = table.row_count
        kinds = {row.conflict_type for row in app.view.conflicts.values()}
        assert total >= 2 and len(kinds) >= 2
        wanted = sorted(kinds)[0]
        await pilot.press("3", "slash", *wanted, "enter")
        await pilot.pause()
        expected = sum(row.conflict_type == wanted for row in app.view.conflicts.values())
        assert 0 < table.row_count == expected < total
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == total


async def test_enter_opens_the_full_reason_the_action_hash_and_links(approvals_run: list[Event]) -> None:
    events = approvals_run
    denied = next(e for e in events if isinstance(e, ApprovalDecided) and not e.approved)
    row = next(
        e
        for e in events
        if isinstance(e, StateTransition)
        and e.action_id == denied.action_id
        and e.plan_id == denied.plan_id
        and e.from_state == "AWAITING_APPROVAL"
    )
    app = idle_app()
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        log = app.query_one("#transitions-log", RowLog)
        await pilot.press("1")
        index = list(log.shown).index(row)
        await pilot.press(*["up"] * (len(log.shown) - 1 - index))
        assert log.selected() is row
        await pilot.press("enter")
        await pilot.pause()
        text = detail_text(app)
        assert row.reason in text and len(row.reason) > 17  # the whole reason, not the column's cut
        assert denied.action_hash in text
        links = app.screen.query_one(OptionList)
        assert links.option_count >= 2  # its approval request and its decision
        # Enter on a link opens that row: the decision, with who decided and why.
        screen = app.screen
        assert isinstance(screen, RowDetail)
        decision_at = screen.links.index(denied)
        links.highlighted = decision_at
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RowDetail) and app.screen.event is denied
        assert denied.decided_by in detail_text(app)
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, RowDetail)


async def test_enter_on_a_conflict_row_shows_its_outcome_in_full(conflicts_run: list[Event]) -> None:
    events = conflicts_run
    app = idle_app()
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        await pilot.press("3", "enter")
        await pilot.pause()
        first = next(iter(app.view.conflicts.values()))
        text = detail_text(app)
        assert first.conflict_id in text and first.outcome in text


async def test_a_pane_scrolled_back_stops_following_and_f_follows_again(many_rows_run: list[Event]) -> None:
    events = many_rows_run
    half = len(events) // 2
    app = idle_app()
    async with app.run_test(size=SIZE) as pilot:
        app.ingest(events[:half])
        app.drain()
        await pilot.pause()
        log = app.query_one("#transitions-log", RowLog)
        assert log.following and log.is_vertical_scroll_end
        await pilot.press("1", *["up"] * 30)
        await pilot.pause()
        assert not log.following
        assert "scrolled back: f follows" in title_of(app, "transitions")
        where = log.scroll_y
        app.ingest(events[half:])
        app.drain()
        await pilot.pause()
        assert log.scroll_y == where  # new rows do not pull the view away
        await pilot.press("f")
        await pilot.pause()
        assert log.following and log.is_vertical_scroll_end
        assert "scrolled back" not in title_of(app, "transitions")


async def test_state_column_is_never_cut_at_80_columns(long_agent_run: list[Event]) -> None:
    events = long_agent_run
    app = idle_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.ingest(events)
        app.drain()
        await pilot.pause()
        screen = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")
        assert "an_agent_w… math_compute         MOCK->DRY_RUN" in screen


async def test_find_and_pane_keys_do_nothing_under_a_prompt(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample("approvals.json")], tmp_path)
    async with running(app, harness) as pilot:
        await wait_modal(pilot, app)
        main_focus = app.screen_stack[0].focused
        await pilot.press("3", "slash", "f", "ctrl+s")
        assert app.screen is app.current_modal  # the prompt stays on top, with its keys
        assert app.screen_stack[0].focused is main_focus
        assert not (tmp_path / "console_exports").exists()
        await answer_all(pilot, app, "n")
        await pilot.press("q")
        await wait_exit(pilot, app)
    assert {d["decision"] for d in decisions(tmp_path) if d["decision"] in ("APPROVE", "DENY")} == {"DENY"}
