"""Tool executors: the simulated executor, the simulated world, and the registry of bindings.

`SimulatedExecutor` is a first-class executor (like httpx's MockTransport): deterministic,
scripted per action by the plan's `simulate` block, and it never touches a real system.
Every result it returns says `simulated=True`. Real executors come from plugins
(core/plugins.py) and the shipped local backends (core/backends/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from core.bindings import ExecutionOutcome, ToolBinding, ToolCall
from core.clock import Clock
from core.contracts import ExecutionMode, ToolContract, ToolContractRegistry
from core.errors import ContractError
from core.guard import guarded
from core.plans import PlannedAction

__all__ = [
    "SIMULATED_EFFECTS",
    "EffectSink",
    "ExecutionOutcome",
    "ExecutorRegistry",
    "SimulatedEffectLedger",
    "SimulatedExecutor",
    "ToolBinding",
    "ToolCall",
]

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

    def binding(self) -> ToolBinding:
        """The executor as a binding: one step object per mode, each fixed to its mode."""
        return ToolBinding(
            tool=self.contract.name,
            mock=_SimulatedStep(self, ExecutionMode.MOCK),
            dry_run=_SimulatedStep(self, ExecutionMode.DRY_RUN),
            live=_SimulatedStep(self, ExecutionMode.LIVE),
            compensate=self._compensate_call,
            simulated=True,
            backend="simulated",
        )

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

    async def _compensate_call(self, call: ToolCall) -> ExecutionOutcome:
        return await self.compensate(call.action)

    async def compensate(self, action: PlannedAction) -> ExecutionOutcome:
        self.compensations += 1
        if action.simulate.compensation_fails:
            return ExecutionOutcome(success=False, duration_ms=0.0, error="simulated compensation failure")
        if self.effect_sink is not None:
            self.effect_sink("compensation", action, ExecutionMode.LIVE)
        return ExecutionOutcome(success=True, duration_ms=0.0, output={"simulated": True, "undone": action.id})


class _SimulatedStep:
    """One mode of a simulated executor (the simulation itself is shared across modes)."""

    __slots__ = ("executor", "mode")

    def __init__(self, executor: SimulatedExecutor, mode: ExecutionMode) -> None:
        self.executor = executor
        self.mode = mode

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        return await self.executor.execute(self.mode, call.action, call.attempt)


SIMULATED_EFFECTS = "simulated_effects.jsonl"


class SimulatedEffectLedger:
    """The simulated external world: one line per LIVE effect or compensation.

    It stands in for the CRM, mailbox or database a real executor would touch, so the
    crash tests can count how often an irreversible effect really happened. Each line is
    written through to the operating system at once (a killed process loses none), and
    fsynced at the next durability barrier with the journal's group commit (`sync`), not
    once per effect.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8")
        self._unsynced = False

    def __call__(self, kind: str, action: PlannedAction, mode: ExecutionMode) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        record = {"kind": kind, "action_id": action.id, "agent": action.agent, "tool": action.tool, "args": action.args}
        self._fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._fh.flush()
        self._unsynced = True

    def sync(self) -> None:
        """fsync the lines written since the last sync (none: nothing to do)."""
        if self._fh is not None and self._unsynced:
            os.fsync(self._fh.fileno())
            self._unsynced = False

    def close(self) -> None:
        if self._fh is not None:
            try:
                self.sync()
            finally:
                self._fh.close()
                self._fh = None


class ExecutorRegistry:
    """Binds each tool contract to its binding; unbound tools get a SimulatedExecutor's."""

    def __init__(
        self,
        registry: ToolContractRegistry,
        clock: Clock,
        effect_sink: EffectSink | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self.effect_sink = effect_sink
        self._bound: dict[str, ToolBinding] = {}
        self._simulated: dict[str, SimulatedExecutor] = {}

    def bind(self, tool_name: str, binding: ToolBinding) -> None:
        """Bind a tool to its implementations, after checking them against its contract.

        Every step is put behind the guard (core/guard.py): a step that raises, hangs or
        answers nonsense ends its action FAILED or UNKNOWN, never the run.
        """
        contract = self._registry.get(tool_name)
        if binding.tool != tool_name:
            raise ContractError(f"tool {tool_name!r}: the binding is for {binding.tool!r}")
        if contract.compensable and binding.compensate is None:
            raise ContractError(f"tool {tool_name!r} is reversible but its binding has no compensate step")
        if not contract.compensable and binding.compensate is not None:
            raise ContractError(
                f"tool {tool_name!r} is irreversible or read-only but its binding has a compensate step"
            )
        self._bound[tool_name] = guarded(binding, contract)

    def for_tool(self, tool_name: str) -> ToolBinding:
        binding = self._bound.get(tool_name)
        if binding is None:
            binding = self._bound[tool_name] = self.simulated_executor(tool_name).binding()
        return binding

    def simulated_executor(self, tool_name: str) -> SimulatedExecutor:
        """The simulated executor behind an unbound tool (created on first use)."""
        executor = self._simulated.get(tool_name)
        if executor is None:
            executor = SimulatedExecutor(self._registry.get(tool_name), self._clock, self._sink)
            self._simulated[tool_name] = executor
        return executor

    def _sink(self, kind: str, action: PlannedAction, mode: ExecutionMode) -> None:
        # Read at each effect: the harness opens the simulated world after binding.
        if self.effect_sink is not None:
            self.effect_sink(kind, action, mode)

    @property
    def all_simulated(self) -> bool:
        return all(b.simulated for b in self._bound.values())

    def real_backends(self) -> dict[str, list[str]]:
        """Each non-simulated backend and the tools bound to it."""
        backends: dict[str, list[str]] = {}
        for tool, binding in sorted(self._bound.items()):
            if not binding.simulated:
                backends.setdefault(binding.backend, []).append(tool)
        return dict(sorted(backends.items()))
