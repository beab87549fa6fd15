"""Tool executors: one method per mode, and a compensation for reversible tools.

`SimulatedExecutor` is a first-class executor (like httpx's MockTransport): deterministic,
scripted per action by the plan's `simulate` block, and it never touches a real system.
Every result it returns says `simulated=True`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from core.clock import Clock
from core.contracts import ExecutionMode, ToolContract, ToolContractRegistry
from core.plans import PlannedAction


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """What one execution of a tool returned (a plain dataclass: it is made per execution)."""

    success: bool
    duration_ms: float
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    simulated: bool = True


class ToolExecutor(Protocol):
    """Runs one tool in a given mode. `compensate` undoes a completed LIVE run."""

    simulated: bool

    async def execute(self, mode: ExecutionMode, action: PlannedAction, attempt: int) -> ExecutionOutcome: ...

    async def compensate(self, action: PlannedAction) -> ExecutionOutcome: ...


EffectSink = Callable[[str, PlannedAction, ExecutionMode], None]


class SimulatedExecutor:
    """A deterministic stand-in for a real tool, scripted by `action.simulate`.

    Latency is waited on the injected clock. `fail_on_call` counts every call of this tool
    in the run (all modes). LIVE runs report their (simulated) effect to `effect_sink`.
    """

    simulated = True

    def __init__(self, contract: ToolContract, clock: Clock, effect_sink: EffectSink | None = None) -> None:
        self.contract = contract
        self.clock = clock
        self.effect_sink = effect_sink
        self.calls = 0
        self.compensations = 0

    async def execute(self, mode: ExecutionMode, action: PlannedAction, attempt: int) -> ExecutionOutcome:
        self.calls += 1
        script = action.simulate
        if script.latency_ms:
            await self.clock.sleep(script.latency_ms / 1000.0)
        latency = script.latency_ms
        if mode in script.timeout_in and attempt <= script.timeout_attempts:
            return ExecutionOutcome(
                success=False,
                duration_ms=latency,
                error=f"simulated timeout in {mode.value} (limit {self.contract.timeout_seconds:g}s)",
                timed_out=True,
            )
        if script.fail_on_call is not None and self.calls == script.fail_on_call:
            return ExecutionOutcome(
                success=False,
                duration_ms=latency,
                error=f"simulated failure on call {self.calls} of {self.contract.name}",
            )
        if mode in script.fail_in:
            return ExecutionOutcome(success=False, duration_ms=latency, error=f"simulated failure in {mode.value}")
        if mode is ExecutionMode.LIVE and self.effect_sink is not None and not self.contract.read_only:
            self.effect_sink("effect", action, mode)
        return ExecutionOutcome(
            success=True,
            duration_ms=latency,
            output={"simulated": True, "mode": mode.value, "tool": self.contract.name},
        )

    async def compensate(self, action: PlannedAction) -> ExecutionOutcome:
        self.compensations += 1
        if action.simulate.compensation_fails:
            return ExecutionOutcome(success=False, duration_ms=0.0, error="simulated compensation failure")
        if self.effect_sink is not None:
            self.effect_sink("compensation", action, ExecutionMode.LIVE)
        return ExecutionOutcome(success=True, duration_ms=0.0, output={"simulated": True, "undone": action.id})


SIMULATED_EFFECTS = "simulated_effects.jsonl"


class SimulatedEffectLedger:
    """The simulated external world: one durable line per LIVE effect or compensation.

    It stands in for the CRM, mailbox or database a real executor would touch, so the
    crash tests can count how often an irreversible effect really happened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8")

    def __call__(self, kind: str, action: PlannedAction, mode: ExecutionMode) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        record = {"kind": kind, "action_id": action.id, "agent": action.agent, "tool": action.tool, "args": action.args}
        self._fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ExecutorRegistry:
    """Binds each tool contract to its executor; unbound tools get a SimulatedExecutor."""

    def __init__(
        self,
        registry: ToolContractRegistry,
        clock: Clock,
        effect_sink: EffectSink | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self.effect_sink = effect_sink
        self._bound: dict[str, ToolExecutor] = {}

    def bind(self, tool_name: str, executor: ToolExecutor) -> None:
        self._registry.get(tool_name)
        self._bound[tool_name] = executor

    def for_tool(self, tool_name: str) -> ToolExecutor:
        executor = self._bound.get(tool_name)
        if executor is None:
            executor = SimulatedExecutor(self._registry.get(tool_name), self._clock, self.effect_sink)
            self._bound[tool_name] = executor
        return executor

    @property
    def all_simulated(self) -> bool:
        return all(e.simulated for e in self._bound.values())
