"""`phase24 run` on a terminal: a progress bar (plans and actions done, the current rate)
drawn with rich.progress while the run goes, gone before the summary is printed. When the
output is not a terminal nothing is drawn and the output is exactly what it was without it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from core.events import Event, PlanFinished, PlanStarted, RunStarted, StateTransition
from core.inert import inert

TERMINAL_STATES = frozenset({"COMPLETED", "ABORTED", "LOCKED"})  # core/controller.py _TERMINAL
REFRESH_S = 0.1  # the bar is updated at most this often, whatever the event rate
RATE_WINDOW_S = 2.0  # the "current" rate: actions done over about the last 2 s


class RunProgress:
    """A bus subscriber that counts cheaply on the core's thread and updates the bar at most
    every REFRESH_S (rich's Progress redraws on its own thread)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[actions]}", markup=False),
            TextColumn("{task.fields[rate]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID = self.progress.add_task("starting", total=None, actions="", rate="")
        self.plans_total = 0
        self.plans_done = 0
        self.actions_total = 0
        self.actions_done = 0  # actions of finished plans plus terminal transitions in the current one
        self._finished_plans_actions = 0
        self._plan_actions = 0
        self._plan_done = 0
        self.plan = ""
        self._last_refresh = float("-inf")
        self._samples: deque[tuple[float, int]] = deque()

    @classmethod
    def for_output(cls, stream: IO[str]) -> RunProgress | None:
        """A progress bar on `stream` if it is a terminal, else None (nothing is drawn)."""
        isatty = getattr(stream, "isatty", None)
        if isatty is None or not isatty():
            return None
        return cls(Console(file=stream))

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.refresh(force=True)
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, StateTransition):
            if event.to_state in TERMINAL_STATES and self._plan_done < self._plan_actions:
                self._plan_done += 1
                self.actions_done = self._finished_plans_actions + self._plan_done
        elif isinstance(event, PlanStarted):
            self.plan = inert(event.plan_id, 40)
            self._plan_actions = event.actions_total
            self._plan_done = 0
        elif isinstance(event, PlanFinished):
            self.plans_done += 1
            self._finished_plans_actions += self._plan_actions
            self._plan_actions = self._plan_done = 0
            self.actions_done = self._finished_plans_actions
        elif isinstance(event, RunStarted):
            self.plans_total = event.plans_total
            self.actions_total = event.actions_total
        else:
            return
        self.refresh()

    def rate(self, now: float) -> float:
        samples = self._samples
        samples.append((now, self.actions_done))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def refresh(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_refresh < REFRESH_S:
            return
        self._last_refresh = now
        self.progress.update(
            self.task,
            description=f"plans {self.plans_done}/{self.plans_total}  {self.plan}",
            total=self.actions_total or None,
            completed=self.actions_done,
            actions=f"actions {self.actions_done}/{self.actions_total}",
            rate=f"{self.rate(now):,.0f} actions/s",
        )
