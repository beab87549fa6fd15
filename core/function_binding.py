"""Plain functions as a tool binding: the easy way to give a tool real hands.

Each step is a function of the `ToolCall` (sync or async) that returns a dict (its output)
or None. Sync functions run in a daemon thread, so a step that hangs can be timed out
without holding the run (or the process's exit) hostage. A step that knows its effect did
not happen raises `EffectNotApplied`; any other exception from a LIVE step leaves the
outcome UNKNOWN (see core/guard.py). `compensate` gets the call and the live step's output.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.bindings import EffectNotApplied, ExecutionOutcome, ToolBinding, ToolCall
from core.errors import Phase24Error

T = TypeVar("T")

__all__ = ["EffectNotApplied", "MalformedResult", "call_step", "function_binding", "run_in_daemon_thread"]

StepFunction = Callable[[ToolCall], Any]
"""A step: returns a dict (its output) or None, sync or async."""

CompensateFunction = Callable[[ToolCall, dict[str, Any]], Any]
"""Undo: gets the call and the output of the LIVE step it undoes."""


class MalformedResult(Phase24Error, TypeError):
    """A step returned something that is not an output (a dict) or None."""


async def run_in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh daemon thread and await its result (cancelling stops the wait only)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result: T | None = fn()
            error: BaseException | None = None
        except BaseException as exc:
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is gone: nobody waits for this answer any more

    threading.Thread(target=target, name="phase24-step", daemon=True).start()
    return await future


async def call_step(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function: coroutines are awaited, sync code runs in a daemon thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await run_in_daemon_thread(lambda: fn(*args))
    if inspect.isawaitable(result):
        return await result
    return result


def as_output(result: Any, step: str) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
        raise MalformedResult(f"{step} step returned {type(result).__name__}, not a dict of outputs or None")
    return result


class FunctionStep:
    """One mode's step built from a function; `simulated` is what its outcomes say."""

    def __init__(self, fn: StepFunction, name: str, simulated: bool, outputs: _LiveOutputs | None = None) -> None:
        self.fn = fn
        self.name = name
        self.simulated = simulated
        self.outputs = outputs

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        start = time.perf_counter()
        output = as_output(await call_step(self.fn, call), self.name)
        if self.outputs is not None:
            self.outputs.remember(call, output)
        return ExecutionOutcome(
            success=True, duration_ms=(time.perf_counter() - start) * 1000.0, output=output, simulated=self.simulated
        )


class _LiveOutputs:
    """What each LIVE run returned, per action, for its compensation (last in, first out)."""

    def __init__(self) -> None:
        self._by_action: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def remember(self, call: ToolCall, output: dict[str, Any]) -> None:
        with self._lock:
            self._by_action.setdefault((call.plan_id, call.action.id), []).append(output)

    def take(self, call: ToolCall) -> dict[str, Any] | None:
        with self._lock:
            stack = self._by_action.get((call.plan_id, call.action.id))
            return stack.pop() if stack else None


class FunctionCompensation:
    def __init__(self, fn: CompensateFunction, outputs: _LiveOutputs, simulated: bool) -> None:
        self.fn = fn
        self.outputs = outputs
        self.simulated = simulated

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        start = time.perf_counter()
        live_output = self.outputs.take(call)
        if live_output is None:
            raise EffectNotApplied(f"nothing to undo: no completed LIVE run of {call.action.id!r} in this process")
        output = as_output(await call_step(self.fn, call, live_output), "compensate")
        return ExecutionOutcome(
            success=True, duration_ms=(time.perf_counter() - start) * 1000.0, output=output, simulated=self.simulated
        )


def _describe(call: ToolCall) -> dict[str, Any]:
    return {"would_run": call.action.tool, "args": call.action.args}


def _accept(call: ToolCall) -> dict[str, Any]:
    return {"mock": call.action.tool}


def function_binding(
    tool: str,
    *,
    live: StepFunction,
    dry_run: StepFunction = _describe,
    mock: StepFunction = _accept,
    compensate: CompensateFunction | None = None,
    backend: str = "plugin",
    simulated: bool = False,
) -> ToolBinding:
    """A binding from plain functions; `dry_run` defaults to describing the call, `mock` to accepting it."""
    outputs = _LiveOutputs() if compensate is not None else None
    return ToolBinding(
        tool=tool,
        mock=FunctionStep(mock, "mock", simulated),
        dry_run=FunctionStep(dry_run, "dry_run", simulated),
        live=FunctionStep(live, "live", simulated, outputs),
        compensate=FunctionCompensation(compensate, outputs, simulated) if compensate and outputs else None,
        simulated=simulated,
        backend=backend,
    )
