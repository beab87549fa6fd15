"""The guard around every step of a bound (plugin or backend) tool: nothing it does takes the run down.

A step that raises, hangs past its contract's `timeout_seconds`, or returns something that
is not an `ExecutionOutcome` ends FAILED with the reason. For the LIVE step of a tool with
effects that is not enough: the effect may have happened, so the outcome is UNKNOWN
(`effect_unknown`): never retried, and the journal's intent says UNKNOWN. Only a step that
raises `EffectNotApplied` (or returns a failed outcome) vouches that nothing happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from core.bindings import Compensation, EffectNotApplied, ExecutionOutcome, ModeImplementation, ToolBinding, ToolCall
from core.contracts import ToolContract

MAX_ERROR_CHARS = 500


class GuardedStep:
    """One step behind the guard. `effectful`: a failure may hide an effect (LIVE, not read-only)."""

    __slots__ = ("effectful", "inner", "simulated", "step", "timed", "timeout_s")

    def __init__(
        self, inner: ModeImplementation | Compensation, step: str, timeout_s: float, effectful: bool, simulated: bool
    ) -> None:
        self.inner = inner
        self.step = step
        self.timeout_s = timeout_s
        self.effectful = effectful
        self.simulated = simulated
        # A step that declares itself bounded (`bounded = True`: it never waits longer than
        # its own limit, which is below the contract's, e.g. the MCP gateway's MOCK and
        # DRY_RUN) runs without the guard's timer; everything else the guard does still applies.
        self.timed = not getattr(inner, "bounded", False)

    def _failed(self, start: float, error: str, *, timed_out: bool = False, unknown: bool = False) -> ExecutionOutcome:
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        return ExecutionOutcome(
            success=False,
            duration_ms=(time.perf_counter() - start) * 1000.0,
            error=error,
            timed_out=timed_out,
            simulated=self.simulated,
            effect_unknown=unknown and self.effectful,
        )

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        start = time.perf_counter()
        where = f"{call.action.tool} {self.step}"
        try:
            result: object
            if self.timed:
                # asyncio.timeout, not wait_for: the step runs in this task (Python 3.11's
                # wait_for wraps it in a task of its own, two more event-loop turns per step).
                async with asyncio.timeout(self.timeout_s):
                    result = await self.inner(call)
            else:
                result = await self.inner(call)
        except TimeoutError:
            return self._failed(
                start, f"{where} did not answer within {self.timeout_s:g}s", timed_out=True, unknown=True
            )
        except EffectNotApplied as exc:
            return self._failed(start, f"{where}: {exc}")
        except Exception as exc:
            return self._failed(start, f"{where} raised {type(exc).__name__}: {exc}", unknown=True)
        if not isinstance(result, ExecutionOutcome):
            return self._failed(
                start, f"{where} returned {type(result).__name__}, not an ExecutionOutcome", unknown=True
            )
        if not isinstance(result.success, bool) or not isinstance(result.output, dict):
            return self._failed(start, f"{where} returned a malformed ExecutionOutcome", unknown=True)
        if result.simulated != self.simulated or (result.effect_unknown and not self.effectful):
            result = dataclasses.replace(
                result, simulated=self.simulated, effect_unknown=result.effect_unknown and self.effectful
            )
        return result


def guarded(binding: ToolBinding, contract: ToolContract) -> ToolBinding:
    """The same binding with every step behind the guard, timed out at the contract's limit."""
    timeout, simulated = contract.timeout_seconds, binding.simulated
    return ToolBinding(
        tool=binding.tool,
        mock=GuardedStep(binding.mock, "MOCK", timeout, False, simulated),
        dry_run=GuardedStep(binding.dry_run, "DRY_RUN", timeout, False, simulated),
        live=GuardedStep(binding.live, "LIVE", timeout, not contract.read_only, simulated),
        compensate=(
            GuardedStep(binding.compensate, "compensate", timeout, False, simulated)
            if binding.compensate is not None
            else None
        ),
        simulated=simulated,
        backend=binding.backend,
    )
