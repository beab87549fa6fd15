"""The gate service's core, in process: intake, decisions, grants, leases, group commit, stop."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.commands import GateCommands
from core.errors import JournalError
from core.event_feed import EventFeed, Watch
from core.events import ApprovalDecided, GrantOutcome, ProposalReceived
from core.gate_service import GateRequestRefused, GateService
from core.grants import GrantRefused
from core.group_commit import GroupCommit
from core.harness import Phase24ExecutionConfig
from core.journal import read_events, verify_journal
from core.proposals import DeclaredContract, ProposalIn
from tests.conftest import read_jsonl


def proposal(tool: str = "memory_search", agent: str = "a1", confidence: float = 0.9, **extra: object) -> ProposalIn:
    return ProposalIn.model_validate({"agent": agent, "tool": tool, "confidence": confidence, **extra})


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[GateService]:
    svc = GateService(Phase24ExecutionConfig(output_dir=tmp_path / "out"), lease_s=0.3)
    task = asyncio.create_task(svc.serve())
    await svc.started.wait()
    yield svc
    svc.request_stop("test over")
    await task


def kinds(out: Path) -> list[str]:
    return [e.kind for e in read_events(out)]


async def test_a_proposal_is_durably_journaled_before_it_is_acknowledged(service: GateService) -> None:
    accepted = await service.submit(proposal(args={"q": "x"}))
    # Read with a separate connection: only what is committed is visible.
    received = [e for e in read_events(service.config.output_dir) if isinstance(e, ProposalReceived)]
    assert [(e.proposal_id, e.args) for e in received] == [(accepted.proposal_id, {"q": "x"})]
    status = await service.wait(accepted.proposal_id, 2)
    assert (status.state, status.mode, status.decision) == ("COMPLETED", "LIVE", "allowed")
    assert [e["mode"] for e in status.result["executions"]] == ["MOCK", "DRY_RUN", "LIVE"]  # type: ignore[index]


async def test_same_action_id_is_the_same_proposal_and_a_different_body_is_refused(service: GateService) -> None:
    first = await service.submit(proposal(action_id="k1"))
    again = await service.submit(proposal(action_id="k1"))
    assert again.proposal_id == first.proposal_id and again.duplicate
    with pytest.raises(GateRequestRefused) as refused:
        await service.submit(proposal(action_id="k1", confidence=0.5))
    assert (refused.value.reason, refused.value.field) == ("conflict", "action_id")
    other_agent = await service.submit(proposal(agent="a2", action_id="k1"))
    assert other_agent.proposal_id != first.proposal_id
    await service.wait(other_agent.proposal_id, 2)
    assert kinds(service.config.output_dir).count("proposal_received") == 2


async def test_dependencies_are_met_by_earlier_completed_proposals_of_the_agent(service: GateService) -> None:
    early = await service.wait((await service.submit(proposal("msgraph_send_email", confidence=0.95))).proposal_id, 2)
    assert early.mode == "DRY_RUN" and "capped at DRY_RUN" in early.reason
    for tool in ("msgraph_get_user", "msgraph_create_draft"):
        await service.wait((await service.submit(proposal(tool, confidence=0.95))).proposal_id, 2)
    later = await service.submit(proposal("msgraph_send_email", confidence=0.95, args={"to": "b"}))
    status = await service.wait(later.proposal_id, 0.3)
    assert status.state == "AWAITING_APPROVAL" and status.request_id is not None
    decision = await GateCommands(service).decide(status.request_id, False, "no", "operator:t")
    assert decision["approved"] is False
    final = await service.wait(later.proposal_id, 2)
    assert (final.state, final.decision) == ("LOCKED", "denied")


async def test_an_approval_is_applied_by_the_controller_and_recorded(service: GateService) -> None:
    accepted = await service.submit(proposal("database_write", args={"row": 1}))
    status = await service.wait(accepted.proposal_id, 0.3)
    assert status.state == "AWAITING_APPROVAL" and status.request_id
    answer = await GateCommands(service).decide(status.request_id, True, "fine", "operator:t")
    assert answer == {"request_id": status.request_id, "approved": True, "decided_by": "operator:t", "reason": "fine"}
    final = await service.wait(accepted.proposal_id, 2)
    assert (final.state, final.mode, final.decision) == ("COMPLETED", "LIVE", "approved")
    decided = [e for e in read_events(service.config.output_dir) if isinstance(e, ApprovalDecided)]
    assert [(e.approved, e.decided_by) for e in decided] == [(True, "operator:t")]  # durable before the answer
    with pytest.raises(GateRequestRefused) as again:
        await GateCommands(service).decide(status.request_id, True, "", "operator:t")
    assert again.value.reason == "not_found"


async def test_lock_holds_new_proposals_at_mock_and_denies_waiting_approvals(service: GateService) -> None:
    waiting = await service.submit(proposal("database_write"))
    await service.wait(waiting.proposal_id, 0.2)
    state = await GateCommands(service).lock("end of shift", "operator:t")
    assert state == {"locked": True, "reason": "end of shift"}
    assert (await service.wait(waiting.proposal_id, 2)).decision == "locked"
    held = await service.wait((await service.submit(proposal())).proposal_id, 2)
    assert (held.state, held.mode, held.decision) == ("LOCKED", "MOCK", "locked")
    await GateCommands(service).unlock("back", "operator:t")
    assert (await service.wait((await service.submit(proposal(args={"n": 2}))).proposal_id, 2)).mode == "LIVE"


async def test_an_agent_executed_tool_gets_one_grant_after_its_intent_is_durable(service: GateService) -> None:
    contract = {"risk": "LOW", "reversible": True}
    accepted = await service.submit(proposal("post_note", args={"t": 1}, contract=contract))
    status = await service.wait(accepted.proposal_id, 2)
    assert (status.state, status.mode, status.executed_by) == ("GRANTED", "LIVE", "agent")
    assert status.grant_id is not None
    intents = service.journal.intents() if service.journal else []
    assert [(i["tool"], i["status"]) for i in intents] == [("post_note", "PENDING")]
    with pytest.raises(GrantRefused) as other:
        service.grants.report(status.grant_id, "a2", True, None, None)
    assert other.value.reason == "forbidden"
    service.grants.report(status.grant_id, "a1", True, {"id": 7}, None)
    final = await service.wait_finished(accepted.proposal_id, 2)
    assert (final.state, final.decision, final.result) == ("COMPLETED", "allowed", {"id": 7})
    with pytest.raises(GrantRefused) as twice:
        service.grants.report(status.grant_id, "a1", True, None, None)
    assert twice.value.reason == "conflict"
    assert [i["status"] for i in service.journal.intents()] == ["DONE"]  # type: ignore[union-attr]


async def test_a_grant_without_outcome_becomes_unknown_and_is_never_granted_again(service: GateService) -> None:
    accepted = await service.submit(proposal("post_note", args={"t": 2}, contract={"risk": "MEDIUM"}))
    status = await service.wait(accepted.proposal_id, 2)
    assert status.grant_id is not None
    final = await service.wait_finished(accepted.proposal_id, 3)
    assert (final.state, final.decision) == ("ABORTED", "unknown")
    assert [i["status"] for i in service.journal.intents()] == ["UNKNOWN"]  # type: ignore[union-attr]
    with pytest.raises(GrantRefused) as late:
        service.grants.report(status.grant_id, "a1", True, None, None)
    assert late.value.reason == "conflict"
    await service.bus.barrier()
    outcomes = [e.status for e in read_events(service.config.output_dir) if isinstance(e, GrantOutcome)]
    assert outcomes == ["UNKNOWN", "LATE"]
    assert [i["status"] for i in service.journal.intents()] == ["UNKNOWN"]  # type: ignore[union-attr]


async def test_declared_contracts_are_checked_and_fixed(service: GateService) -> None:
    with pytest.raises(GateRequestRefused) as registered:
        await service.submit(proposal("memory_search", contract={"risk": "LOW", "reversible": True}))
    assert (registered.value.reason, registered.value.field) == ("invalid", "contract")
    with pytest.raises(GateRequestRefused) as unsafe:
        await service.submit(proposal("send_fax", contract={"risk": "LOW", "reversible": False}))
    assert unsafe.value.field == "contract" and "irreversible" in str(unsafe.value)
    undeclared = await service.submit(proposal("send_fax", confidence=0.95))
    status = await service.wait(undeclared.proposal_id, 0.3)
    assert status.state == "AWAITING_APPROVAL"  # nothing declared: HIGH risk, needs an approval
    with pytest.raises(GateRequestRefused) as changed:
        await service.submit(proposal("send_fax", contract={"risk": "MEDIUM", "reversible": True}))
    assert (changed.value.reason, changed.value.field) == ("conflict", "contract")
    assert service._agent_tools["send_fax"] == DeclaredContract()


async def test_concurrent_proposals_share_commits(service: GateService) -> None:
    before = service.group.commits
    accepted = await asyncio.gather(*(service.submit(proposal(agent=f"a{i}")) for i in range(20)))
    await asyncio.gather(*(service.wait(a.proposal_id, 2) for a in accepted))
    commits = service.group.commits - before
    assert 1 <= commits < 20, commits


async def test_stop_denies_waiting_approvals_and_settles_grants(tmp_path: Path) -> None:
    svc = GateService(Phase24ExecutionConfig(output_dir=tmp_path / "out"), lease_s=60)
    task = asyncio.create_task(svc.serve())
    await svc.started.wait()
    waiting = await svc.submit(proposal("database_write"))
    granted = await svc.submit(proposal("post_note", contract={"risk": "LOW", "reversible": True}))
    await svc.wait(waiting.proposal_id, 0.2)
    await svc.wait(granted.proposal_id, 2)
    svc.request_stop("shutting down")
    summary = await asyncio.wait_for(task, 5)
    assert svc.status(waiting.proposal_id).decision == "locked"
    assert svc.status(granted.proposal_id).decision == "unknown"
    with pytest.raises(GateRequestRefused):
        await svc.submit(proposal())
    out = tmp_path / "out"
    assert verify_journal(out).ok
    assert summary["plans_processed"] == 2 and (out / "orchestration_summary.json").exists()
    assert len(read_jsonl(out / "tool_execution_log.jsonl")) == 2
    conn = sqlite3.connect(out / "journal.sqlite3")
    assert conn.execute("SELECT status FROM intents").fetchall() == [("UNKNOWN",)]


async def test_group_commit_fails_every_waiter_when_the_commit_fails() -> None:
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise JournalError("disk full")

    group = GroupCommit(failing)
    results = await asyncio.gather(group.barrier(), group.barrier(), group.barrier(), return_exceptions=True)
    assert calls == [1]
    assert all(isinstance(r, JournalError) for r in results)


async def test_the_event_feed_resumes_from_the_journal_past_its_ring(tmp_path: Path) -> None:
    svc = GateService(Phase24ExecutionConfig(output_dir=tmp_path / "out"))
    small = EventFeed(svc.bus, capacity=5, journal_dir=lambda: tmp_path / "out")
    task = asyncio.create_task(svc.serve())
    await svc.started.wait()
    for i in range(3):
        await svc.wait((await svc.submit(proposal(args={"i": i}))).proposal_id, 2)
    await svc.bus.barrier()
    backlog, watch = small.watch(since=1)
    assert [seq for seq, _, _ in backlog] == list(range(2, svc.bus.last_seq + 1))  # journal, then the ring
    assert all(json.loads(data)["seq"] == seq for seq, _, data in backlog)
    await svc.submit(proposal(args={"i": 9}))
    item = await asyncio.wait_for(watch.queue.get(), 2)
    assert item is not None and item[1] == "proposal_received"
    svc.request_stop("test over")
    await task
    assert svc.feed.closed


def test_a_watcher_that_falls_behind_is_cut_off_not_buffered() -> None:
    watch = Watch(limit=3)
    for seq in range(1, 10):
        watch.put((seq, "k", "{}"))
    assert watch.overflowed and watch.queue.qsize() <= 3
    drained = [watch.queue.get_nowait() for _ in range(watch.queue.qsize())]
    assert drained[-1] is None  # the end marker: the stream closes, the watcher resumes by seq


async def test_a_long_lived_service_keeps_a_bounded_number_of_finished_proposals(service: GateService) -> None:
    service.retain_finished = 3
    accepted = []
    for i in range(5):
        accepted.append(await service.submit(proposal(args={"i": i}, action_id=f"k{i}")))
        await service.wait_finished(accepted[-1].proposal_id, 2)
    with pytest.raises(GateRequestRefused) as gone:
        service.status(accepted[0].proposal_id)
    assert gone.value.reason == "not_found"
    assert service.status(accepted[4].proposal_id).decision == "allowed"
    assert len(service._proposals) == 3 and len(service._by_key) == 3


async def test_an_operator_edit_runs_the_edited_arguments_and_deny_and_stop_stops_the_agent(
    service: GateService,
) -> None:
    """The command port carries edit-then-approve and deny-and-stop, as the console does."""
    edited = await service.submit(proposal("database_write", args={"row": 1}))
    status = await service.wait(edited.proposal_id, 0.3)
    assert status.request_id is not None
    await GateCommands(service).decide(
        status.request_id, True, "row 2 instead", "operator:t", edited_args={"row": 2}, args_fully_visible=True
    )
    final = await service.wait(edited.proposal_id, 2)
    assert (final.state, final.mode, final.decision) == ("COMPLETED", "LIVE", "approved")
    (decided,) = [e for e in read_events(service.config.output_dir) if isinstance(e, ApprovalDecided)]
    assert decided.edited_args == {"row": 2} and decided.original_action_hash and decided.args_fully_visible

    stopped = await service.submit(proposal("database_write", agent="a2", args={"row": 3}))
    status = await service.wait(stopped.proposal_id, 0.3)
    assert status.request_id is not None
    await GateCommands(service).decide(status.request_id, False, "enough", "operator:t", stop_agent=True)
    assert (await service.wait(stopped.proposal_id, 2)).decision == "denied"
    later = await service.wait((await service.submit(proposal("memory_search", agent="a2"))).proposal_id, 2)
    assert later.state == "ABORTED" and "stopped" in later.reason
    other = await service.wait((await service.submit(proposal("memory_search", agent="a3"))).proposal_id, 2)
    assert other.state == "COMPLETED"


async def test_the_learning_analysis_runs_at_most_every_interval_while_serving_and_once_at_stop(
    tmp_path: Path,
) -> None:
    from core.clock import ManualClock

    clock = ManualClock()
    svc = GateService(Phase24ExecutionConfig(output_dir=tmp_path / "out"), clock=clock)
    analyses: list[float] = []
    generate = svc.feedback_loop.generate_signals

    def counted() -> list:  # type: ignore[type-arg]
        analyses.append(clock.monotonic())
        return generate()

    svc.feedback_loop.generate_signals = counted  # type: ignore[method-assign]
    task = asyncio.create_task(svc.serve())
    await svc.started.wait()

    async def finished(count: int) -> None:  # a proposal's "plan" ends a little after its decision
        for _ in range(200):
            if len(svc.statuses) >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{len(svc.statuses)} plans finished, expected {count}")

    for i in range(5):
        await svc.wait((await svc.submit(proposal(args={"i": i}))).proposal_id, 2)
        await finished(i + 1)
    assert len(analyses) == 1  # the first proposal's; the next four fall within the interval
    clock.advance(svc.config.health_min_interval_s)
    await svc.wait((await svc.submit(proposal(args={"i": 5}))).proposal_id, 2)
    await finished(6)
    assert len(analyses) == 2
    svc.request_stop("test over")
    await task
    assert len(analyses) == 3  # the final analysis at stop
