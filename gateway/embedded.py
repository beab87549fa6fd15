"""The embedded gate (the gateway's default): the whole core in the gateway's own process.

Each call becomes a one-action plan run by `Phase24Harness.run_proposal`, the same pipeline
as a plan file's: MOCK -> DRY_RUN -> LIVE by risk and confidence, conflicts, approvals
(headless policy: deny by default, `--approve-all` for demos), the system-wide lock, the
journal (the intent is durable before upstream is called) and the output files.
"""

from __future__ import annotations

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
        try:
            result = await self.harness.run_proposal(plan)
        except (OSError, JournalError) as exc:
            log(f"storage failure, failing closed: {exc}")
            return refused(f"the gateway could not write its journal and has locked ({exc}); nothing was sent")
        outputs = self.mailbox.take(plan.plan_id, action_id)
        threshold = live_threshold(tool.contract.risk_level, self.harness.config.confidence_threshold_for_live)
        return response(result.tool_results[0], outputs, tool.exposed, threshold)


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
      protect) commits the journal without an fsync when nothing since the last barrier but
      the call's routine events was published; anything else (an approval decided, a lock, a
      denial...) makes it a durable commit as before. Intents and outcomes are fsynced with
      their own records regardless (the journal does that), and the next durable commit
      syncs the read-only calls' records too: a power loss can lose at most the record of
      the latest read-only calls, never an intent; a process crash loses nothing.
    """

    _serving = False
    _health_cache: dict[str, Any] | None = None
    _health_at = float("-inf")
    _sync_next = True
    _in_flight = 0
    _signals_at = float("-inf")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A call alone in the gateway commits at its barrier at once: nobody else could
        # share that commit (with several calls in flight they still share one).
        self.group = GroupCommit(self._commit_durably, alone=lambda: self._in_flight <= 1)

    async def run_proposal(self, plan: ToolExecutionPlan) -> OrchestrationResult:
        self._in_flight += 1
        try:
            return await super().run_proposal(plan)
        finally:
            self._in_flight -= 1

    def _emit_health(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        cached = self._health_cache
        if self._serving and cached is not None and now - self._health_at < self.config.health_min_interval_s:
            return cached
        self._health_at = now
        self._health_cache = super()._emit_health()
        return self._health_cache

    def _emit_signals(self) -> None:
        # The learning loop's analysis, like health, at most every health_min_interval_s
        # while serving (it looks at every tool and mode: tens of microseconds a call).
        now = self.clock.monotonic()
        if self._serving and now - self._signals_at < self.config.health_min_interval_s:
            return
        self._signals_at = now
        super()._emit_signals()

    def _open_durable_state(self) -> None:
        super()._open_durable_state()
        journal = self.journal
        if journal is None:
            return

        def watch(event: Event) -> None:
            if type(event) not in _ROUTINE:
                self._sync_next = True

        self.bus.subscribe(watch)

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
