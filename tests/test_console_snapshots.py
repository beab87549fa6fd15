"""Snapshots of the console (pytest-textual-snapshot). Update with `pytest --snapshot-update`.

Deterministic by construction: the core is never started by the app (autostart=False); the events
come from a headless run on a ManualClock with a fixed start and run id, are fed with `ingest`
and drawn with `drain`; the console's clock is a fixed instant; theme, size and animation are
pinned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from console.app import ConsoleGate, OperatorConsole, make_app
from console.approval_prompt import ApprovalModal
from core.approval import ApprovalGate, ApprovalRequest, PolicyGate, QueueGate
from core.events import ApprovalRequested, ConflictDetected, Event, HealthUpdated
from core.harness import Phase24Harness
from tests.console_fixtures import FIXED_START, action, build_harness, sample

SIZE = (160, 48)
FIXED_NOW = FIXED_START + timedelta(seconds=30)
RUN_ID = "phase24_snapshot"

Snap = Callable[..., bool]


def headless(
    plans: list[dict[str, Any]], gate: ApprovalGate | None = None, **config: Any
) -> tuple[Phase24Harness, list[Event]]:
    """Run plans on virtual time with no output files; return the harness and every event."""
    harness, events = build_harness(plans, None, gate=gate, run_id=RUN_ID, **config)
    harness.execute_orchestration_pipeline()
    return harness, list(events)


def app_for(harness: Phase24Harness | None = None) -> OperatorConsole:
    if harness is None:
        harness, _ = build_harness([sample("happy_path.json")], None, run_id=RUN_ID)
    # Arming is driven by the tests (a timer firing mid-snapshot would change the picture).
    app = make_app(harness, ConsoleGate(), autostart=False, now=lambda: FIXED_NOW, arm_delay=3600)
    app.animation_level = "none"
    return app


def feed(app: OperatorConsole, events: list[Event]) -> None:
    """Ingest and draw, one tick per new conflict.

    The conflicts pane adds the rows of one tick in `set` order (see the xfail in
    test_console_pilot.py), so feeding several new conflicts in one tick would make the row
    order depend on PYTHONHASHSEED.
    """
    batch: list[Event] = []
    for event in events:
        if isinstance(event, ConflictDetected) and batch:
            app.ingest(batch)
            app.drain()
            batch = []
        batch.append(event)
    app.ingest(batch)
    app.drain()


def fed(events: list[Event], then: Callable[[Pilot[Any]], Awaitable[None]] | None = None):
    async def run_before(pilot: Pilot[Any]) -> None:
        feed(pilot.app, events)  # type: ignore[arg-type]
        await pilot.pause()
        if then is not None:
            await then(pilot)
        await pilot.pause()

    return run_before


def test_idle(snap_compare: Snap) -> None:
    app = app_for()

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_running(snap_compare: Snap) -> None:
    harness, events = headless([sample("happy_path.json"), sample("rollback.json")])
    # Cut the stream in the middle of the second plan: the run is still going.
    second_plan = next(i for i, e in enumerate(events) if e.kind == "plan_started" and e.plan_index == 1)
    shown = events[: second_plan + 12]
    assert all(e.kind != "run_finished" for e in shown)
    app = app_for(harness)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(shown))


def hostile_request() -> tuple[Phase24Harness, list[Event], ApprovalRequest]:
    harness, events = headless([sample("approvals.json")])
    # The request whose arguments carry hostile text (escape codes, markup, a bidi override).
    asked = next(e for e in events if isinstance(e, ApprovalRequested) and e.action_id == "send_welcome")
    shown = events[: events.index(asked) + 1]
    request = ApprovalRequest(
        request_id=asked.request_id,
        plan_id=asked.plan_id,
        action_id=asked.action_id,
        agent=asked.agent,
        tool=asked.tool,
        risk_level=asked.risk_level,
        reversible=asked.reversible,
        confidence=asked.confidence,
        threshold=asked.threshold,
        args=asked.args,
        action_hash=asked.action_hash,
        requested_at=asked.ts,
        timeout_s=asked.timeout_s,
    )
    return harness, shown, request


def prompt_for(request: ApprovalRequest, armed: bool = True) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def push(pilot: Pilot[Any]) -> None:
        modal = pilot.app.approval_prompt  # type: ignore[attr-defined]
        assert isinstance(modal, ApprovalModal)
        modal.is_pending = lambda request_id: True  # fed events, no core: the request stands as pending
        while not modal.ready:  # as the console does: no request before its warm-up off screen
            await pilot.pause(0.01)
        modal.show_request(request)
        await pilot.app.push_screen(modal)
        await pilot.pause()
        modal.armed = armed
        modal._show_keys()
        modal._tick()

    return push


def test_approval_prompt(snap_compare: Snap) -> None:
    harness, shown, request = hostile_request()
    assert snap_compare(app_for(harness), terminal_size=SIZE, run_before=fed(shown, prompt_for(request)))


def test_approval_prompt_before_it_is_armed(snap_compare: Snap) -> None:
    """Keys dimmed, and the prompt says to wait: nothing answers it yet."""
    harness, shown, request = hostile_request()
    assert snap_compare(app_for(harness), terminal_size=SIZE, run_before=fed(shown, prompt_for(request, armed=False)))


def test_approval_prompt_80x24_long_arguments_scroll_and_keys_stay_on_screen(snap_compare: Snap) -> None:
    harness, shown, request = hostile_request()
    long = request.model_copy(update={"args": {f"field_{i:02d}": f"value {i}" for i in range(9)} | request.args})
    assert snap_compare(app_for(harness), terminal_size=(80, 24), run_before=fed(shown, prompt_for(long)))


def test_approval_prompt_60x20_asks_to_enlarge_the_terminal(snap_compare: Snap) -> None:
    harness, shown, request = hostile_request()
    assert snap_compare(app_for(harness), terminal_size=(60, 20), run_before=fed(shown, prompt_for(request)))


def test_terminal_too_small(snap_compare: Snap) -> None:
    assert snap_compare(app_for(), terminal_size=(40, 12), run_before=fed([]))


def test_locked(snap_compare: Snap) -> None:
    """The operator locks when the first approval is asked: pending and later approvals are denied."""
    gate = QueueGate()
    harness, _ = build_harness([sample("approvals.json")], None, gate=gate, run_id=RUN_ID)
    gate.on_request = lambda request: harness.lock("lock key pressed at the console", "operator")
    events: list[Event] = []
    harness.bus.subscribe(events.append)
    harness.execute_orchestration_pipeline()
    assert harness.controller.locked
    app = app_for(harness)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(events))


def test_conflicts(snap_compare: Snap) -> None:
    harness, events = headless([sample("conflicts.json")], gate=PolicyGate(approve_all=True))
    assert sum(isinstance(e, ConflictDetected) for e in events) >= 6
    app = app_for(harness)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(events))


def test_conflicts_tab_on_a_narrow_terminal(snap_compare: Snap) -> None:
    harness, events = headless([sample("conflicts.json")], gate=PolicyGate(approve_all=True))
    app = app_for(harness)
    assert snap_compare(app, terminal_size=(100, 30), run_before=fed(events), press=["3"])


def degraded_plan() -> dict[str, Any]:
    """Approved LIVE writes that fail and many MOCK failures: POOR health with anomalies."""
    actions = []
    for i in range(12):
        agent = f"agent_{i % 3}"
        if i % 3 == 0:
            simulate = {"latency_ms": 40, "fail_in": ["LIVE"]}
            actions.append(action(f"w{i:02d}", agent, "database_write", 0.95, resource="db:orders", simulate=simulate))
        else:
            simulate = {"latency_ms": 30, "fail_in": ["MOCK"]}
            resource = "db:orders" if i % 2 else None
            actions.append(action(f"m{i:02d}", agent, "math_compute", 0.95, resource=resource, simulate=simulate))
    return {"plan_id": "degraded", "actions": actions}


def test_degraded_health_with_anomalies(snap_compare: Snap) -> None:
    harness, events = headless(
        [degraded_plan()],
        gate=PolicyGate(approve_all=True),
        health_every=2,
        health_min_interval_s=0,
        enable_rollback_on_failure=False,
    )
    health = [e for e in events if isinstance(e, HealthUpdated)]
    assert len(health) >= 4
    assert health[-1].health_assessment == "POOR"
    assert len(health[-1].anomalies) >= 2
    app = app_for(harness)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(events))


def test_help_overlay(snap_compare: Snap) -> None:
    assert snap_compare(app_for(), terminal_size=SIZE, press=["question_mark"])


def test_row_detail_of_a_denied_transition(snap_compare: Snap) -> None:
    harness, events = headless([sample("approvals.json")])

    async def open_detail(pilot: Pilot[Any]) -> None:
        await pilot.press("1", "enter")

    assert snap_compare(app_for(harness), terminal_size=SIZE, run_before=fed(events, open_detail))


def test_transitions_filtered_and_scrolled_back(snap_compare: Snap) -> None:
    harness, events = headless([sample("approvals.json")])

    async def filter_and_scroll(pilot: Pilot[Any]) -> None:
        pilot.app.query_one("#transitions-log").set_filter("approval")  # type: ignore[attr-defined]
        await pilot.press("1", "up")

    assert snap_compare(app_for(harness), terminal_size=SIZE, run_before=fed(events, filter_and_scroll))


def test_replay_paused_after_three_steps(snap_compare: Snap, tmp_path: Path) -> None:
    from console.replay import ReplayConsole
    from core.journal import read_events

    out = tmp_path / "run"
    harness, _ = build_harness([sample("conflicts.json")], out, run_id=RUN_ID)
    harness.execute_orchestration_pipeline()
    app = ReplayConsole(list(read_events(out)), out, speed=1.0, paused=True)
    app.animation_level = "none"
    app.title = "Replay"  # not the temporary directory's name, which changes per run
    assert snap_compare(app, terminal_size=SIZE, press=["period"] * 40)


def test_health_explained(snap_compare: Snap) -> None:
    harness, events = headless(
        [degraded_plan()],
        gate=PolicyGate(approve_all=True),
        health_every=2,
        health_min_interval_s=0,
        enable_rollback_on_failure=False,
    )

    async def explain(pilot: Pilot[Any]) -> None:
        await pilot.press("4", "enter")

    assert snap_compare(app_for(harness), terminal_size=SIZE, run_before=fed(events, explain))
