"""`phase24 replay RUN_DIR`: a finished or crashed run's journal played in the console.

The replay is a producer that feeds the same console the core would: events go through
`ingest` at the pace their timestamps give (times `--speed`). It is read-only by
construction: there is no harness and no core, so no key reaches one; the lock, unlock and
approval keys say so instead. `p` pauses, `.` steps one event while paused.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen

from console import exit_codes
from console.app import ConsoleGate, OperatorConsole
from console.approval_prompt import DEFAULT_ARM_DELAY_S
from console.panes import Readout
from core.events import Event

# A quiet stretch in the journal (an operator thinking, a crash and a resume) is shortened
# to this, so a replay never sits still for minutes.
MAX_GAP_S = 2.0
BATCH = 2_000  # events ingested at most per step of the producer, so keys and frames get their turn


def speed_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.01 <= value <= 1_000_000):
        raise argparse.ArgumentTypeError(f"expected 0.01 to 1000000, got {text!r}")
    return value


class ReplayConsole(OperatorConsole):
    """The operator console fed from a journal; nothing in it can reach a core."""

    CSS = "#replay-bar { height: 1; background: $panel; }"
    BINDINGS = [
        Binding("period", "step", "Step", key_display=".", id="step"),
        Binding("plus", "speed(2.0)", "Faster", key_display="+", show=False, id="faster"),
        Binding("minus", "speed(0.5)", "Slower", key_display="-", show=False, id="slower"),
    ]

    def __init__(
        self,
        events: Sequence[Event],
        run_dir: Path,
        *,
        speed: float = 1.0,
        paused: bool = False,
        tick_s: float = 0.2,
    ) -> None:
        # Not OperatorConsole.__init__: that one connects a harness, and a replay has none.
        super(OperatorConsole, self).__init__()
        self.events = list(events)
        self.run_dir = run_dir
        self.speed = speed
        self.position = 0  # events fed so far
        self.replay_paused = paused
        self._wake = asyncio.Event()
        # A gate no core is connected to: it never holds a request, so no prompt ever shows.
        self._init_screen_state(ConsoleGate(), run_dir, True, self._replay_now, tick_s, DEFAULT_ARM_DELAY_S)
        self._unsubscribe = lambda: None  # no bus to leave
        self.title = f"Replay of {run_dir}"

    def _replay_now(self) -> datetime:
        """The replay's clock: the time of the last event shown (countdowns, waits)."""
        if self.position == 0:
            return self.events[0].ts
        return self.events[self.position - 1].ts

    def compose(self) -> ComposeResult:
        yield Readout(Text(""), id="replay-bar")
        yield from super().compose()

    # -- the producer -----------------------------------------------------------------

    def start_core(self) -> None:
        self.set_interval(self.tick_s, self._render_replay_bar)
        self._render_replay_bar()
        self.run_worker(self._play(), group="replay", name="replay")

    def _gap(self, index: int) -> float:
        if index == 0:
            return 0.0
        seconds = (self.events[index].ts - self.events[index - 1].ts).total_seconds()
        return max(0.0, min(MAX_GAP_S, seconds)) / self.speed

    def _emit(self, count: int) -> None:
        end = min(len(self.events), self.position + count)
        self.ingest(self.events[self.position : end])
        self.position = end

    async def _play(self) -> None:
        while self.position < len(self.events):
            if self.replay_paused:
                self._wake.clear()
                await self._wake.wait()
                continue
            gap = self._gap(self.position)
            if gap > 0.001:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), gap)
                    continue  # paused, stepped or sped up meanwhile: look again
                except TimeoutError:
                    pass
            # This event and those right behind it (within a millisecond of replay time).
            count = 1
            while (
                count < BATCH and self.position + count < len(self.events) and self._gap(self.position + count) <= 0.001
            ):
                count += 1
            self._emit(count)
            await asyncio.sleep(0)
        self._render_replay_bar()

    def _render_replay_bar(self) -> None:
        if not self.is_running:  # a timer tick during shutdown: the bar may be gone
            return
        total = len(self.events)
        text = Text.assemble(
            (" REPLAY ", "bold reverse cyan"),
            f" read-only  event {self.position}/{total}  speed {self.speed:g}x  ",
        )
        if self.position >= total:
            if self.view.finished:
                text.append("end of the journal", style="bold")
            else:
                text.append("end of the journal: the run never finished (crashed or stopped)", style="bold red")
        elif self.replay_paused:
            text.append("PAUSED: p resumes, . steps one event", style="bold yellow")
        else:
            text.append("p pauses", style="dim")
        try:
            bar = self.query_one("#replay-bar", Readout)
        except NoMatches:
            return  # the app is closing (a last tick after its screen's widgets were removed)
        bar.show(text)

    # -- keys: the replay's own, and the operator's commands refused ----------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("lock", "unlock"):
            return None  # shown dimmed: nothing to lock in a replay
        if action == "step":
            return True if self.replay_paused and self.position < len(self.events) else None
        return True

    def action_lock(self) -> None:
        self.notify("A replay is read-only: there is no run to lock (phase24 lock locks the system).")

    def action_unlock(self) -> None:
        self.notify("A replay is read-only: there is no run to unlock.")

    def action_pause(self) -> None:
        self.replay_paused = not self.replay_paused
        self._wake.set()
        self._render_replay_bar()
        self.refresh_bindings()

    def action_step(self) -> None:
        if self.replay_paused and self.position < len(self.events):
            self._emit(1)
            self.drain()
            self._render_replay_bar()
            self.refresh_bindings()

    def action_speed(self, factor: float) -> None:
        self.speed = min(1_000_000.0, max(0.01, self.speed * factor))
        self._wake.set()
        self._render_replay_bar()

    def action_quit_run(self) -> None:
        self.exit(exit_codes.OK)

    def exit_code_for_run(self) -> int:
        return exit_codes.OK

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield SystemCommand("Pause / resume the replay", "Stop or carry on playing the journal", self.action_pause)
        yield SystemCommand("Step", "One event further, while paused (.)", self.action_step)
        for command in super().get_system_commands(screen):
            if command.title not in ("Lock", "Unlock", "Pause / resume"):
                yield command


def cmd_replay(args: argparse.Namespace) -> int:
    from console.console_options import apply_console_options, load_console_keymap
    from core.journal import read_events

    keymap = load_console_keymap(args, ReplayConsole)
    run_dir: Path = args.run_dir
    events = list(read_events(run_dir))
    if not events:
        from console.cli import BadInput

        raise BadInput(f"{run_dir}: the journal holds no events to replay")
    app = ReplayConsole(events, run_dir, speed=args.speed, paused=args.paused)
    apply_console_options(app, args, keymap)
    code = app.run()
    return code if code is not None else exit_codes.OK
