"""Shared fixtures: a harness factory on virtual time, plan builders, event capture."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from core.approval import ApprovalGate, PolicyGate
from core.clock import ManualClock
from core.contracts import ExecutionMode, standard_registry
from core.events import Event, ToolExecuted
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import ToolExecutionPlan

ROOT = Path(__file__).resolve().parent.parent

# Never the user's own system-wide lock state, also for anything that reads the environment
# at import time; each test gets its own below (_system_lock_state).
os.environ["PHASE24_STATE_DIR"] = tempfile.mkdtemp(prefix="phase24-test-state-")
SAMPLES = ROOT / "sample_plans"
VALIDATIONS = SAMPLES / "phase22" / "validations.json"

MODE_ORDER = [ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE]


@pytest.fixture(autouse=True)
def _system_lock_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own system-wide lock state (never the user's own), unlocked."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("PHASE24_STATE_DIR", str(state))
    return state


def act(action_id: str, agent: str = "agent_a", tool: str = "math_compute", confidence: float = 0.9, **extra: Any):
    """One action dict for a plan."""
    return {"id": action_id, "agent": agent, "tool": tool, "confidence": confidence, **extra}


def plan(actions: list[dict[str, Any]], plan_id: str = "p1", **extra: Any) -> ToolExecutionPlan:
    """A validated plan from a list of action dicts."""
    return ToolExecutionPlan.model_validate({"plan_id": plan_id, "actions": actions, **extra})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line parsed (a line that is not JSON fails the test)."""
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class EventLog(list[Event]):
    """Every event published on a harness's bus, in order."""

    def of(self, cls: type[Event], **match: Any) -> list[Any]:
        return [e for e in self if type(e) is cls and all(getattr(e, k) == v for k, v in match.items())]

    def executed(self, **match: Any) -> list[ToolExecuted]:
        return self.of(ToolExecuted, **match)


def record(harness: Phase24Harness) -> EventLog:
    log = EventLog()
    harness.bus.subscribe(log.append)
    return log


def results_by_id(harness: Phase24Harness, plan_index: int = 0) -> dict[str, dict[str, Any]]:
    return {r["action_id"]: r for r in harness.results[plan_index].tool_results}


HarnessFactory = Callable[..., Phase24Harness]


@pytest.fixture(scope="session")
def make_harness(tmp_path_factory: pytest.TempPathFactory) -> HarnessFactory:
    """`make_harness(plans=..., gate=..., clock=..., write_outputs=..., **config)`.

    Defaults: a fresh output directory, no retry delay, ManualClock, deny-by-default gate,
    run id "test_run". Session-scoped so Hypothesis tests may use it.
    """

    def factory(
        plans: list[ToolExecutionPlan] | None = None,
        *,
        gate: ApprovalGate | None = None,
        clock: ManualClock | None = None,
        write_outputs: bool = True,
        run_id: str = "test_run",
        **config: Any,
    ) -> Phase24Harness:
        config.setdefault("retry_delay_range_s", (0.0, 0.0))
        if "output_dir" not in config:
            config["output_dir"] = tmp_path_factory.mktemp("out") / "run"
        # Each harness its own system-wide lock state: a lock in one example never carries over.
        config.setdefault("state_dir", Path(config["output_dir"]).parent / "state")
        harness = Phase24Harness(
            Phase24ExecutionConfig(**config),
            gate=gate if gate is not None else PolicyGate(approve_all=False),
            clock=clock or ManualClock(),
            registry=standard_registry(),
            run_id=run_id,
            write_outputs=write_outputs,
        )
        if plans:
            harness.load_phase21_plans(plans)
        return harness

    return factory


# CI runs Hypothesis derandomized, so a submission's result does not depend on the draw;
# local runs keep exploring new examples.
if os.environ.get("CI"):
    hypothesis.settings.register_profile("ci", derandomize=True, database=None)
    hypothesis.settings.load_profile("ci")
