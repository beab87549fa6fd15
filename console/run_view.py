"""What the operator sees, as plain data: built from events, rendered by the panes.

Keeping this apart from the widgets means the console's logic is tested without a
screen, and a flood of events is folded into one small set of changes per tick.
Every untrusted string is made inert here, the one place core data enters the UI.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from console.related import RelatedIndex
from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    ConflictDetected,
    ConflictResolved,
    Event,
    GrantOutcome,
    HealthUpdated,
    IntentRecorded,
    PlanFinished,
    PlanStarted,
    ProposalReceived,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    SignalEmitted,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
    UnknownOutcomes,
)
from core.inert import inert

E = TypeVar("E", StateTransition, ToolExecuted)

MAX_CONFLICT_ROWS = 500
MAX_LINES_PER_TICK = 400


def hms(ts: datetime) -> str:
    return ts.strftime("%H:%M:%S.%f")[:-3]


def fit(value: str, width: int) -> str:
    """`value` made inert and shrunk to `width` cells with an ellipsis: a long agent or tool
    name gives way, so the columns after it (state, mode, result) stay where they are."""
    text = inert(value, 200)
    return text if len(text) <= width else text[: width - 1] + "…"


def _transition_line(e: StateTransition) -> str:
    return (
        f"{hms(e.ts)} {fit(e.agent, 11):<11} {fit(e.tool, 20):<20} "
        f"{e.from_state + '->' + e.to_state:<28} {inert(e.reason, 300)}"
    )


def _tool_line(e: ToolExecuted) -> str:
    result = "ok" if e.success else ("TIMEOUT" if e.timed_out else "FAILED")
    retry = f" (attempt {e.attempt})" if e.attempt > 1 else ""
    error = f"  {inert(e.error, 200)}" if e.error else ""
    return (
        f"{hms(e.ts)}  {fit(e.agent, 12):<12} {fit(e.tool, 20):<20} {e.mode.value:<7} "
        f"{result:<7} {e.duration_ms:>8.1f} ms{retry}{error}"
    )


@dataclass
class ConflictRow:
    conflict_id: str
    conflict_type: str
    agents: str
    target: str
    strategy: str = "…"
    outcome: str = "pending"


@dataclass
class Changes:
    """What one batch of events changed, so each widget is touched at most once per tick."""

    transitions: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    # The events behind those lines, in the same order (for filter, detail and export).
    transition_events: list[StateTransition] = field(default_factory=list)
    tool_events: list[ToolExecuted] = field(default_factory=list)
    signal_events: list[SignalEmitted] = field(default_factory=list)
    conflicts: dict[str, None] = field(default_factory=dict)  # ids in detection order
    health: bool = False
    approvals: bool = False
    header: bool = False
    decided: list[str] = field(default_factory=list)
    dropped_lines: int = 0
    unknown: bool = False


@dataclass
class RunView:
    run_id: str = ""
    plans_total: int = 0
    plans_done: int = 0
    #: Proposals a gate service received (each one becomes a one-action plan); 0 for a plan run.
    proposals: int = 0
    actions_total: int = 0
    current_plan: str = ""
    mode_ceiling: str = "LIVE"
    locked: bool = False
    lock_reason: str = ""
    paused: bool = False
    finished: bool = False
    detached: bool = False  # an attached console that lost its service before the run's end
    interrupted: bool = False
    stopping: bool = False
    executions: int = 0
    transitions: int = 0
    events: int = 0
    plans_failed: int = 0
    health_score: float | None = None
    health_tier: str = ""
    health_history: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    metrics: dict[str, float] = field(default_factory=dict)
    metric_history: dict[str, deque[float]] = field(default_factory=dict)  # for the trends
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    conflicts: OrderedDict[str, ConflictRow] = field(default_factory=OrderedDict)
    conflicts_total: int = 0
    pending: OrderedDict[str, ApprovalRequested] = field(default_factory=OrderedDict)
    decisions: deque[ApprovalDecided] = field(default_factory=lambda: deque(maxlen=100))
    denied_earlier: int = 0  # identical calls refused without a new prompt
    run_status: str = ""  # the finished run's outcome (SUCCEEDED, PARTIAL, LOCKED, INTERRUPTED, FAILED)
    signals_total: int = 0
    lines_skipped: int = 0  # log lines not drawn during floods (all are in the output files)
    unknown_outcomes: list[str] = field(default_factory=list)
    related: RelatedIndex = field(default_factory=RelatedIndex)  # what a row's detail links to
    _pending_transitions: list[StateTransition] = field(default_factory=list, repr=False)
    _pending_tools: list[ToolExecuted] = field(default_factory=list, repr=False)

    @property
    def state_label(self) -> str:
        if self.finished:
            if self.interrupted:
                return "interrupted"
            return f"finished {self.run_status}" if self.run_status else "finished"
        if self.detached:
            return "detached"
        if self.stopping:
            return "stopping"
        if self.paused:
            return "paused"
        return "running" if self.run_id else "idle"

    @staticmethod
    def _newest(changes: Changes, pending: list[E]) -> list[E]:
        if len(pending) > MAX_LINES_PER_TICK:
            changes.dropped_lines += len(pending) - MAX_LINES_PER_TICK
            return pending[-MAX_LINES_PER_TICK:]
        return pending

    def apply(self, events: list[Event]) -> Changes:
        changes = Changes()
        for event in events:
            self.events += 1
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event, changes)
        # Only the newest lines of a tick are drawn, so only those are formatted: under a
        # flood the rest cost one list append each (they are all in the output files).
        transitions, tools = self._pending_transitions, self._pending_tools
        self._pending_transitions, self._pending_tools = [], []
        changes.transition_events = self._newest(changes, transitions)
        changes.tool_events = self._newest(changes, tools)
        changes.transitions = [_transition_line(e) for e in changes.transition_events]
        changes.tools = [_tool_line(e) for e in changes.tool_events]
        self.lines_skipped += changes.dropped_lines
        return changes

    def _transition(self, e: StateTransition, c: Changes) -> None:
        self.transitions += 1
        self._pending_transitions.append(e)

    def _tool(self, e: ToolExecuted, c: Changes) -> None:
        self.executions += 1
        self._pending_tools.append(e)

    def _conflict(self, e: ConflictDetected, c: Changes) -> None:
        self.conflicts_total += 1
        target = e.tool + (f" @ {e.resource}" if e.resource else "")
        self.conflicts[e.conflict_id] = ConflictRow(
            e.conflict_id, e.conflict_type, inert(", ".join(e.agents), 80), inert(target, 120)
        )
        self.related.add(e)
        while len(self.conflicts) > MAX_CONFLICT_ROWS:
            self.conflicts.popitem(last=False)
        c.conflicts[e.conflict_id] = None

    def _resolved(self, e: ConflictResolved, c: Changes) -> None:
        self.related.add(e)
        row = self.conflicts.get(e.conflict_id)
        if row is not None:
            row.strategy = e.strategy
            row.outcome = inert(e.outcome, 200)
            c.conflicts[e.conflict_id] = None

    def _health(self, e: HealthUpdated, c: Changes) -> None:
        self.health_score = e.health_score
        self.health_tier = e.health_assessment
        self.health_history.append(e.health_score)
        self.metrics = e.metrics
        for name, value in e.metrics.items():
            history = self.metric_history.get(name)
            if history is None:
                history = self.metric_history[name] = deque(maxlen=120)
            history.append(value)
        self.anomalies = e.anomalies
        c.health = True

    def _requested(self, e: ApprovalRequested, c: Changes) -> None:
        self.pending[e.request_id] = e
        self.related.add(e)
        c.approvals = True

    def _decided(self, e: ApprovalDecided, c: Changes) -> None:
        self.pending.pop(e.request_id, None)
        self.related.add(e)
        self.denied_earlier += e.outcome == "DENIED_EARLIER"
        self.decisions.append(e)
        c.decided.append(e.request_id)
        c.approvals = True

    def _signal(self, e: SignalEmitted, c: Changes) -> None:
        self.signals_total += 1
        c.signal_events.append(e)
        c.signals.append(
            f"{hms(e.ts)}  {e.signal_type:<24} {inert(e.tool_name, 24):<20} -> Phase {e.target_phase}  "
            f"{inert(e.insight, 200)}  [{inert(e.recommended_action, 120)}]"
        )

    def _intent(self, e: IntentRecorded, c: Changes) -> None:
        self.related.add(e)

    def _unknown(self, e: UnknownOutcomes, c: Changes) -> None:
        self.unknown_outcomes = [
            inert(f"{i.get('tool')} ({i.get('plan_id')}/{i.get('action_id')}, agent {i.get('agent')})", 200)
            for i in e.intents
        ]
        c.header = True
        c.unknown = True

    def _grant_outcome(self, e: GrantOutcome, c: Changes) -> None:
        """A live agent's grant whose outcome never came back within its lease: UNKNOWN."""
        if e.status != "UNKNOWN":
            return
        self.unknown_outcomes.append(
            inert(f"{e.tool} ({e.proposal_id}, agent {e.agent}): {e.error or 'no outcome reported'}", 200)
        )
        c.header = True
        c.unknown = True

    def _run_started(self, e: RunStarted, c: Changes) -> None:
        self.run_id = e.run_id
        self.plans_total = e.plans_total
        self.actions_total = e.actions_total
        self.mode_ceiling = e.mode_ceiling.value
        c.header = True

    def _proposal(self, e: ProposalReceived, c: Changes) -> None:
        self.proposals += 1
        c.header = True

    def _plan_started(self, e: PlanStarted, c: Changes) -> None:
        self.current_plan = inert(e.plan_id, 60)
        c.header = True

    def _plan_finished(self, e: PlanFinished, c: Changes) -> None:
        self.plans_done += 1
        self.plans_failed += e.status == "FAILED"
        c.header = True

    def _run_finished(self, e: RunFinished, c: Changes) -> None:
        self.finished = True
        self.interrupted = e.interrupted
        self.run_status = e.status
        c.header = True

    def _locked(self, e: SystemLocked, c: Changes) -> None:
        self.locked = True
        self.lock_reason = inert(e.reason, 200)
        c.header = True

    def _unlocked(self, e: SystemUnlocked, c: Changes) -> None:
        self.locked = False
        self.lock_reason = ""
        c.header = True

    def _paused(self, e: RunPaused, c: Changes) -> None:
        self.paused = True
        c.header = True

    def _resumed(self, e: RunResumed, c: Changes) -> None:
        self.paused = False
        c.header = True


_HANDLERS: dict[type[Event], Any] = {
    StateTransition: RunView._transition,
    ToolExecuted: RunView._tool,
    ConflictDetected: RunView._conflict,
    ConflictResolved: RunView._resolved,
    HealthUpdated: RunView._health,
    ApprovalRequested: RunView._requested,
    ApprovalDecided: RunView._decided,
    SignalEmitted: RunView._signal,
    RunStarted: RunView._run_started,
    PlanStarted: RunView._plan_started,
    ProposalReceived: RunView._proposal,
    PlanFinished: RunView._plan_finished,
    RunFinished: RunView._run_finished,
    SystemLocked: RunView._locked,
    SystemUnlocked: RunView._unlocked,
    RunPaused: RunView._paused,
    RunResumed: RunView._resumed,
    UnknownOutcomes: RunView._unknown,
    GrantOutcome: RunView._grant_outcome,
    IntentRecorded: RunView._intent,
}
