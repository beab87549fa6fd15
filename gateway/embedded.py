"""The embedded gate (the gateway's default): the whole core in the gateway's own process.

Each call becomes a one-action plan run by `Phase24Harness.run_proposal`, the same pipeline
as a plan file's: MOCK -> DRY_RUN -> LIVE by risk and confidence, conflicts, approvals
(headless policy: deny by default, `--approve-all` for demos), the system-wide lock, the
journal (the intent is durable before upstream is called) and the output files.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types

from core.approval import ApprovalGate, canonical_action_hash
from core.canonical import NotCanonical
from core.contracts import ExecutionMode, ToolContractRegistry
from core.controller import live_threshold
from core.errors import ConfigError, JournalError, Phase24Error
from core.events import (
    Event,
    HealthUpdated,
    PlanFinished,
    PlanStarted,
    SignalEmitted,
    StateTransition,
    ToolExecuted,
)
from core.group_commit import GroupCommit
from core.harness import RUN_RECORD, Phase24ExecutionConfig, Phase24Harness
from core.orchestrator import OrchestrationResult
from core.plans import PlannedAction, ToolExecutionPlan
from core.run_dir_lock import RUN_DIR_LOCK
from gateway.responses import refused, response
from gateway.tools import GatewayTool, Mailbox


def log(text: str) -> None:
    print(f"phase24 mcp-gateway: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GatewayOptions:
    out: Path
    approve_all: bool = False
    state_dir: Path | None = None
    durable_journal: bool = True


class EmbeddedGate:
    """Proposals to the harness of this process (inside its `proposal_session`)."""

    def __init__(self, harness: Phase24Harness, mailbox: Mailbox, agent: str) -> None:
        self.harness = harness
        self.mailbox = mailbox
        self.agent = agent
        # Action ids stay unique across restarts of one gateway run: a continued run's ids
        # start from the journal's last sequence number ("call-0.1", later "call-41.1").
        self.base = harness.bus.last_seq
        self.calls = 0
        #: Runs of read-only calls already answered, finishing their bookkeeping.
        self.background: set[asyncio.Future[OrchestrationResult]] = set()

    async def propose(self, tool: GatewayTool, arguments: dict[str, Any], confidence: float) -> types.CallToolResult:
        """One call as a proposal; `arguments` are exactly what LIVE would forward."""
        forward = arguments
        self.calls += 1
        action_id = f"call-{self.base}.{self.calls}"
        try:
            # Identical calls (agent, tool, arguments) share a plan id, so they share the
            # action hash: "denied earlier" and the journal's at-most-once apply to them.
            digest = canonical_action_hash(self.agent, tool.contract.name, forward, "mcp", ExecutionMode.LIVE)
            action = PlannedAction(
                id=action_id, agent=self.agent, tool=tool.contract.name, args=forward, confidence=confidence
            )
            plan = ToolExecutionPlan(
                plan_id=f"mcp-{digest[:16]}", description=f"MCP call of {tool.exposed}", actions=(action,)
            )
        except (ValueError, NotCanonical) as exc:
            return refused(f"{tool.exposed}: arguments refused: {str(exc).splitlines()[-1].strip()}")
        if tool.contract.read_only:
            return await self._read_only(tool, plan, action_id)
        try:
            result = await self.harness.run_proposal(plan)
        except (OSError, JournalError) as exc:
            return _storage_refusal(exc)
        return self._response(tool, plan, action_id, result)

    def _response(
        self, tool: GatewayTool, plan: ToolExecutionPlan, action_id: str, result: OrchestrationResult
    ) -> types.CallToolResult:
        outputs = self.mailbox.take(plan.plan_id, action_id)
        threshold = live_threshold(tool.contract.risk_level, self.harness.config.confidence_threshold_for_live)
        return response(result.tool_results[0], outputs, tool.exposed, threshold)

    async def _read_only(self, tool: GatewayTool, plan: ToolExecutionPlan, action_id: str) -> types.CallToolResult:
        """A read-only call is answered as soon as upstream's answer is in: what the core does
        after its LIVE step (the step's events, COMPLETED, the plan's result line) cannot change
        that answer, and goes on in the background. Any other ending (held at MOCK or DRY_RUN,
        refused, failed, an answer over the size limit) is answered once the core has decided."""
        answer = self.mailbox.expect(plan.plan_id, action_id)
        run = asyncio.ensure_future(self.harness.run_proposal(plan))
        run.add_done_callback(lambda _: _settle(answer))  # the run ended first: no early answer
        try:
            early = await answer
        except asyncio.CancelledError:
            # The agent's request was cancelled: so is the call's run, as when it ran in the
            # request's own task (an upstream call in flight is cancelled with it).
            run.cancel()
            self._in_background(run, plan.plan_id, action_id)
            raise
        if early is not None:
            self._in_background(run, plan.plan_id, action_id)
            return early
        try:
            result = run.result()
        except (OSError, JournalError) as exc:
            return _storage_refusal(exc)
        return self._response(tool, plan, action_id, result)

    def _in_background(self, run: asyncio.Future[OrchestrationResult], plan_id: str, action_id: str) -> None:
        self.background.add(run)

        def settled(done: asyncio.Future[OrchestrationResult]) -> None:
            self.background.discard(done)
            self.mailbox.take(plan_id, action_id)
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                # A storage failure has already failed the gate closed (every later call is
                # refused, and the exit code says so); anything else is a defect: on stderr.
                log(f"call {action_id}: its run ended with {type(exc).__name__}: {exc}")

        run.add_done_callback(settled)

    async def drain(self) -> None:
        """Wait for the runs still finishing after their answers (before the session ends)."""
        while self.background:
            await asyncio.gather(*self.background, return_exceptions=True)


def _settle(answer: asyncio.Future[types.CallToolResult | None]) -> None:
    if not answer.done():
        answer.set_result(None)


def _storage_refusal(exc: BaseException) -> types.CallToolResult:
    log(f"storage failure, failing closed: {exc}")
    return refused(f"the gateway could not write its journal and has locked ({exc}); nothing was sent")


_ROUTINE: frozenset[type[Event]] = frozenset(
    {PlanStarted, StateTransition, ToolExecuted, SignalEmitted, HealthUpdated, PlanFinished}
)
"""The events of a call that was allowed and ran without an intent (a read-only call, or one
held at MOCK / DRY_RUN): nothing in them needs an fsync of its own."""


class GatewayHarness(Phase24Harness):
    """The harness, for a stream of one-call proposals (two costs of a plan run, per call):

    - Health is published at most every `health_min_interval_s` while the session is open
      (as the gate service does), not after every one-action "plan"; the final one always.
    - The barrier before a LIVE step without an intent (a read-only tool: no effect to
      protect) does not wait for a commit when nothing since the last commit but routine
      events (`_ROUTINE`) was published: those records are committed, without an fsync,
      within `read_only_commit_delay_s` (one commit for every read-only call in that
      window, off the calls' path). Anything else (an intent, an outcome, an approval
      decided, a lock, a denial...) makes the barrier a durable commit as before, of every
      record published so far, before the LIVE step starts. So an effectful call never
      starts before its intent and everything before it are fsynced; a process crash can
      lose the records of the read-only calls of the last `read_only_commit_delay_s`, and a
      power loss those since the last fsynced commit; never an intent or an outcome.
    """

    read_only_commit_delay_s = 0.05
    """At most this long between a read-only call's LIVE step and the commit of its records."""

    _serving = False
    _sync_next = True
    _in_flight = 0
    _deferred: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A call alone in the gateway commits at its barrier at once: nobody else could
        # share that commit (with several calls in flight they still share one).
        self.group = GroupCommit(self._commit_durably, alone=lambda: self._in_flight <= 1)
        #: Barriers passed without waiting for a commit (routine records only).
        self.deferred_barriers = 0

    async def run_proposal(self, plan: ToolExecutionPlan) -> OrchestrationResult:
        self._in_flight += 1
        try:
            return await super().run_proposal(plan)
        finally:
            self._in_flight -= 1

    def _streaming(self) -> bool:
        return self._serving  # one-action "plans", one per call, while the session is open

    def _open_durable_state(self) -> None:
        super()._open_durable_state()
        journal = self.journal
        if journal is None:
            return

        def watch(event: Event) -> None:
            if type(event) not in _ROUTINE:
                self._sync_next = True

        self.bus.subscribe(watch)
        self.bus.replace_barrier(self.group.barrier, self._barrier)

    async def _barrier(self) -> None:
        """The bus's durability barrier: the group commit, unless only routine records came
        since the last commit (then their commit is only made sure of, within the delay)."""
        if self._sync_next or not self._journal_live:
            await self.group.barrier()
            return
        self.deferred_barriers += 1
        if self._deferred is None:
            self._deferred = asyncio.get_running_loop().call_later(self.read_only_commit_delay_s, self._deferred_due)

    def _deferred_due(self) -> None:
        self._deferred = None
        if self._journal_live:
            self.group.schedule()  # a few turns of the loop from now, shared with any barrier then

    def _commit_durably(self) -> None:
        """The group commit every barrier awaits: fsynced unless only routine events of
        read-only calls came since the last one (then committed, and synced by the next)."""
        durable, self._sync_next = self._sync_next, False
        journal = self.journal
        if durable or journal is None or not self._journal_live:
            super()._commit_durably()
            return
        try:
            if self.writer is not None:
                self.writer.flush()
            journal.commit(durable=False)
        except (OSError, Phase24Error) as exc:
            self._commit_failed(exc)
            raise

    async def _open_run(self) -> Any:
        opened = await super()._open_run()
        self._serving = True
        return opened

    def _finish_run(self, start: Any, follower: Any, interrupted: bool) -> None:
        self._serving = False
        if self._deferred is not None:
            self._deferred.cancel()  # the journal's close commits (and fsyncs) what is left
            self._deferred = None
        self._emit_signals()  # the final analysis, whenever the last one was
        super()._finish_run(start, follower, interrupted)


def make_harness(opts: GatewayOptions, registry: ToolContractRegistry, gate: ApprovalGate) -> Phase24Harness:
    """A new run in OUT, or the gateway's earlier run there continued (its PENDING intents
    become UNKNOWN and are never re-sent)."""
    if (opts.out / RUN_RECORD).exists():
        harness = GatewayHarness.from_interrupted_run(opts.out, gate=gate, registry=registry)
    else:
        if any(p.name != RUN_DIR_LOCK for p in opts.out.iterdir()):
            raise ConfigError(f"--out {opts.out}: not empty and not a gateway run (no {RUN_RECORD})")
        config = Phase24ExecutionConfig(
            output_dir=opts.out,
            state_dir=opts.state_dir,
            retry_delay_range_s=(0.0, 0.0),
            durable_journal=opts.durable_journal,
        )
        harness = GatewayHarness(config, gate=gate, registry=registry)
    # An MCP call is never retried by the gateway: a timeout ends it (the agent may call again).
    harness.conflict_resolver.max_timeout_retries = 0
    return harness
