"""The embedded gate answers a read-only call as soon as upstream's answer is in, while the core
finishes the call's bookkeeping; every other call is answered only once the core is done (an
effect: after its outcome is durable). Driven through `EmbeddedGate` with the gateway's own
steps and an upstream that answers in process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import mcp_types as types

from core.approval import PolicyGate
from core.contracts import ToolContractRegistry
from core.events import IntentStatusChanged, PlanFinished
from core.harness import Phase24ExecutionConfig
from core.mcp_contracts import Annotations, contract_for
from core.orchestrator import OrchestrationResult
from core.plans import ToolExecutionPlan
from gateway.config import UpstreamSpec
from gateway.embedded import EmbeddedGate, GatewayHarness
from gateway.tools import GatewayTool, Mailbox, binding_for
from gateway.upstream import Upstream


class _Upstream(Upstream):
    """Connected, and answering each call in process after `delay_s`."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(UpstreamSpec(name="up", command="unused"))
        self.session = cast(Any, object())
        self.delay_s = delay_s
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float | None) -> types.CallToolResult:
        self.sent.append((tool, arguments))
        await asyncio.sleep(self.delay_s)
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"{tool} done")], is_error=False)


def _tool(name: str, upstream: Upstream, annotations: Annotations) -> GatewayTool:
    listed = types.Tool(name=name, input_schema={"type": "object"})
    return GatewayTool(name, upstream, listed, contract_for(name, "", annotations), 0.99, "test")


class _Setup:
    def __init__(self, tmp: Path, delay_s: float = 0.0) -> None:
        self.upstream = _Upstream(delay_s)
        self.look = _tool("look", self.upstream, Annotations(read_only=True))
        self.act = _tool("act", self.upstream, Annotations(destructive=True))
        registry = ToolContractRegistry([self.look.contract, self.act.contract])
        config = Phase24ExecutionConfig(output_dir=tmp / "gw", state_dir=tmp / "state")
        self.harness = GatewayHarness(config, gate=PolicyGate(approve_all=True), registry=registry)
        self.mailbox = Mailbox()
        for tool in (self.look, self.act):
            self.harness.executors.bind(tool.contract.name, binding_for(tool, self.mailbox, 1 << 20))
        self.finished: list[str] = []
        self.harness.bus.subscribe(lambda e: self.finished.append(e.plan_id) if isinstance(e, PlanFinished) else None)
        self.settled: list[int] = []
        self.harness.bus.subscribe(lambda e: self.settled.append(e.seq) if isinstance(e, IntentStatusChanged) else None)
        # The plan's bookkeeping after the steps (signals, health, result line, PlanFinished)
        # waits for `release`: what is answered before it is set did not wait for it.
        self.release = asyncio.Event()
        real = self.harness.orchestrator.orchestrate

        async def held(plan: ToolExecutionPlan) -> OrchestrationResult:
            result = await real(plan)
            await self.release.wait()
            return result

        self.harness.orchestrator.orchestrate = held  # type: ignore[method-assign]


