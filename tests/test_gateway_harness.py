"""The embedded gateway's harness (gateway/embedded.py `GatewayHarness`): which barriers wait
for a journal commit and which commits are fsynced, and how often health is published, for a
stream of one-call proposals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.approval import PolicyGate
from core.bindings import ExecutionOutcome, ToolBinding
from core.contracts import ToolContractRegistry
from core.events import ApprovalDecided, HealthUpdated, IntentRecorded
from core.harness import Phase24ExecutionConfig
from core.mcp_contracts import Annotations, contract_for
from core.plans import PlannedAction, ToolExecutionPlan
from gateway.embedded import GatewayHarness


async def _instant(call: Any) -> ExecutionOutcome:
    return ExecutionOutcome(success=True, duration_ms=0.0, output={}, simulated=False)


def _plan(i: int, tool: str) -> ToolExecutionPlan:
    action = PlannedAction(id=f"call-{i}", agent="a", tool=tool, args={"n": i}, confidence=0.95)
    return ToolExecutionPlan(plan_id=f"mcp-{i}", actions=(action,))


async def test_read_only_calls_wait_for_no_commit_and_a_decision_or_an_intent_is_fsynced(tmp_path: Path) -> None:
    registry = ToolContractRegistry(
        [contract_for("look", "", Annotations(read_only=True)), contract_for("act", "", Annotations())]
    )
    config = Phase24ExecutionConfig(output_dir=tmp_path / "gw", state_dir=tmp_path / "state")
    harness = GatewayHarness(config, gate=PolicyGate(approve_all=False), registry=registry)
    for tool in ("look", "act"):
        harness.executors.bind(tool, ToolBinding(tool=tool, mock=_instant, dry_run=_instant, live=_instant))
    health: list[HealthUpdated] = []
    harness.bus.subscribe(lambda e: health.append(e) if isinstance(e, HealthUpdated) else None)
    decided: list[int] = []
    harness.bus.subscribe(lambda e: decided.append(e.seq) if isinstance(e, ApprovalDecided) else None)
    commits: list[tuple[str, bool]] = []
    harness.read_only_commit_delay_s = 3600.0  # no deferred commit during the calls below
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
        assert harness.deferred_barriers == 19
        assert journal.committed_seq < journal.last_seq  # their records wait for a commit
        label = "denied"
        denied = await harness.run_proposal(_plan(20, "act"))
        # The decision's durable commit carries every record before it, the read-only calls' too.
        assert journal.committed_seq >= decided[-1]
        label = "after the denial"
        await harness.run_proposal(_plan(21, "look"))
        label = "read-only again"
        await harness.run_proposal(_plan(22, "look"))
        during = len(health)
        label = "closing"
    assert denied.tool_results[0]["final_state"] == "LOCKED"
    assert ("first read-only", True) in commits  # the session's first barrier is durable
    assert [d for label, d in commits if label in ("read-only", "read-only again")] == []
    assert ("denied", True) in commits  # a decision is fsynced
    assert ("closing", True) in commits  # the end of the session syncs everything
    assert journal.committed_seq == journal.last_seq
    # Health: at most every health_min_interval_s while serving (not 23 times), and a final one.
    assert during < 10
    assert len(health) == during + 1


async def test_read_only_records_are_committed_within_the_delay_without_an_fsync(tmp_path: Path) -> None:
    registry = ToolContractRegistry([contract_for("look", "", Annotations(read_only=True))])
    config = Phase24ExecutionConfig(output_dir=tmp_path / "gw", state_dir=tmp_path / "state")
    harness = GatewayHarness(config, gate=PolicyGate(approve_all=False), registry=registry)
    harness.executors.bind("look", ToolBinding(tool="look", mock=_instant, dry_run=_instant, live=_instant))
    harness.read_only_commit_delay_s = 0.05
    async with harness.proposal_session():
        journal = harness.journal
        assert journal is not None
        await harness.run_proposal(_plan(0, "look"))  # the first barrier commits (fsynced)
        commits: list[bool] = []
        real = journal.commit

        def commit(durable: bool = True) -> None:
            commits.append(durable)
            real(durable)

        journal.commit = commit  # type: ignore[method-assign]
        for i in range(1, 6):
            await harness.run_proposal(_plan(i, "look"))
        published = journal.last_seq
        assert journal.committed_seq < published
        for _ in range(100):  # the deferred commit comes after the delay and a few loop turns
            if journal.committed_seq >= published:
                break
            await asyncio.sleep(0.05)
        assert journal.committed_seq >= published
        assert commits == [False]  # one commit for the five calls, without an fsync


async def test_an_effect_never_starts_before_its_intent_and_every_earlier_record_are_fsynced(tmp_path: Path) -> None:
    registry = ToolContractRegistry(
        [contract_for("look", "", Annotations(read_only=True)), contract_for("act", "", Annotations())]
    )
    config = Phase24ExecutionConfig(output_dir=tmp_path / "gw", state_dir=tmp_path / "state")
    harness = GatewayHarness(config, gate=PolicyGate(approve_all=True), registry=registry)
    harness.read_only_commit_delay_s = 3600.0
    seen: dict[str, int] = {}
    harness.bus.subscribe(lambda e: seen.__setitem__("intent", e.seq) if isinstance(e, IntentRecorded) else None)
    at_effect: list[tuple[int, int, bool]] = []

    async def act(call: Any) -> ExecutionOutcome:
        journal = harness.journal
        assert journal is not None
        at_effect.append((seen["intent"], journal.committed_seq, journal._unsynced))
        return await _instant(call)

    harness.executors.bind("look", ToolBinding(tool="look", mock=_instant, dry_run=_instant, live=_instant))
    harness.executors.bind("act", ToolBinding(tool="act", mock=_instant, dry_run=_instant, live=act))
    async with harness.proposal_session():
        journal = harness.journal
        assert journal is not None
        for i in range(5):
            await harness.run_proposal(_plan(i, "look"))
        read_only_records = journal.last_seq
        assert journal.committed_seq < read_only_records  # deferred
        done = await harness.run_proposal(_plan(5, "act"))
    assert done.tool_results[0]["final_state"] == "COMPLETED"
    intent_seq, committed, unsynced = at_effect[0]
    # When the effect started: its intent, and every record before it (the read-only calls'
    # deferred ones too), were committed and fsynced.
    assert intent_seq > read_only_records
    assert committed >= intent_seq
    assert not unsynced
