"""Typed events: everything the core does is published here, and subscribers consume it.

The console, the output writers and the durable journal are all subscribers of one
`EventBus`. Each event carries a run-wide sequence number, a timestamp from the injected
clock and the run id.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from core.clock import Clock
from core.contracts import ExecutionMode, RiskLevel


class Event(BaseModel):
    """Base of every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    seq: int
    ts: datetime
    run_id: str


class RunStarted(Event):
    kind: Literal["run_started"] = "run_started"
    plans_total: int
    actions_total: int
    mode_ceiling: ExecutionMode
    simulated: bool
    resumed: bool = False


class UnknownOutcomes(Event):
    """After a crash: LIVE actions whose intent was recorded but whose outcome was not.

    They are never retried automatically; the operator must find out what happened.
    """

    kind: Literal["unknown_outcomes"] = "unknown_outcomes"
    intents: list[dict[str, Any]]


class IntentRecorded(Event):
    """The journal's durable record that a LIVE action with an external effect is about to run.

    Chained like every event, in the same transaction as the `intents` row it creates, so
    `verify` can prove the intents table is exactly what the chain says.
    """

    kind: Literal["intent_recorded"] = "intent_recorded"
    action_hash: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    approval_id: str | None = None


class IntentStatusChanged(Event):
    """Intents settled (DONE, FAILED) or found without an outcome after a restart (UNKNOWN)."""

    kind: Literal["intent_status"] = "intent_status"
    action_hashes: list[str]
    status: Literal["DONE", "FAILED", "UNKNOWN"]


class RunStateChanged(Event):
    """A durable piece of run state changed (the lock; the digest of run.json)."""

    kind: Literal["run_state"] = "run_state"
    key: str
    value: str


class PlanStarted(Event):
    kind: Literal["plan_started"] = "plan_started"
    plan_id: str
    plan_index: int
    actions_total: int
    agents: list[str]
    phase21_plan_id: str | None = None
    phase22_validation_id: str | None = None


class StateTransition(Event):
    kind: Literal["state_transition"] = "state_transition"
    plan_id: str
    action_id: str
    agent: str
    tool: str
    from_state: str
    to_state: str
    reason: str


class ToolExecuted(Event):
    kind: Literal["tool_executed"] = "tool_executed"
    plan_id: str
    action_id: str
    agent: str
    tool: str
    mode: ExecutionMode
    success: bool
    duration_ms: float
    confidence: float
    attempt: int = 1
    error: str | None = None
    timed_out: bool = False
    simulated: bool = True


class ConflictDetected(Event):
    kind: Literal["conflict_detected"] = "conflict_detected"
    plan_id: str
    conflict_id: str
    conflict_type: str
    agents: list[str]
    tool: str
    resource: str | None = None
    action_ids: list[str]
    detail: str


class ConflictResolved(Event):
    kind: Literal["conflict_resolved"] = "conflict_resolved"
    plan_id: str
    conflict_id: str
    conflict_type: str
    strategy: str
    outcome: str


class ApprovalRequested(Event):
    kind: Literal["approval_requested"] = "approval_requested"
    request_id: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    risk_level: RiskLevel
    reversible: bool
    confidence: float
    threshold: float
    args: dict[str, Any]
    action_hash: str
    timeout_s: float
    expires_at: datetime


class ApprovalDecided(Event):
    kind: Literal["approval_decided"] = "approval_decided"
    request_id: str
    plan_id: str
    action_id: str
    tool: str
    approved: bool
    decided_by: str
    reason: str
    action_hash: str  # the hash the decision binds to (the edited action's, when edited)
    outcome: str = ""  # ApprovalOutcome value: APPROVE, DENY, EXPIRED, DENIED_EARLIER, DENY_AND_STOP
    agent: str = ""
    args_fully_visible: bool | None = None
    original_action_hash: str = ""  # set when the operator edited the arguments before approving
    edited_args: dict[str, Any] | None = None


class RollbackPerformed(Event):
    kind: Literal["rollback_performed"] = "rollback_performed"
    plan_id: str
    trigger_action_id: str
    undone: list[str]
    failed_to_undo: list[str] = Field(default_factory=list)
    total_rollbacks: int


class SignalEmitted(Event):
    kind: Literal["signal_emitted"] = "signal_emitted"
    signal_type: str
    tool_name: str
    insight: str
    recommended_action: str
    confidence: float
    target_phase: int


class HealthUpdated(Event):
    kind: Literal["health_updated"] = "health_updated"
    health_score: float
    health_assessment: str
    metrics: dict[str, float]
    anomalies: list[dict[str, Any]]


class SystemLocked(Event):
    kind: Literal["system_locked"] = "system_locked"
    reason: str
    by: str


class SystemUnlocked(Event):
    kind: Literal["system_unlocked"] = "system_unlocked"
    reason: str
    by: str


class RunPaused(Event):
    kind: Literal["run_paused"] = "run_paused"
    by: str


class RunResumed(Event):
    kind: Literal["run_resumed"] = "run_resumed"
    by: str


