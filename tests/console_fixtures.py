"""Helpers for the console tests: harnesses wired to a `ConsoleGate`, bounded polling, file readers.

Nothing here sleeps unboundedly: every wait polls with `pilot.pause` and fails after a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.worker import WorkerState

from console.app import ConsoleGate, OperatorConsole, make_app
from core.approval import ApprovalGate, PolicyGate
from core.clock import Clock, ManualClock
from core.contracts import standard_registry
from core.events import Event
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import ToolExecutionPlan

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_plans"
SIZE = (160, 48)
FIXED_START = datetime(2024, 1, 15, 14, 30, 22, tzinfo=UTC)
WAIT_S = 15.0  # generous: CI machines are slow and shared; a passing test never waits this long


def sample(name: str) -> dict[str, Any]:
    """A plan from sample_plans/ as a dict."""
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return data


def action(action_id: str, agent: str = "agent_a", tool: str = "math_compute", confidence: float = 0.9, **extra: Any):
    return {"id": action_id, "agent": agent, "tool": tool, "confidence": confidence, **extra}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line parsed: a line that is not JSON fails the test."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def decisions(out: Path) -> list[dict[str, Any]]:
    return read_jsonl(out / "operator_decisions.jsonl")


def final_results(out: Path) -> dict[str, dict[str, Any]]:
    """action_id -> tool result, from tool_execution_log.jsonl (every plan)."""
    results: dict[str, dict[str, Any]] = {}
    for line in read_jsonl(out / "tool_execution_log.jsonl"):
        for r in line["result"]["tool_results"]:
            results[r["action_id"]] = r
    return results


def live_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in result["executions"] if e["mode"] == "LIVE"]


class Collected(list[Event]):
    """Every event published on a bus, in order (appended on the core's thread)."""

    def kinds(self, kind: str) -> list[Any]:
        return [e for e in list(self) if e.kind == kind]


def build_harness(
    plans: list[dict[str, Any]],
    out: Path | None,
    *,
    gate: ApprovalGate | None = None,
    clock: Clock | None = None,
    run_id: str = "console_test",
    **config: Any,
) -> tuple[Phase24Harness, Collected]:
    """A harness on virtual time (unless a clock is given) with no retry delay, and an event collector."""
    config.setdefault("retry_delay_range_s", (0.0, 0.0))
    if out is not None:
        config["output_dir"] = out
    harness = Phase24Harness(
        Phase24ExecutionConfig(**config),
        gate=gate if gate is not None else PolicyGate(),
        clock=clock if clock is not None else ManualClock(FIXED_START),
        registry=standard_registry(),
        run_id=run_id,
        write_outputs=out is not None,
    )
    harness.load_phase21_plans([ToolExecutionPlan.model_validate(p) for p in plans])
    events = Collected()
    harness.bus.subscribe(events.append)
    return harness, events


# Tests answer prompts as fast as they are armed; the misfire tests use the real default.
TEST_ARM_DELAY_S = 0.05


def console_app(
    plans: list[dict[str, Any]],
    out: Path,
    *,
    clock: Clock | None = None,
    autostart: bool = True,
    arm_delay: float = TEST_ARM_DELAY_S,
    **config: Any,
) -> tuple[OperatorConsole, Phase24Harness, Collected]:
    """An app around a fresh harness. The modal's countdown reads the harness's own clock."""
    gate = ConsoleGate()
    harness, events = build_harness(plans, out, gate=gate, clock=clock, **config)
    app = make_app(harness, gate, autostart=autostart, now=harness.clock.now, arm_delay=arm_delay)
    return app, harness, events


async def wait_until(pilot: Pilot[Any], predicate: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll `predicate` while the app runs; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")
        await pilot.pause(0.05)


def modal_ready(app: OperatorConsole, skip: set[str] | frozenset[str] = frozenset()) -> bool:
    """An approval prompt is on top and drawn for a request that is not one of `skip`."""
    modal = app.current_modal
    return (
        modal is not None
        and modal.is_current
        and modal.request is not None
        and modal.request.request_id not in skip
        and modal.shown_id == modal.request.request_id
        and modal.armed
    )


async def wait_modal(pilot: Pilot[Any], app: OperatorConsole, exclude: set[str] | None = None) -> str:
    """Wait for an approval modal (not one of `exclude`, by request id); return its action id."""
    skip = exclude or set()
    await wait_until(pilot, lambda: modal_ready(app, skip), "an approval modal")
    assert app.current_modal is not None
    return app.current_modal.request.action_id


def core_done(app: OperatorConsole) -> bool:
    worker = app.core_worker
    return worker is not None and worker.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)


async def wait_exit(pilot: Pilot[Any], app: OperatorConsole, timeout: float = WAIT_S) -> None:
    await wait_until(pilot, lambda: not app.is_running or app.return_code is not None, "the app to exit", timeout)


@asynccontextmanager
async def running(
    app: OperatorConsole, harness: Phase24Harness, size: tuple[int, int] = SIZE
) -> AsyncIterator[Pilot[Any]]:
    """`app.run_test` that never leaves the core's thread blocked on an approval.

    If the test left the run unfinished (a failure, a bug under test), the run is stopped and
    locked so that pending and later approvals are denied at once and the thread ends.
    """
    try:
        async with app.run_test(size=size) as pilot:
            yield pilot
    finally:
        # The worker reads CANCELLED once the app has gone even if the thread still runs: ask the core.
        if not harness.summary and harness._loop is not None:
            harness.stop("test teardown")
            harness.lock("test teardown", "test")


async def answer_all(pilot: Pilot[Any], app: OperatorConsole, key: str = "n", seen: set[str] | None = None) -> set[str]:
    """Answer every approval modal still to come with `key` until the run ends; return the request ids seen.

    A key the prompt drops (it re-armed meanwhile, e.g. on a loaded machine) is pressed again.
    """
    seen = set() if seen is None else seen
    while not core_done(app):
        try:
            await wait_until(
                pilot, lambda: core_done(app) or modal_ready(app, seen), "the next approval or the end of the run"
            )
        except AssertionError as exc:
            m = app.current_modal
            state = (
                f"screen {app.screen!r}, pending {[r.request_id for r in app.gate.pending]}, seen {sorted(seen)}, "
                f"prompt {m.request.request_id if m and m.request else None} armed {m.armed if m else None} "
                f"settled {m.settled if m else None} shown {m.shown_id if m else None}"
            )
            raise AssertionError(f"{exc}: {state}") from None
        modal = app.current_modal
        if modal is not None and modal_ready(app, seen):
            request_id = modal.request.request_id
            seen.add(request_id)
            await pilot.press(key)
            deadline = time.monotonic() + 2.0
            while not (modal.settled or modal.request is None or modal.request.request_id != request_id):
                if time.monotonic() > deadline:
                    seen.discard(request_id)  # the key was dropped: answer it again once armed
                    break
                await pilot.pause(0.05)
    return seen


def slow_plan(actions: int, agents: int = 1, latency_ms: float = 40.0, plan_id: str = "slow") -> dict[str, Any]:
    """LOW-risk actions that climb to LIVE without approvals; with a SystemClock each mode waits latency_ms."""
    return {
        "plan_id": plan_id,
        "actions": [
            action(f"a{i:03d}", agent=f"agent_{i % agents}", simulate={"latency_ms": latency_ms})
            for i in range(actions)
        ],
    }
