"""The gateway: an MCP server on stdio whose every tool call is a proposal to the embedded gate.

Each call becomes a one-action plan run by `Phase24Harness.run_proposal`, the same pipeline
as a plan file's: MOCK -> DRY_RUN -> LIVE by risk and confidence, conflicts, approvals, the
system-wide lock, the journal (the intent is durable before upstream is called) and the
output files. Stdout is the protocol channel: every log line goes to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from core.approval import ApprovalGate, PolicyGate, canonical_action_hash
from core.canonical import NotCanonical
from core.contracts import ExecutionMode, ToolContractRegistry
from core.controller import live_threshold
from core.errors import ConfigError, JournalError, Phase24Error
from core.harness import RUN_RECORD, Phase24ExecutionConfig, Phase24Harness
from core.mcp_contracts import split_confidence
from core.outputs import write_text_atomic
from core.plans import PlannedAction, ToolExecutionPlan
from core.run_dir_lock import RUN_DIR_LOCK, RunDirLock
from gateway.config import GatewayConfig
from gateway.responses import refused, response
from gateway.tools import GatewayTool, Mailbox, binding_for, gateway_tools
from gateway.upstream import Upstream

GATEWAY_RECORD = "gateway.json"


def log(text: str) -> None:
    print(f"phase24 mcp-gateway: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GatewayOptions:
    out: Path
    approve_all: bool = False
    approval_timeout_s: float = 120.0
    state_dir: Path | None = None
    durable_journal: bool = True


class Gateway:
    """The MCP handlers over one open harness session."""

    def __init__(self, harness: Phase24Harness, tools: list[GatewayTool], mailbox: Mailbox, agent: str) -> None:
        self.harness = harness
        self.tools = {t.exposed: t for t in tools}
        self.listed = [t.listed() for t in tools]
        self.mailbox = mailbox
        self.agent = agent
        self.calls = len(harness.prior.statuses) if harness.prior else 0

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.listed)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            return refused(f"unknown tool {params.name!r}")
        try:
            confidence, forward = split_confidence(dict(params.arguments or {}), tool.confidence)
        except ValueError as exc:
            return refused(f"{tool.exposed}: {exc}")
        self.calls += 1
        action_id = f"call-{self.calls}"
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


def _harness(opts: GatewayOptions, registry: ToolContractRegistry, gate: ApprovalGate) -> Phase24Harness:
    """A new run in OUT, or the gateway's earlier run there continued (its PENDING intents
    become UNKNOWN and are never re-sent)."""
    if (opts.out / RUN_RECORD).exists():
        harness = Phase24Harness.from_interrupted_run(opts.out, gate=gate, registry=registry)
    else:
        if any(p.name != RUN_DIR_LOCK for p in opts.out.iterdir()):
            raise ConfigError(f"--out {opts.out}: not empty and not a gateway run (no {RUN_RECORD})")
        config = Phase24ExecutionConfig(
            output_dir=opts.out,
            approval_timeout_s=opts.approval_timeout_s,
            state_dir=opts.state_dir,
            retry_delay_range_s=(0.0, 0.0),
            durable_journal=opts.durable_journal,
        )
        harness = Phase24Harness(config, gate=gate, registry=registry)
    # An MCP call is never retried by the gateway: a timeout ends it (the agent may call again).
    harness.conflict_resolver.max_timeout_retries = 0
    return harness


def _record(cfg: GatewayConfig, opts: GatewayOptions, tools: list[GatewayTool]) -> str:
    return json.dumps(
        {
            "agent": cfg.agent,
            "approve_all": opts.approve_all,
            "upstreams": [{"name": u.name, "where": u.where, "prefix": u.prefix} for u in cfg.upstreams],
            "tools": [t.record() for t in tools],
        },
        indent=2,
        ensure_ascii=False,
    )


async def serve(cfg: GatewayConfig, opts: GatewayOptions) -> int:
    """Run the gateway until the client closes stdin. 0 when it ended normally, 2 on bad setup."""
    opts.out.mkdir(parents=True, exist_ok=True)
    dir_lock = RunDirLock.acquire(opts.out)
    try:
        async with anyio.create_task_group() as tg:
            upstreams = [Upstream(spec) for spec in cfg.upstreams]
            try:
                for upstream in upstreams:
                    await upstream.start(tg)
                tools = gateway_tools(upstreams)
                registry = ToolContractRegistry(t.contract for t in tools)
                gate: ApprovalGate = PolicyGate(approve_all=opts.approve_all)
                harness = _harness(opts, registry, gate)
                mailbox = Mailbox()
                for tool in tools:
                    harness.executors.bind(tool.contract.name, binding_for(tool, mailbox, cfg.max_result_bytes))
            except (Phase24Error, TimeoutError) as exc:
                log(str(exc) or "an upstream did not start in time")
                tg.cancel_scope.cancel()
                return 2
            write_text_atomic(opts.out / GATEWAY_RECORD, _record(cfg, opts, tools))
            if opts.approve_all:
                log("--approve-all: every approval is granted (demos only)")
            if harness.unknown_outcomes:
                log(
                    f"{len(harness.unknown_outcomes)} earlier LIVE call(s) have an UNKNOWN outcome "
                    f"(the gateway stopped during them); never re-sent: check upstream. See {opts.out}"
                )
            log(f"{len(tools)} tools from {len(upstreams)} upstream(s); journal and outputs in {opts.out}")
            gateway = Gateway(harness, tools, mailbox, cfg.agent)
            server: Server[Any] = Server(
                "phase24-mcp-gateway", on_list_tools=gateway.list_tools, on_call_tool=gateway.call_tool
            )
            async with harness.proposal_session():
                async with stdio_server() as (read_stream, write_stream):
                    await server.run(read_stream, write_stream, server.create_initialization_options())
            summary = harness.summary
            status, calls = summary.get("status"), summary.get("plans_processed")
            log(f"run {summary.get('pipeline_id')} finished: {status}; {calls} calls")
            for upstream in upstreams:
                upstream.close()
    finally:
        dir_lock.release()
    return 0