class PlanFinished(Event):
    kind: Literal["plan_finished"] = "plan_finished"
    plan_id: str
    plan_index: int
    status: Literal["SUCCEEDED", "PARTIAL", "LOCKED", "INTERRUPTED", "FAILED", "REJECTED"]
    successful: int
    failed: int
    held: int
    cancelled: int
    conflicts_detected: int
    conflicts_resolved: int
    rollbacks: int
    reason: str = ""


class ProposalReceived(Event):
    """A live agent's proposal, journaled before the service acknowledges it."""

    kind: Literal["proposal_received"] = "proposal_received"
    proposal_id: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    args: dict[str, Any]
    confidence: float
    agent_plan_id: str | None = None
    executed_by: Literal["service", "agent"]


class GrantIssued(Event):
    """A single-use LIVE grant handed to the agent that executes the tool itself."""

    kind: Literal["grant_issued"] = "grant_issued"
    grant_id: str
    proposal_id: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    lease_s: float


class GrantOutcome(Event):
    """What became of a grant: reported by its agent, or UNKNOWN when the lease ran out."""

    kind: Literal["grant_outcome"] = "grant_outcome"
    grant_id: str
    proposal_id: str
    agent: str
    tool: str
    status: Literal["DONE", "FAILED", "UNKNOWN", "LATE"]
    error: str | None = None
    result: dict[str, Any] | None = None


class RunFinished(Event):
    kind: Literal["run_finished"] = "run_finished"
    plans_processed: int
    plans_successful: int
    plans_failed: int
    interrupted: bool = False
    status: str = ""  # the run's outcome: SUCCEEDED, PARTIAL, LOCKED, INTERRUPTED, FAILED


AnyEvent = Annotated[
    RunStarted
    | UnknownOutcomes
    | IntentRecorded
    | IntentStatusChanged
    | RunStateChanged
    | PlanStarted
    | StateTransition
    | ToolExecuted
    | ConflictDetected
    | ConflictResolved
    | ApprovalRequested
    | ApprovalDecided
    | RollbackPerformed
    | SignalEmitted
    | HealthUpdated
    | SystemLocked
    | SystemUnlocked
    | RunPaused
    | RunResumed
    | PlanFinished
    | ProposalReceived
    | GrantIssued
    | GrantOutcome
    | RunFinished,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

_last_json: list[Any] = [None, ""]


def event_json(event: Event) -> str:
    """The event's JSON, serialised once however many subscribers need it (the journal and
    the output writer ask for the same event one after the other)."""
    if _last_json[0] is event:
        return str(_last_json[1])
    body = event.__pydantic_serializer__.to_json(event).decode()
    _last_json[0] = event
    _last_json[1] = body
    return body


E = TypeVar("E", bound=Event)

#: Field types whose values validation keeps as they are when given exactly that type.
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, datetime, type(None)})
#: The only model configuration `assemble` knows to leave values unchanged under.
_EVENT_CONFIG: dict[str, Any] = {"frozen": True, "extra": "forbid"}
_REQUIRED = object()
_UNKNOWN = object()


def _is_scalar(annotation: Any) -> bool:
    """A scalar, an enum, or a union of those (`str | None`): never a container or Any."""
    if annotation in _SCALARS or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return all(_is_scalar(arg) for arg in get_args(annotation))
    return False


class _Template:
    """How `assemble` builds one event class: `values` holds every field in declaration
    order with its default (a marker when required); `givable` names the fields a caller may
    give (all but the Literal ones, the `kind`), `required` those it must give."""

    __slots__ = ("givable", "required", "values")

    def __init__(self, values: dict[str, Any], givable: frozenset[str]) -> None:
        self.values = values
        self.givable = givable
        self.required = frozenset(name for name, value in values.items() if value is _REQUIRED)


def _template(cls: type[Event]) -> _Template | None:
    """The template of `cls`, or None when it cannot be assembled without validation: a
    container or constrained field, a default factory, an alias, a validator, a post-init
    hook or another configuration."""
    decorators = cls.__pydantic_decorators__
    if (
        cls.__pydantic_post_init__ is not None
        or decorators.field_validators
        or decorators.model_validators
        or decorators.root_validators
        or decorators.validators
        or dict(cls.model_config) != _EVENT_CONFIG
    ):
        return None
    values: dict[str, Any] = {}
    givable: set[str] = set()
    for name, info in cls.model_fields.items():
        if info.default_factory is not None or info.metadata or info.alias or info.validation_alias:
            return None
        if get_origin(info.annotation) is not Literal:
            if not _is_scalar(info.annotation):
                return None
            givable.add(name)
        values[name] = _REQUIRED if info.is_required() else info.default
    return _Template(values, frozenset(givable))


