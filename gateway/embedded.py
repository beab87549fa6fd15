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
from core.errors import ConfigError, JournalError
from core.harness import RUN_RECORD, Phase24ExecutionConfig, Phase24Harness
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


def make_harness(opts: GatewayOptions, registry: ToolContractRegistry, gate: ApprovalGate) -> Phase24Harness:
    """A new run in OUT, or the gateway's earlier run there continued (its PENDING intents
    become UNKNOWN and are never re-sent)."""
    if (opts.out / RUN_RECORD).exists():
        harness = Phase24Harness.from_interrupted_run(opts.out, gate=gate, registry=registry)
    else:
        if any(p.name != RUN_DIR_LOCK for p in opts.out.iterdir()):
            raise ConfigError(f"--out {opts.out}: not empty and not a gateway run (no {RUN_RECORD})")
        config = Phase24ExecutionConfig(
            output_dir=opts.out,
            state_dir=opts.state_dir,
            retry_delay_range_s=(0.0, 0.0),
            durable_journal=opts.durable_journal,
        )
        harness = Phase24Harness(config, gate=gate, registry=registry)
    # An MCP call is never retried by the gateway: a timeout ends it (the agent may call again).
    harness.conflict_resolver.max_timeout_retries = 0
    return harness