async def test_a_read_only_call_is_answered_before_the_bookkeeping_which_still_completes(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    async with setup.harness.proposal_session():
        gate = EmbeddedGate(setup.harness, setup.mailbox, "agent")
        result = await asyncio.wait_for(gate.propose(setup.look, {"key": "k"}, 0.99), 30)  # never waits for release
        assert not result.is_error and result.content[0].text == "look done"  # type: ignore[union-attr]
        assert setup.finished == [] and len(gate.background) == 1  # the plan is not finished yet
        setup.release.set()
        await gate.drain()
        assert len(setup.finished) == 1 and not gate.background
        assert setup.mailbox._items == {} and setup.mailbox._answers == {}
    assert setup.harness.summary["live_executions"] == 1
    log = (tmp_path / "gw" / "tool_execution_log.jsonl").read_text()
    assert '"final_state":"COMPLETED"' in log


async def test_an_effectful_call_is_answered_only_after_its_outcome_is_durable(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    async with setup.harness.proposal_session():
        gate = EmbeddedGate(setup.harness, setup.mailbox, "agent")
        call = asyncio.ensure_future(gate.propose(setup.act, {"key": "k"}, 0.99))
        while not setup.upstream.sent:
            await asyncio.sleep(0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not call.done()  # upstream answered; the bookkeeping is held, so is the answer
        setup.release.set()
        result = await call
        journal = setup.harness.journal
        assert journal is not None
        assert not result.is_error and len(setup.finished) == 1 and not gate.background
        assert setup.settled and journal.committed_seq >= setup.settled[-1]  # the outcome was committed


async def test_a_cancelled_read_only_call_cancels_its_run(tmp_path: Path) -> None:
    setup = _Setup(tmp_path, delay_s=30.0)
    setup.release.set()
    async with setup.harness.proposal_session():
        gate = EmbeddedGate(setup.harness, setup.mailbox, "agent")
        call = asyncio.ensure_future(gate.propose(setup.look, {"key": "slow"}, 0.99))
        while not setup.upstream.sent:
            await asyncio.sleep(0.01)
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            pass
        assert len(gate.background) == 1
        await asyncio.wait_for(gate.drain(), 10)  # the run was cancelled, not left waiting 30 s
        assert not gate.background


async def test_where_flushes_are_reported_the_step_waits_for_the_answer_to_be_written(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    setup.release.set()
    setup.mailbox.flushed()  # the server's stdout reports its flushes (the initialize answer)
    async with setup.harness.proposal_session():
        gate = EmbeddedGate(setup.harness, setup.mailbox, "agent")
        result = await gate.propose(setup.look, {"key": "k"}, 0.99)
        assert not result.is_error and len(gate.background) == 1
        for _ in range(50):
            await asyncio.sleep(0)
        # The LIVE step holds the core until the answer is written: nothing was flushed yet.
        assert setup.finished == [] and len(setup.mailbox._held) == 1
        setup.mailbox.flushed()
        await gate.drain()
        assert len(setup.finished) == 1 and setup.mailbox._held == {}


async def test_a_step_waits_for_a_flush_that_never_comes_only_briefly(tmp_path: Path) -> None:
    setup = _Setup(tmp_path)
    setup.release.set()
    setup.mailbox.flushed()
    async with setup.harness.proposal_session():
        gate = EmbeddedGate(setup.harness, setup.mailbox, "agent")
        await gate.propose(setup.look, {"key": "k"}, 0.99)
        await asyncio.wait_for(gate.drain(), 10)  # ANSWER_WAIT_S later, without any flush
        assert len(setup.finished) == 1 and setup.mailbox._held == {}
    log = (tmp_path / "gw" / "tool_execution_log.jsonl").read_text()
    assert '"final_state":"COMPLETED"' in log


async def test_a_timeout_during_the_wait_for_the_write_does_not_undo_a_delivered_answer(tmp_path: Path) -> None:
    """The step's timeout landing after upstream answered (the answer is the agent's) while
    the step waits for the write: the call is recorded as answered, not as timed out."""
    from core.guard import GuardedStep

    setup = _Setup(tmp_path)
    setup.mailbox.flushed()
    binding = binding_for(setup.look, setup.mailbox, 1 << 20)
    # Upstream answers at once and no flush comes to end the wait (ANSWER_WAIT_S, 10 ms): the
    # step's 5 ms timeout lands inside that wait.
    live = GuardedStep(binding.live, "LIVE", 0.005, False, False)
    plan = ToolExecutionPlan.model_validate(
        {"plan_id": "p", "actions": [{"id": "a", "agent": "agent", "tool": "look", "args": {}, "confidence": 0.99}]}
    )
    setup.mailbox.expect("p", "a")
    from core.bindings import ToolCall

    outcome = await live(ToolCall("p", plan.actions[0], "agent", 1))
    assert outcome.success and not outcome.timed_out, outcome
    assert setup.mailbox._held == {}