_templates: dict[type[Event], _Template | None] = {}
# BaseModel's slots, set directly as `model_construct` sets them (frozen: no __setattr__).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def assemble(cls: type[E], fields: dict[str, Any]) -> E:
    """`cls(**fields)` without validation, for values already exactly of their fields' types.

    The caller guarantees each value is exactly of a type its field declares (a `float` for
    a float, never an int; a plain `str`; a member of the field's enum; None for an optional
    one), so validation would keep every value as it is. The event is then built the way
    pydantic's `model_construct` builds one: the fields in declaration order, defaults filled
    in, the given names as its fields set; its JSON is the validated event's. A class that
    has a container, constrained or validated field (see `_template`), an unknown or missing
    field, or a Literal field given, goes through validation instead.
    """
    template = _templates.get(cls, _UNKNOWN)
    if template is _UNKNOWN:
        template = _templates[cls] = _template(cls)
    if type(template) is not _Template or not (template.givable >= fields.keys() >= template.required):
        return cls(**fields)
    values = template.values.copy()
    values.update(fields)  # every name given is in the template already: the order stays
    event = cls.__new__(cls)
    object.__setattr__(event, "__dict__", values)
    _set_fields_set(event, set(fields))
    _set_extra(event, None)
    _set_private(event, None)
    return event


Subscriber = Callable[[Event], None]
Barrier = Callable[[], Awaitable[None]]
ErrorHandler = Callable[[Subscriber, BaseException], None]


class EventBus:
    """In-process publish/subscribe with a run-wide sequence number.

    Subscribers are called synchronously, in subscription order, on the core's thread. A
    subscriber may name the event classes it reads (`kinds`): it is then called for those
    only, and the bus routes each class to its subscribers once, not per event.
    A subscriber that raises does not stop the others: the error goes to `on_error`
    (the harness locks the system there: storage failures fail closed).
    Barriers are awaited before anything irreversible happens (the durable journal
    registers one that commits and fsyncs everything published so far).
    """

    def __init__(self, clock: Clock, run_id: str) -> None:
        self.clock = clock
        self.run_id = run_id
        self._seq = 0
        self._subscribers: list[tuple[Subscriber, tuple[type[Event], ...] | None]] = []
        self._routes: dict[type[Event], tuple[Subscriber, ...]] = {}
        self._barriers: list[Barrier] = []
        self.on_error: ErrorHandler | None = None
        self._dispatching = False
        self._backlog: list[Event] = []

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def dispatching(self) -> bool:
        """True while an event is being delivered: one emitted now is delivered right after it."""
        return self._dispatching

    def start_after(self, seq: int) -> None:
        """Continue numbering after `seq` (used when resuming a journalled run)."""
        self._seq = max(self._seq, seq)

    def subscribe(self, subscriber: Subscriber, kinds: tuple[type[Event], ...] | None = None) -> Callable[[], None]:
        """Call `subscriber` with every event, or with the events of `kinds` (and their
        subclasses) only. Returns the unsubscribe function."""
        entry = (subscriber, kinds)
        self._subscribers.append(entry)
        self._routes = {}

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                self._routes = {}

        return unsubscribe

    def _route(self, cls: type[Event]) -> tuple[Subscriber, ...]:
        route = tuple(fn for fn, kinds in self._subscribers if kinds is None or issubclass(cls, kinds))
        self._routes[cls] = route
        return route

    def add_barrier(self, barrier: Barrier) -> None:
        self._barriers.append(barrier)

    def replace_barrier(self, old: Barrier, new: Barrier) -> None:
        """Swap a registered barrier (the gate service groups the journal's commits)."""
        self._barriers = [new if b == old else b for b in self._barriers]

    def emit(self, cls: type[E], /, **fields: Any) -> E:
        """Number, stamp and deliver an event. An event emitted by a subscriber is
        delivered after the current one, so every subscriber sees sequence order."""
        self._seq += 1
        return self._publish(cls(seq=self._seq, ts=self.clock.now(), run_id=self.run_id, **fields))

    def emit_exact(self, cls: type[E], /, **fields: Any) -> E:
        """`emit` for a caller whose values are each exactly of its field's declared type
        (see `assemble`): the event is built without validating them again. The core's
        hottest events use it (a state transition, a tool execution)."""
        self._seq += 1
        fields["seq"] = self._seq
        fields["ts"] = ts = self.clock.now()
        fields["run_id"] = self.run_id
        # The clock is injected: a datetime subclass from it is validated like any value.
        return self._publish(assemble(cls, fields) if type(ts) is datetime else cls(**fields))

    def _publish(self, event: E) -> E:
        if self._dispatching:
            self._backlog.append(event)
            return event
        self._dispatching = True
        try:
            self._deliver(event)
            while self._backlog:
                self._deliver(self._backlog.pop(0))
        finally:
            self._dispatching = False
        return event

    def _deliver(self, event: Event) -> None:
        route = self._routes.get(type(event))
        if route is None:
            route = self._route(type(event))
        for subscriber in route:
            try:
                subscriber(event)
            except Exception as exc:
                if self.on_error is None:
                    raise
                self.on_error(subscriber, exc)

    async def barrier(self) -> None:
        for barrier in self._barriers:
            await barrier()
