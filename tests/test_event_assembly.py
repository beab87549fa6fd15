"""Events built without validation (`assemble`, `EventBus.emit_exact`) are the validated events.

The hottest events (a state transition, a tool execution) skip pydantic's validation when
their values are exactly of their fields' types. These tests prove that such an event is
equal to the validated one, field for field, in the same order, with the same fields set and
the same JSON bytes (the journal's body and hash, the output lines), and that anything else
still goes through validation.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from conftest import SAMPLES, act, plan
from pydantic import ValidationError

import core.events as events_module
from core.approval import PolicyGate
from core.bindings import ExecutionOutcome, ToolBinding, ToolCall
from core.clock import ManualClock
from core.contracts import ExecutionMode, standard_registry
from core.controller import ExecutionContext, ExecutionController
from core.events import Event, EventBus, StateTransition, ToolExecuted, assemble
from core.executors import SimulatedExecutor
from core.plans import PlannedAction, load_plans

TS = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _event_classes() -> list[type[Event]]:
    return [
        cls
        for cls in vars(events_module).values()
        if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
    ]


def _sample(annotation: Any, variant: int) -> Any:
    """A value exactly of a type `annotation` declares (variant 1 picks None when allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        if variant and type(None) in args:
            return None
        return _sample(next(a for a in args if a is not type(None)), variant)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return list(annotation)[-1]
    if get_origin(annotation) is Literal:  # given, it sends the event through validation
        return get_args(annotation)[-1]
    return {str: 'text "quoted" \u00e9\n', int: 7, float: 0.125, bool: True, datetime: TS}[annotation]


def _assemblable() -> list[type[Event]]:
    return [cls for cls in _event_classes() if events_module._template(cls) is not None]


def test_the_hot_events_are_assemblable() -> None:
    assert {StateTransition, ToolExecuted} <= set(_assemblable())


@pytest.mark.parametrize("cls", _assemblable(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("variant", [0, 1])
@pytest.mark.parametrize("with_defaults", [False, True])
def test_an_assembled_event_is_the_validated_event(cls: type[Event], variant: int, with_defaults: bool) -> None:
    fields = {
        name: _sample(info.annotation, variant)
        for name, info in cls.model_fields.items()
        if name != "kind" and (with_defaults or info.is_required())
    }
    built = assemble(cls, dict(fields))
    validated = cls(**fields)
    assert type(built) is cls
    assert built == validated
    assert list(built.__dict__) == list(validated.__dict__)
    assert built.model_fields_set == validated.model_fields_set
    assert built.__pydantic_serializer__.to_json(built) == validated.__pydantic_serializer__.to_json(validated)
    assert built.model_dump() == validated.model_dump()
    assert hash(built) == hash(validated)
    with pytest.raises(ValidationError):
        built.seq = 99  # type: ignore[misc]  # frozen, like a validated event


def _transition_fields() -> dict[str, Any]:
    return {
        "seq": 1,
        "ts": TS,
        "run_id": "r",
        "plan_id": "p",
        "action_id": "a",
        "agent": "x",
        "tool": "t",
        "from_state": "MOCK",
        "to_state": "DRY_RUN",
        "reason": "why",
    }


def test_unknown_missing_or_literal_fields_are_validated() -> None:
    with pytest.raises(ValidationError, match="extra"):
        assemble(StateTransition, {**_transition_fields(), "surprise": 1})
    missing = _transition_fields()
    del missing["reason"]
    with pytest.raises(ValidationError, match="reason"):
        assemble(StateTransition, missing)
    with pytest.raises(ValidationError, match="kind"):
        assemble(StateTransition, {**_transition_fields(), "kind": "tool_executed"})


def test_a_class_with_containers_is_validated() -> None:
    # RollbackPerformed has lists: validation copies and checks them, so it is never assembled.
    assert events_module._template(events_module.RollbackPerformed) is None
    with pytest.raises(ValidationError):
        assemble(
            events_module.RollbackPerformed,
            {"seq": 1, "ts": TS, "run_id": "r", "plan_id": "p", "trigger_action_id": "a", "undone": [1]}
            | {"total_rollbacks": 0},
        )


def test_emit_exact_numbers_stamps_and_delivers_like_emit() -> None:
    bus = EventBus(ManualClock(), "run_x")
    seen: list[Event] = []
    bus.subscribe(seen.append)
    fields = {k: v for k, v in _transition_fields().items() if k not in ("seq", "ts", "run_id")}
    first = bus.emit(StateTransition, **fields)
    second = bus.emit_exact(StateTransition, **fields)
    assert seen == [first, second]
    assert second.seq == first.seq + 1 and second.run_id == "run_x" and type(second.ts) is datetime
    assert second.model_dump(exclude={"seq"}) == first.model_dump(exclude={"seq"})


class _SubclassClock(ManualClock):
    """A clock whose timestamps are a datetime subclass: those are validated, not trusted."""

    class Stamp(datetime):
        pass

    def now(self) -> datetime:
        ts = super().now()
        return self.Stamp.fromtimestamp(ts.timestamp(), tz=UTC)


def test_emit_exact_validates_a_timestamp_of_another_type(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[type[Event]] = []
    real = events_module.assemble
    monkeypatch.setattr(events_module, "assemble", lambda cls, fields: calls.append(cls) or real(cls, fields))
    bus = EventBus(_SubclassClock(), "run_x")
    fields = {k: v for k, v in _transition_fields().items() if k not in ("seq", "ts", "run_id")}
    event = bus.emit_exact(StateTransition, **fields)
    assert calls == [] and event.reason == "why"


def test_every_event_a_run_assembles_equals_its_validated_twin(
    make_harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real call sites (controller transitions and tool executions, over a plan with
    rollbacks, approvals and conflicts) give only values validation would keep as they are."""
    checked: list[str] = []
    real = events_module.assemble

    def checking(cls: type[Event], fields: dict[str, Any]) -> Event:
        built = real(cls, dict(fields))
        validated = cls(**fields)
        assert built == validated and list(built.__dict__) == list(validated.__dict__)
        assert built.__pydantic_serializer__.to_json(built) == validated.__pydantic_serializer__.to_json(validated)
        checked.append(cls.__name__)
        return built

    monkeypatch.setattr(events_module, "assemble", checking)
    names = ("happy_path", "rollback", "conflicts", "approvals")
    plans = load_plans([SAMPLES / f"{name}.json" for name in names])
    make_harness(plans=plans, gate=PolicyGate(approve_all=True)).execute_orchestration_pipeline()
    assert {"StateTransition", "ToolExecuted"} <= set(checked)


def test_an_int_duration_from_a_binding_is_validated_into_a_float(make_harness: Any) -> None:
    """mypy lets an int stand for a float: such an outcome goes through validation, which
    makes the event's duration a float (its JSON "2.0", as before)."""

    async def step(call: ToolCall) -> ExecutionOutcome:
        return ExecutionOutcome(success=True, duration_ms=2)  # type: ignore[arg-type]

    harness = make_harness(plans=[plan([act("look", tool="ghl_search", confidence=0.95)])])
    seen: list[Event] = []
    harness.bus.subscribe(seen.append, (ToolExecuted,))
    harness.executors.bind("ghl_search", ToolBinding("ghl_search", step, step, step))
    harness.execute_orchestration_pipeline()
    mine = [e for e in seen if isinstance(e, ToolExecuted)]
    assert mine and all(type(e.duration_ms) is float for e in mine)
    assert all('"duration_ms":2.0' in events_module.event_json(e) for e in mine)
    assert [e.mode for e in mine] == [ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE]


async def test_an_int_confidence_is_validated_into_a_float() -> None:
    """A context whose action was built without validation (an int confidence) still gets a
    float confidence in its ToolExecuted event: such values are validated, not trusted."""
    bus = EventBus(ManualClock(), "run_x")
    seen: list[Event] = []
    bus.subscribe(seen.append, (ToolExecuted,))
    controller = ExecutionController(standard_registry(), bus, PolicyGate())
    action = PlannedAction.model_construct(id="a1", agent="x", tool="ghl_search", confidence=1, args={})
    ctx = ExecutionContext(plan_id="p", action=action, contract=controller.registry.get("ghl_search"), agent="x")
    executor = SimulatedExecutor(ctx.contract, bus.clock)
    await controller.run_action(ctx, executor.binding())
    assert seen and all(type(e.confidence) is float for e in seen if isinstance(e, ToolExecuted))
    assert all('"confidence":1.0' in events_module.event_json(e) for e in seen)
