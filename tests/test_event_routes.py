"""The bus routes each event class to the subscribers that read it, in subscription order."""

from __future__ import annotations

from core.clock import ManualClock
from core.contracts import ExecutionMode
from core.events import Event, EventBus, RunPaused, StateTransition, ToolExecuted


def _transition(bus: EventBus) -> StateTransition:
    return bus.emit(
        StateTransition,
        plan_id="p",
        action_id="a",
        agent="g",
        tool="memory_search",
        from_state="MOCK",
        to_state="DRY_RUN",
        reason="r",
    )


def _executed(bus: EventBus) -> ToolExecuted:
    return bus.emit(
        ToolExecuted,
        plan_id="p",
        action_id="a",
        agent="g",
        tool="memory_search",
        mode=ExecutionMode.MOCK,
        success=True,
        duration_ms=1.0,
        confidence=0.9,
        attempt=1,
        error=None,
        timed_out=False,
        simulated=True,
    )


def test_a_subscriber_with_kinds_sees_only_those_and_order_holds() -> None:
    bus = EventBus(ManualClock(), "routes")
    seen: list[tuple[str, int]] = []
    bus.subscribe(lambda e: seen.append(("all", e.seq)))
    bus.subscribe(lambda e: seen.append(("executed", e.seq)), (ToolExecuted,))
    bus.subscribe(lambda e: seen.append(("both", e.seq)), (ToolExecuted, StateTransition))
    _transition(bus)
    _executed(bus)
    bus.emit(RunPaused, by="operator")
    assert seen == [("all", 1), ("both", 1), ("all", 2), ("executed", 2), ("both", 2), ("all", 3)]


def test_routes_follow_subscribe_and_unsubscribe() -> None:
    bus = EventBus(ManualClock(), "routes")
    seen: list[str] = []
    _executed(bus)  # a route is built for ToolExecuted with nobody on it
    unsubscribe = bus.subscribe(lambda e: seen.append("late"), (ToolExecuted,))
    _executed(bus)
    unsubscribe()
    _executed(bus)
    assert seen == ["late"]


def test_a_subclass_reaches_a_subscriber_of_its_base() -> None:
    bus = EventBus(ManualClock(), "routes")
    seen: list[type[Event]] = []
    bus.subscribe(lambda e: seen.append(type(e)), (Event,))
    _transition(bus)
    assert seen == [StateTransition]
