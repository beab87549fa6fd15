"""The embedded gateway's harness (gateway/embedded.py `GatewayHarness`): which journal commits
are fsynced, and how often health is published, for a stream of one-call proposals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.approval import PolicyGate
from core.bindings import ExecutionOutcome, ToolBinding
from core.contracts import ToolContractRegistry
from core.events import HealthUpdated
from core.harness import Phase24ExecutionConfig
from core.mcp_contracts import Annotations, contract_for
from core.plans import PlannedAction, ToolExecutionPlan
from gateway.embedded import GatewayHarness


async def _instant(call: Any) -> ExecutionOutcome:
    return ExecutionOutcome(success=True, duration_ms=0.0, output={}, simulated=False)


def _plan(i: int, tool: str) -> ToolExecutionPlan:
    action = PlannedAction(id=f"call-{i}", agent="a", tool=tool, args={"n": i}, confidence=0.95)
    return ToolExecutionPlan(plan_id=f"mcp-{i}", actions=(action,))


async def test_read_only_calls_skip_the_fsync_and_a_decision_or_an_intent_never_does(tmp_path: Path) -> None:
    registry = ToolContractRegistry(
        [contract_for("look", "", Annotations(read_only=True)), contract_for("act", "", Annotations())]
    )
    config = Phase24ExecutionConfig(output_dir=tmp_path / "gw", state_dir=tmp_path / "state")
    harness = GatewayHarness(config, gate=PolicyGate(approve_all=False), registry=registry)
    for tool in ("look", "act"):
        harness.executors.bind(tool, ToolBinding(tool=tool, mock=_instant, dry_run=_instant, live=_instant))
    health: list[HealthUpdated] = []
    harness.bus.subscribe(lambda e: health.append(e) if isinstance(e, HealthUpdated) else None)
    commits: list[tuple[str, bool]] = []
    async with harness.proposal_session():
        journal = harness.journal
        assert journal is not None
        real = journal.commit

        def commit(durable: bool = True) -> None:
            commits.append((label, durable))
            real(durable)

        journal.commit = commit  # type: ignore[method-assign]
        label = "first read-only"
        await harness.run_proposal(_plan(0, "look"))
        label = "read-only"
        for i in range(1, 20):
            await harness.run_proposal(_plan(i, "look"))
        label = "denied"
        denied = await harness.run_proposal(_plan(20, "act"))
        label = "after the denial"
        await harness.run_proposal(_plan(21, "look"))
        label = "read-only again"
        await harness.run_proposal(_plan(22, "look"))
        during = len(health)
        label = "closing"
    assert denied.tool_results[0]["final_state"] == "LOCKED"
    assert ("first read-only", True) in commits  # the session's first barrier is durable
    assert {d for label, d in commits if label == "read-only"} == {False}
    assert ("denied", True) in commits  # a decision is fsynced
    assert {d for label, d in commits if label == "read-only again"} == {False}
    assert ("closing", True) in commits  # the end of the session syncs everything
    # Health: at most every health_min_interval_s while serving (not 23 times), and a final one.
    assert during < 10
    assert len(health) == during + 1
