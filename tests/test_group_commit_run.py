"""Group commit on the plan path: agents that reach a durability barrier together share one
fsynced commit, and nothing irreversible starts before its intent is on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from core.approval import PolicyGate
from core.clock import SystemClock
from core.contracts import standard_registry
from core.events import StateTransition, ToolExecuted
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.journal import JOURNAL_FILE, verify_journal
from core.plans import ToolExecutionPlan

AGENTS = 20


def _plan(per_agent: int) -> ToolExecutionPlan:
    actions: list[dict[str, Any]] = []
    for a in range(AGENTS):
        for k in range(per_agent):
            actions.append(
                {
                    "id": f"w{a:02d}_{k}",
                    "agent": f"agent_{a:02d}",
                    # Effectful (an intent per LIVE run) and up to 16 at once, so agents overlap.
                    "tool": "math_compute",
                    "args": {"expression": f"{a} * {k}"},
                    "confidence": 0.95,
                }
            )
    return ToolExecutionPlan.model_validate({"plan_id": "group", "actions": actions})


def _harness(tmp_path: Path) -> Phase24Harness:
    config = Phase24ExecutionConfig(output_dir=tmp_path / "out", state_dir=tmp_path / "state")
    harness = Phase24Harness(
        config, gate=PolicyGate(approve_all=True), clock=SystemClock(), registry=standard_registry()
    )
    harness.load_phase21_plans([_plan(per_agent=5)])
    return harness


def test_twenty_agents_share_commits_and_every_intent_is_settled(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    summary = harness.execute_orchestration_pipeline()
    intents = AGENTS * 5
    assert summary["live_executions"] == intents
    # Each LIVE irreversible step waits twice (intent, outcome): 200 barriers. Grouped, the
    # commits are far fewer than the barriers.
    assert harness.group.waiters >= 2 * intents
    assert harness.group.commits < intents, (harness.group.commits, harness.group.waiters)
    conn = sqlite3.connect(tmp_path / "out" / JOURNAL_FILE)
    try:
        statuses = [row[0] for row in conn.execute("SELECT status FROM intents")]
    finally:
        conn.close()
    assert statuses == ["DONE"] * intents
    assert verify_journal(tmp_path / "out").ok


def test_an_effect_starts_only_after_its_intent_is_committed(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    journal_at_effect: list[tuple[str, str | None]] = []
    effects = tmp_path / "out" / "simulated_effects.jsonl"

    def on_event(event: Any) -> None:
        # The simulated world writes the effect inside the LIVE execution; its ToolExecuted
        # follows. At that moment the intent must already be in the committed table.
        if isinstance(event, ToolExecuted) and event.mode.value == "LIVE":
            conn = sqlite3.connect(tmp_path / "out" / JOURNAL_FILE)
            try:
                row = conn.execute("SELECT status FROM intents WHERE action_id = ?", (event.action_id,)).fetchone()
            finally:
                conn.close()
            journal_at_effect.append((event.action_id, None if row is None else row[0]))

    harness.bus.subscribe(on_event)
    harness.execute_orchestration_pipeline()
    assert len(journal_at_effect) == AGENTS * 5
    assert all(status == "PENDING" for _, status in journal_at_effect), journal_at_effect[:5]
    assert sum(1 for _ in effects.open(encoding="utf-8")) == AGENTS * 5


def test_transitions_reach_completed_after_the_outcome_is_committed(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    seen: list[str | None] = []

    def on_event(event: Any) -> None:
        if isinstance(event, StateTransition) and event.to_state == "COMPLETED":
            conn = sqlite3.connect(tmp_path / "out" / JOURNAL_FILE)
            try:
                row = conn.execute("SELECT status FROM intents WHERE action_id = ?", (event.action_id,)).fetchone()
            finally:
                conn.close()
            seen.append(None if row is None else row[0])

    harness.bus.subscribe(on_event)
    harness.execute_orchestration_pipeline()
    assert seen and all(status == "DONE" for status in seen)
