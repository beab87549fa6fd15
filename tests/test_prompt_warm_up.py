"""The approval prompt is laid out and rendered off screen before the run starts.

What that buys (README "Performance"): the first request's prompt is filled without a layout
pass, as every later one is. What it must never do: put its sample request on screen, make
it answerable, or let the run start before the prompt can show a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widget import Widget

from console.approval_prompt import WARM_UP, ApprovalModal
from tests.console_fixtures import answer_all, console_app, decisions, running, sample, wait_until

APPROVALS = "approvals.json"


async def test_the_run_starts_only_once_the_prompt_is_warmed_up_and_the_sample_never_shows(tmp_path: Path) -> None:
    app, harness, events = console_app([sample(APPROVALS)], tmp_path)
    frames: list[str] = []
    display = app._display

    def record(screen: Any, renderable: Any) -> None:
        display(screen, renderable)
        if isinstance(screen, ApprovalModal) and screen.request is not None:
            frames.append(screen.request.request_id)

    app._display = record  # type: ignore[method-assign]
    started_when_ready: list[bool] = []
    start_core = app.start_core

    def start() -> None:
        started_when_ready.append(app.approval_prompt.ready)
        start_core()

    app.start_core = start  # type: ignore[method-assign]
    async with running(app, harness) as pilot:
        await wait_until(pilot, lambda: app.core_worker is not None, "the run to start")
        assert started_when_ready == [True]
        seen = await answer_all(pilot, app, "n")
    assert seen == {e.request_id for e in events if e.kind == "approval_requested"}
    assert frames, "the prompt was never drawn"
    assert WARM_UP not in frames
    assert all(not e.get("request_id", "").startswith("warm-up") for e in decisions(tmp_path))
    assert not [e for e in events if e.kind == "approval_decided" and "warm-up" in e.request_id]


async def test_the_first_request_is_filled_without_a_layout_pass(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path, autostart=False)
    needs_layout: list[bool] = []
    fill = ApprovalModal._fill

    def checked_fill(self: ApprovalModal, request: Any) -> None:
        fill(self, request)
        if request.request_id != WARM_UP:
            widgets = [w for w in self.query(Widget) if w._layout_required]
            needs_layout.append(bool(self._layout_required or self._layout_widgets or widgets))

    ApprovalModal._fill = checked_fill  # type: ignore[method-assign]
    try:
        async with running(app, harness) as pilot:
            await wait_until(pilot, lambda: app.approval_prompt.ready, "the prompt's warm-up")
            app.start_core()
            seen = await answer_all(pilot, app, "n")
    finally:
        ApprovalModal._fill = fill  # type: ignore[method-assign]
    assert len(seen) >= 2
    # The first request's fill is the one the warm-up is for; without it, it asks for a layout.
    assert needs_layout[0] is False


async def test_answer_keys_during_the_warm_up_answer_nothing(tmp_path: Path) -> None:
    app, harness, _ = console_app([sample(APPROVALS)], tmp_path, autostart=False)
    during: list[tuple[str | None, bool]] = []
    settle = ApprovalModal._settle_layout

    async def keys_then_settle(self: ApprovalModal) -> None:
        # Inside the warm-up, while the sample is on the (off-screen) prompt.
        self.action_approve()
        self.action_deny()
        self.action_deny_and_stop()
        during.append((self.request.request_id if self.request else None, self.settled))
        await settle(self)

    ApprovalModal._settle_layout = keys_then_settle  # type: ignore[method-assign]
    try:
        async with running(app, harness) as pilot:
            modal = app.approval_prompt
            await wait_until(pilot, lambda: modal.ready, "the prompt's warm-up")
            assert modal.request is None and modal.settled
            assert app.gate.pending == []
    finally:
        ApprovalModal._settle_layout = settle  # type: ignore[method-assign]
    assert during and all(request_id == WARM_UP and settled for request_id, settled in during)
    assert not (tmp_path / "operator_decisions.jsonl").exists() or decisions(tmp_path) == []
