"""Bindings that record which implementation ran, and the action's state when it ran.

Used by tests/test_mode_bindings.py in process and by tests/live_only_runner.py in a
subprocess (crash tests): the live implementation writes one fsynced line per call, so a
SIGKILL loses nothing it did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.bindings import ExecutionOutcome, ToolBinding, ToolCall
from core.contracts import ToolContractRegistry
from core.events import Event, EventBus, StateTransition
from core.executors import ExecutorRegistry


class StateTracker:
    """The current state of every action, read from the bus's StateTransition events."""

    def __init__(self, bus: EventBus) -> None:
        self.states: dict[tuple[str, str], str] = {}
        bus.subscribe(self.observe)

    def observe(self, event: Event) -> None:
        if isinstance(event, StateTransition):
            self.states[(event.plan_id, event.action_id)] = event.to_state

    def state_of(self, call: ToolCall) -> str:
        return self.states.get((call.plan_id, call.action.id), "MOCK")


class CallLog:
    """Every call of every implementation: in memory, and (optionally) one durable line each."""

    def __init__(self, path: Path | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.path = path

    def add(self, record: dict[str, Any]) -> None:
        self.calls.append(record)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def of(self, step: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["step"] == step]


class RecordingStep:
    """One mode's implementation: records its own name and the action's state."""

    def __init__(self, step: str, tracker: StateTracker, log: CallLog) -> None:
        self.step = step
        self.tracker = tracker
        self.log = log

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        self.log.add(
            {
                "step": self.step,
                "plan_id": call.plan_id,
                "action_id": call.action.id,
                "state": self.tracker.state_of(call),
            }
        )
        return ExecutionOutcome(success=True, duration_ms=0.0, simulated=False)


def bind_recording(
    executors: ExecutorRegistry, registry: ToolContractRegistry, bus: EventBus, log: CallLog
) -> StateTracker:
    """Bind every tool of `registry` to recording steps; returns the state tracker."""
    tracker = StateTracker(bus)
    for name in registry.names:
        contract = registry.get(name)
        executors.bind(
            name,
            ToolBinding(
                tool=name,
                mock=RecordingStep("mock", tracker, log),
                dry_run=RecordingStep("dry_run", tracker, log),
                live=RecordingStep("live", tracker, log),
                compensate=RecordingStep("compensate", tracker, log) if contract.compensable else None,
                simulated=False,
                backend="recording",
            ),
        )
    return tracker
