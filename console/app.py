"""The operator console: a Textual app that renders the core's events and sends the
operator's commands (approve, deny, lock, unlock, pause, quit) back to the core.

The core runs in a thread worker with its own event loop. Events reach the UI through
`EventFeed` and are drained 5 times a second in one batch; approval requests take their
own un-batched path so the prompt appears at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid
from textual.dom import DOMNode
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from console import exit_codes
from console.approval_prompt import DEFAULT_ARM_DELAY_S, ApprovalModal
from console.export import export_pane
from console.feed import EventFeed
from console.filter_prompt import FilterPrompt
from console.health_explain import HealthExplained
from console.keymap import keys_in_force
from console.modals import ConfirmModal, HelpScreen
from console.notice import ApprovalNotice
from console.panes import (
    ApprovalsPane,
    ConflictsPane,
    HealthPane,
    KeysFooter,
    LockBanner,
    LogPane,
    Pane,
    SignalsPane,
    StatusBar,
    ToolLogPane,
    TransitionsPane,
)
from console.row_detail import RowDetail
from console.row_log import RowLog
from console.run_view import RunView
from core.approval import ApprovalRequest, QueueGate
from core.events import Event
from core.harness import Phase24Harness
from core.inert import inert

PANES = (
    ("transitions", "State transitions"),
    ("tools", "Tool execution log"),
    ("conflicts", "Conflicts"),
    ("health", "Health"),
    ("approvals", "Approvals queue"),
    ("signals", "Learning signals"),
)
DRAIN_PER_TICK = 25_000
PROMPT_LINGER_S = 0.08  # an answered prompt with no request waiting closes this much later
SWITCH_INTERVAL_S = 0.001
NARROW_WIDTH = 120
NARROW_HEIGHT = 36
# Below this the console shows only "terminal too small" (the lock key still works).
TINY_WIDTH = 50
TINY_HEIGHT = 14


@dataclass
class ApprovalArrived(Message):
    """An approval request left the core (posted from the core's thread)."""

    request: ApprovalRequest


class ConsoleGate(QueueGate):
    """The Phase 13 gate as the operator: requests wait until answered at the console.

    A request's countdown starts when its prompt is on screen, not when it was made: a
    request queued behind another keeps its whole time.
    """

    def __init__(self) -> None:
        super().__init__(timeout_from_shown=True)
        self.app: App[int] | None = None
        self.on_request = self._forward

    def _forward(self, request: ApprovalRequest) -> None:
        if self.app is not None:
            self.app.post_message(ApprovalArrived(request))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OperatorConsole(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "Phase 24 operator console"
    # Every binding has an id: a keymap file (console/keymap.py) may move it to another key.
    BINDINGS = [
        Binding("l", "lock", "Lock", priority=True, id="lock"),
        Binding("ctrl+l", "lock", "Lock", show=False, priority=True, id="lock_typing"),
        Binding("u", "unlock", "Unlock", id="unlock"),
        # Priority: these work on every screen, the approval prompt included (a printable
        # key still goes to a focused text box first).
        Binding("p", "pause", "Pause/Resume", priority=True, id="pause"),
        Binding("question_mark", "help", "Help", key_display="?", priority=True, id="help"),
        Binding("q", "quit_run", "Quit", priority=True, id="quit"),
        *(
            Binding(str(i + 1), f"show_pane('{key}')", title, show=False, priority=True, id=f"pane_{i + 1}")
            for i, (key, title) in enumerate(PANES)
        ),
        # Find and inspect: on the main screen only (a prompt's keys win on its own screen).
        Binding("slash", "filter", "Filter", key_display="/", id="filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
        Binding("f", "follow", "Follow", show=False, id="follow"),
        Binding("ctrl+s", "export", "Export", show=False, id="export"),
    ]

    def __init__(
        self,
        harness: Phase24Harness,
        gate: ConsoleGate,
        *,
        autostart: bool = True,
        now: Callable[[], datetime] = _utcnow,
        tick_s: float = 0.2,  # 5 Hz: each frame costs the GIL-sharing core; 10 Hz measured ~15% slower
        arm_delay: float = DEFAULT_ARM_DELAY_S,
    ) -> None:
        super().__init__()
        self.harness = harness
        # Exports go to the run's directory; an attached console (no run here) to the current one.
        config = getattr(harness, "config", None)
        export_dir = config.output_dir if config is not None else Path.cwd()
        self._init_screen_state(gate, export_dir, autostart, now, tick_s, arm_delay)
        self._unsubscribe: Callable[[], None] = harness.bus.subscribe(self.feed)

    def _init_screen_state(
        self,
        gate: ConsoleGate,
        export_dir: Path,
        autostart: bool,
        now: Callable[[], datetime],
        tick_s: float,
        arm_delay: float,
    ) -> None:
        """Everything but the core: a replay (console/replay.py) has no harness."""
        self.gate = gate
        gate.app = self
        self.export_dir = export_dir
        self.notice = ApprovalNotice()  # bell and desktop notification: off unless asked for
        self.keymap: dict[str, str] = {}
        self.autostart = autostart
        self.now = now
        self.tick_s = tick_s
        self.feed = EventFeed()
        self.view = RunView()
        self.active_pane = "transitions"
        # One approval prompt for the session, composed at start-up and filled per request.
        self.approval_prompt = ApprovalModal(
            None,
            seconds_left=gate.seconds_left,
            waiting=lambda: len(gate.pending),
            is_pending=gate.is_pending,
            on_shown=gate.mark_shown,
            stay_up=self._approval_waiting,
            arm_delay=arm_delay,
        )
        self.current_modal: ApprovalModal | None = None
        self.core_worker: Worker[object] | None = None
        self.core_error: str | None = None
        self._approvals: deque[ApprovalRequest] = deque()  # arrived, not yet on the prompt; oldest first
        self._approval_arrived = asyncio.Event()
        self._quit_requested = False
        self._prompt_prepared = False
        self._switch_interval = sys.getswitchinterval()

    # -- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="too-small")
        # attached or serving (console/remote.py, service/embedded.py); a replay has no harness
        badge = getattr(getattr(self, "harness", None), "badge", "")
        if badge:
            yield Static(badge, id="attach-badge", markup=False)
        yield LockBanner(id="lock-banner")
        yield StatusBar(id="status-bar")
        yield Tabs(*(Tab(f"{i + 1} {title}", id=f"tab-{key}") for i, (key, title) in enumerate(PANES)), id="pane-tabs")
        with Grid(id="panes"):
            yield TransitionsPane("State transitions", id="transitions")
            yield HealthPane("Health", id="health")
            yield ToolLogPane("Tool execution log", id="tools")
            yield ApprovalsPane("Approvals queue (oldest first)", id="approvals")
            yield ConflictsPane("Conflicts", id="conflicts")
            yield SignalsPane("Learning signals", id="signals")
        yield KeysFooter()

    def on_mount(self) -> None:
        # The core runs in a thread of this process: hand the GIL over more often than the
        # default 5 ms, so a key press or an approval prompt is not kept waiting behind it.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.theme = "textual-dark"
        self.install_screen(self.approval_prompt, "approval")
        self.call_after_refresh(self._prepare_prompt)
        self._apply_size()
        self.query_one(StatusBar).render_view(self.view)
        self.set_interval(self.tick_s, self.drain)
        self.set_interval(1.0, self._countdowns)
        self.run_worker(self._approval_loop(), group="approvals", name="approvals")

    def _prepare_prompt(self) -> None:
        """After the first frame: compose and mount the approval prompt off screen, lay it out
        and render it once there (`ApprovalModal.warm_up`), then start the run. So the first
        request's prompt appears as fast as every later one: it does not wait for the prompt
        to be composed, nor for Textual's stylesheet re-parse when a new widget type first
        mounts, nor for the first layout and drawing of the prompt. `_get_screen` is Textual
        8.2.8's own first step of `push_screen` (private; Textual is pinned)."""
        if self._prompt_prepared:
            return
        self._prompt_prepared = True
        _, mounted = self._get_screen(self.approval_prompt)
        self.run_worker(self._ready_then_start(mounted), group="start", name="start")

    async def _ready_then_start(self, mounted: Awaitable[None]) -> None:
        await mounted
        self._render_header()  # the prompt's status line too: its first text is laid out now
        try:
            await self.approval_prompt.warm_up()
        except Exception as error:  # a speed-up only: the prompt works without it
            self.approval_prompt.ready = True
            self.log.warning(f"approval prompt warm-up failed: {error!r}")
        if self.autostart and self.core_worker is None and not self._quit_requested:
            self.start_core()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        self._unsubscribe()  # the harness may outlive the app (tests, resume)

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: this handler runs before App's own, which updates `self.size`.
        self._apply_size(event.size)

    def _apply_size(self, size: Size | None = None) -> None:
        # The main screen's layout follows the terminal's size also while a prompt or another
        # screen is on top (self.screen is then that screen, not the main one).
        width, height = size or self.size
        main = self.screen_stack[0]
        narrow = width < NARROW_WIDTH or height < NARROW_HEIGHT
        tiny = width < TINY_WIDTH or height < TINY_HEIGHT
        main.set_class(narrow, "-narrow")
        main.set_class(tiny, "-tiny")
        if tiny:
            self.query_one("#too-small", Static).update(
                Text(
                    f"Terminal too small ({width}x{height}): enlarge it to at least {TINY_WIDTH}x{TINY_HEIGHT}."
                    " l locks, q quits.",
                    style="bold reverse yellow",
                )
            )
        self.show_pane(self.active_pane)

    def show_pane(self, key: str) -> None:
        self.active_pane = key
        for pane_key, _ in PANES:
            self.query_one(f"#{pane_key}").set_class(pane_key == key, "-active")
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{key}":
            tabs.active = f"tab-{key}"

    def focused_pane(self) -> Pane:
        """The pane holding the focus, else the one on show (narrow terminals)."""
        node: DOMNode | None = self.screen_stack[0].focused
        while node is not None:
            if isinstance(node, Pane):
                return node
            node = node.parent
        return self.query_one(f"#{self.active_pane}", Pane)

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id:
            key = event.tab.id.removeprefix("tab-")
            if key != self.active_pane:
                self.show_pane(key)

    # -- the core ---------------------------------------------------------------------

    def start_core(self) -> None:
        self.core_worker = self.run_worker(self._run_core, thread=True, group="core", name="core", exit_on_error=False)

    def _run_core(self) -> object:
        return asyncio.run(self.harness.run_pipeline())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.core_worker:
            return
        if event.state is WorkerState.ERROR:
            self.core_error = inert(f"{type(event.worker.error).__name__}: {event.worker.error}", 500)
            self.notify(f"The run stopped with an error: {self.core_error}", severity="error", markup=False)
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.drain()
            lost = getattr(self.harness, "lost", None)  # an attached console's service is gone
            if isinstance(lost, str) and not self.view.finished and self.is_running:
                self.view.detached = True
                self._render_header()
                self.notify(lost, title="detached", severity="error", timeout=30, markup=False)
            if self._quit_requested:
                self.exit(self.exit_code_for_run())

    def exit_code_for_run(self) -> int:
        if self.core_error is not None:
            return exit_codes.PLAN_FAILED
        summary = self.harness.summary
        if getattr(self.harness, "storage_error", None) or (summary and summary.get("storage_error")):
            return exit_codes.STORAGE_FAILED
        if not summary:  # the run never finished (quit before it started)
            return exit_codes.INTERRUPTED if self._quit_requested else exit_codes.OK
        return exit_codes.for_summary(summary)

    def ingest(self, events: Iterable[Event]) -> None:
        """Feed events as the core would (tests and replays)."""
        for event in events:
            self.feed(event)

    # -- rendering --------------------------------------------------------------------

    def drain(self) -> None:
        # A bounded slice per tick: a backlog drains over several ticks and keys, timers
        # and repaints get their turn in between.
        if not self.is_running:
            # Shutting down: the drain timer runs in its own task and can fire while
            # Textual removes the screens, so there may be no panes left to render into.
            return
        events = self.feed.drain(DRAIN_PER_TICK)
        if not events:
            return
        changes = self.view.apply(events)
        with self.batch_update():
            if changes.transitions:
                self.query_one("#transitions-log", RowLog).add_rows(changes.transitions, changes.transition_events)
            if changes.tools:
                self.query_one("#tools-log", RowLog).add_rows(changes.tools, changes.tool_events)
            if changes.signals:
                self.query_one("#signals-log", RowLog).add_rows(changes.signals, changes.signal_events)
            if changes.conflicts:
                self.query_one(ConflictsPane).render_rows(self.view, changes.conflicts)
            if changes.health:
                self.query_one(HealthPane).render_view(self.view)
            if changes.approvals:
                self._render_approvals()
            self._render_header(changes.header)
            if changes.header:
                self.refresh_bindings()
        if changes.unknown:
            self.notify(
                "Outcome UNKNOWN (after a crash, or a grant's lease ran out), never retried; check the real system:\n"
                + "\n".join(self.view.unknown_outcomes),
                title="Unknown outcomes",
                severity="error",
                timeout=60,
                markup=False,
            )
        for request_id in changes.decided:
            if self.current_modal is not None:
                self.current_modal.settle_elsewhere(request_id)

    def _render_header(self, banner: bool = True) -> None:
        """The status line (and the lock banner) on the main screen and above the prompt."""
        prompt = self.approval_prompt
        bars = [self.query_one("#status-bar", StatusBar)]
        banners = [self.query_one("#lock-banner", LockBanner)] if banner else []
        if prompt.is_mounted:
            bars.append(prompt.query_one("#prompt-status-bar", StatusBar))
            if banner:
                banners.append(prompt.query_one("#prompt-lock-banner", LockBanner))
        for bar in bars:
            bar.render_view(self.view)
        for widget in banners:
            widget.render_view(self.view)

    def _render_approvals(self) -> None:
        self.query_one(ApprovalsPane).render_view(self.view, self.gate.seconds_left_of, self.now)

    def _countdowns(self) -> None:
        if self.is_running and self.view.pending:
            self._render_approvals()

    # -- approvals --------------------------------------------------------------------

    def on_approval_arrived(self, message: ApprovalArrived) -> None:
        self._approvals.append(message.request)
        self._approval_arrived.set()
        self.notice.approval_requested(message.request, self.bell)

    def _still_pending(self) -> set[str]:
        return set() if self._quit_requested else {r.request_id for r in self.gate.pending}

    def _approval_waiting(self) -> bool:
        """The prompt stays up after an answer (the approval loop fills it with the next request
        or, after PROMPT_LINGER_S with none, closes it): only for a request it put on the prompt,
        and not once the operator quit."""
        return self.current_modal is not None and not self._quit_requested

    def _next_approval(self) -> ApprovalRequest | None:
        """The oldest queued request that still waits for an answer; settled ones are dropped."""
        pending = self._still_pending()
        while self._approvals:
            request = self._approvals.popleft()
            if request.request_id in pending:
                return request
        return None

    async def _approval_loop(self) -> None:
        """One request on the prompt at a time, oldest first. The prompt goes up for a request
        and stays up while requests wait: after an answer it is filled with the next one where
        it is (a repaint of the prompt; popping it would draw the whole main screen first)."""
        modal = self.approval_prompt
        while True:
            request = self._next_approval()
            if request is None:
                self._approval_arrived.clear()
                if modal.settled and modal in self.screen_stack:
                    # Answered with nothing waiting: the prompt stays up a moment. A request in
                    # that time is filled in place; closing and reopening it would first draw
                    # the whole main screen (tens of ms) while the request waits.
                    try:
                        await asyncio.wait_for(self._approval_arrived.wait(), PROMPT_LINGER_S)
                        continue
                    except TimeoutError:
                        pass
                    modal.close()
                    continue
                await self._approval_arrived.wait()
                continue
            while not modal.ready:
                # A request before the prompt was composed and warmed up off screen (that
                # happens after the first frame; a service's agents may come before it): wait
                # for it, so the prompt is filled before it goes on screen.
                self._prepare_prompt()
                await asyncio.sleep(0.005)
            answer = modal.show_request(request)
            self.current_modal = modal
            if modal not in self.screen_stack:
                self._render_header()  # the prompt's own status line and lock banner, current before it shows
                self.push_screen(modal)
            decision = await answer
            self.current_modal = None
            if decision is not None:
                self.gate.answer(decision)

    # -- operator commands ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("lock", "unlock", "pause") and getattr(getattr(self, "harness", None), "read_only", False):
            return False  # a read-only attached console: command keys hidden (the service refuses them too)
        if action == "lock":
            return None if self.harness.controller.locked else True
        if action == "unlock":
            return True if self.harness.controller.locked else None
        if action == "pause":
            return None if self.view.finished else True
        return True

    def action_lock(self) -> None:
        if self.harness.lock("lock key pressed at the console", "operator"):
            self.view.locked = True
            self.view.lock_reason = "lock key pressed at the console"
            self._render_header()
            self.refresh_bindings()

    def action_unlock(self) -> None:
        if not self.harness.controller.locked:
            return

        def answered(confirm: bool | None) -> None:
            if confirm:
                self.harness.unlock("unlock confirmed at the console", "operator")
                self.refresh_bindings()

        self.push_screen(
            ConfirmModal("Unlock the system? Actions may escalate above MOCK again (approvals still apply)."),
            answered,
        )

    def action_pause(self) -> None:
        if self.harness.paused:
            self.harness.resume("operator")
        else:
            self.harness.pause("operator")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen(keys_in_force(type(self), self.keymap)))

    def action_show_pane(self, key: str) -> None:
        self.show_pane(key)
        if self.screen is not self.screen_stack[0]:
            return  # a prompt or dialog on top keeps its own focus
        pane = self.query_one(f"#{key}", Pane)
        focusable = pane.query("RowLog, DataTable")
        if focusable:
            focusable.first().focus()
        elif pane.can_focus:
            pane.focus()

    # -- find and inspect -------------------------------------------------------------

    def on_main_screen(self) -> bool:
        """Find, inspect and export act on the panes: not while a prompt or dialog is on top.
        (Checked in the actions, not in check_action: a binding enabled or not by screen
        would rebuild the Footer each time a prompt comes and goes.)"""
        return self.screen is self.screen_stack[0]

    def action_filter(self) -> None:
        if not self.on_main_screen():
            return
        pane = self.focused_pane()

        def apply(text: str | None) -> None:
            if text is not None:
                self.set_pane_filter(pane, text)

        self.push_screen(FilterPrompt(pane.title, pane.filter_text), apply)

    def set_pane_filter(self, pane: Pane, text: str) -> None:
        if isinstance(pane, LogPane):
            pane.row_log.set_filter(text)
        elif isinstance(pane, ConflictsPane):
            pane.set_filter(self.view, text)
        elif isinstance(pane, ApprovalsPane):
            pane.show_state(text)
            self._render_approvals()
        else:
            self.notify(f"The {pane.title} pane has no rows to filter.", markup=False)

    def action_clear_filter(self) -> None:
        if not self.on_main_screen():
            return
        pane = self.focused_pane()
        if pane.filter_text:
            self.set_pane_filter(pane, "")

    def action_follow(self) -> None:
        if not self.on_main_screen():
            return
        pane = self.focused_pane()
        if isinstance(pane, LogPane):
            pane.row_log.follow()

    def action_open_row(self) -> None:
        if not self.on_main_screen():
            return
        pane = self.focused_pane()
        if isinstance(pane, LogPane):
            pane.row_log.action_open_row()
        elif isinstance(pane, HealthPane):
            self.action_explain_health()
        else:
            table = pane.query(DataTable)
            if table and table.first().row_count:
                table.first().action_select_cursor()

    def use_keymap(self, keymap: dict[str, str]) -> None:
        """Keys moved by a validated keymap (console/keymap.py); the help shows them."""
        self.keymap = dict(keymap)
        self.set_keymap(keymap)

    def action_explain_health(self) -> None:
        self.push_screen(HealthExplained(self.view))

    def action_export(self) -> None:
        if not self.on_main_screen():
            return
        pane = self.focused_pane()
        try:
            svg, rows, count = export_pane(self, self.view, pane, self.export_dir, self.now())
        except OSError as exc:
            self.notify(f"Export failed: {exc}", severity="error", markup=False)
            return
        self.notify(f"Saved the screen to {svg}\nand {count} rows of {pane.title} to {rows}", markup=False, timeout=10)

    def on_row_log_row_opened(self, message: RowLog.RowOpened) -> None:
        self.push_screen(RowDetail(message.event, self.view.related))

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        key = message.row_key.value
        if key is None:
            return
        event: Event | None = None
        if message.data_table.id == "conflicts-table":
            found = self.view.related.conflicts.get(key)
            event = (found[1] or found[0]) if found else None
        elif message.data_table.id == "approvals-table":
            event = self.view.pending.get(key)
        if event is not None:
            self.push_screen(RowDetail(event, self.view.related))

    def action_quit_run(self) -> None:
        worker = self.core_worker
        if worker is None or worker.state not in (WorkerState.PENDING, WorkerState.RUNNING):
            self.exit(self.exit_code_for_run())
            return
        self._quit_requested = True
        self.view.stopping = True
        self._render_header(banner=False)
        self.harness.stop("operator quit")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield SystemCommand("Lock", "Drop everything to MOCK now and deny pending approvals", self.action_lock)
        yield SystemCommand("Unlock", "Allow escalation above MOCK again (asks to confirm)", self.action_unlock)
        yield SystemCommand("Pause / resume", "Stop starting new actions, or carry on", self.action_pause)
        yield SystemCommand("Help", "Every key of the console", self.action_help)
        yield SystemCommand("Quit", "Stop the run cleanly and leave", self.action_quit_run)
        yield SystemCommand("Filter the pane", "Show only rows containing a text (/; Esc clears)", self.action_filter)
        yield SystemCommand("Follow", "Back to the newest row and keep following (f or End)", self.action_follow)
        yield SystemCommand(
            "Export",
            "Save a screenshot (SVG) and the focused pane's rows (JSONL) to the run's directory",
            self.action_export,
        )
        yield SystemCommand(
            "Explain health",
            "Each metric's share of the score, its threshold and trend; the rules that fired",
            self.action_explain_health,
        )
        yield SystemCommand("Row detail", "The selected row in full, with its links (Enter)", self.action_open_row)
        for key, title in PANES:
            yield SystemCommand(
                f"Show {title}", f"Bring the {title.lower()} pane forward", lambda k=key: self.show_pane(k)
            )


def make_app(
    harness: Phase24Harness,
    gate: ConsoleGate,
    *,
    autostart: bool = True,
    now: Callable[[], datetime] | None = None,
    arm_delay: float = DEFAULT_ARM_DELAY_S,
) -> OperatorConsole:
    """The one factory for the CLI and the tests alike. Countdowns read the run's clock."""
    return OperatorConsole(harness, gate, autostart=autostart, now=now or harness.clock.now, arm_delay=arm_delay)


def run_console(args: argparse.Namespace) -> int:
    from console.cli import prepare
    from console.console_options import apply_console_options, arm_delay_of, load_console_keymap

    keymap = load_console_keymap(args, OperatorConsole)  # a bad keys file stops us before the run
    gate = ConsoleGate()
    harness = prepare(args, gate=gate)
    app = make_app(harness, gate, arm_delay=arm_delay_of(args))
    apply_console_options(app, args, keymap)
    code = app.run()
    out = harness.config.output_dir
    summary = harness.summary
    if summary:
        print(
            f"Run {summary['pipeline_id']} {summary['status']}: {summary['plans_successful']} of"
            f" {summary['plans_processed']} plans run succeeded ({summary['plans_processed']} of"
            f" {summary['plans_total']} run{', interrupted by the operator' if summary['interrupted'] else ''}"
            f"{', system LOCKED' if summary['locked'] else ''}). Outputs in {out}"
        )
    if getattr(harness, "storage_error", None) or (summary and summary.get("storage_error")):
        from console.storage_failure import report_storage_failure

        return report_storage_failure(harness, None)  # exit 4, the same report as `phase24 run`
    return code if code is not None else exit_codes.OK
