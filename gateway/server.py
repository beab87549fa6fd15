"""The gateway: an MCP server on stdio that re-exposes upstream tools, each call a proposal.

The MCP side (`GatewayServer`: list the tools, take a call, strip the confidence argument)
talks to a `ProposalGate`. The default is the embedded gate (gateway/embedded.py: the
core in this process); `--attach URL --token-file F` joins a running `phase24 serve`
instead (gateway/attached.py: the gateway is one of its agents, and the executor of its
granted calls). Stdout is the protocol channel: every log line goes to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from opentelemetry import trace

from console.storage_failure import report_storage_failure
from core.approval import PolicyGate
from core.contracts import ToolContractRegistry
from core.errors import JournalError, Phase24Error
from core.gc_policy import run_gc_policy
from core.harness import Phase24Harness
from core.mcp_contracts import split_confidence
from core.outputs import write_text_atomic
from core.run_dir_lock import RunDirLock
from gateway.attached import AttachOptions, ServiceGate, check_service
from gateway.config import GatewayConfig
from gateway.embedded import EmbeddedGate, GatewayOptions, log, make_harness
from gateway.responses import refused
from gateway.stdio import gateway_stdio
from gateway.tools import GatewayTool, Mailbox, binding_for, gateway_tools
from gateway.upstream import Upstream

GATEWAY_RECORD = "gateway.json"


ListTools = Callable[[Any, types.PaginatedRequestParams | None], Awaitable[types.ListToolsResult]]
CallTool = Callable[[Any, types.CallToolRequestParams], Awaitable[types.CallToolResult]]


class ProposalGate(Protocol):
    """Where a call is judged, and (LIVE) forwarded: the embedded gate, or later a service."""

    async def propose(
        self, tool: GatewayTool, arguments: dict[str, Any], confidence: float
    ) -> types.CallToolResult: ...


class GatewayServer:
    """The MCP handlers: the exposed tools, and each call handed to the gate."""

    def __init__(self, tools: list[GatewayTool], gate: ProposalGate) -> None:
        self.tools = {t.exposed: t for t in tools}
        self.listed = [t.listed() for t in tools]
        self.gate = gate

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
        return await self.gate.propose(tool, forward, confidence)


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


def mcp_server(name: str, on_list_tools: ListTools, on_call_tool: CallTool) -> Server[Any]:
    """The SDK's low-level server with the gateway's settings: its default middleware (the
    SDK's OpenTelemetry span around every request, a no-op without a tracer provider) is
    dropped, as the SDK allows, unless an OpenTelemetry tracer provider is configured."""
    server: Server[Any] = Server(name, on_list_tools=on_list_tools, on_call_tool=on_call_tool)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        server.middleware.clear()
    return server


def _server(gateway: GatewayServer) -> Server[Any]:
    return mcp_server("phase24-mcp-gateway", gateway.list_tools, gateway.call_tool)


async def _serve_session(harness: Phase24Harness, gate: EmbeddedGate, server: Server[Any], out: Path) -> None:
    async with harness.proposal_session():
        if harness.unknown_outcomes:  # known once the session is open (the journal read)
            log(
                f"{len(harness.unknown_outcomes)} earlier LIVE call(s) have an UNKNOWN outcome (the "
                f"gateway stopped during them); never sent again: check upstream. See {out}"
            )
        try:
            async with gateway_stdio(on_flush=gate.mailbox.flushed) as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
        finally:
            # Read-only calls already answered finish their bookkeeping inside the session.
            with anyio.CancelScope(shield=True):
                await gate.drain()


async def serve_attached(cfg: GatewayConfig, attach: AttachOptions) -> int:
    """Run the gateway as an agent of a gate service until the client closes stdin (0), or 2 on
    bad setup (the service unreachable, a refused token, an upstream that does not start)."""
    try:
        await check_service(attach)
    except Phase24Error as exc:
        log(str(exc))
        return 2
    async with anyio.create_task_group() as tg:
        upstreams = [Upstream(spec) for spec in cfg.upstreams]
        try:
            for upstream in upstreams:
                await upstream.start(tg)
            tools = gateway_tools(upstreams, attached=True)
        except Phase24Error as exc:
            log(str(exc))
            tg.cancel_scope.cancel()
            return 2
        log(f"{len(tools)} tools from {len(upstreams)} upstream(s); attached to {attach.url} as agent {attach.agent!r}")
        gate = ServiceGate(attach, cfg.max_result_bytes)
        server = _server(GatewayServer(tools, gate))
        try:
            async with gateway_stdio() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
        finally:
            await gate.aclose()
            for upstream in upstreams:
                upstream.close()
    return 0


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
                gate = PolicyGate(approve_all=opts.approve_all)
                harness = make_harness(opts, registry, gate)
                mailbox = Mailbox()
                for tool in tools:
                    harness.executors.bind(tool.contract.name, binding_for(tool, mailbox, cfg.max_result_bytes))
            except Phase24Error as exc:
                log(str(exc))
                tg.cancel_scope.cancel()
                return 2
            write_text_atomic(opts.out / GATEWAY_RECORD, _record(cfg, opts, tools))
            if opts.approve_all:
                log("--approve-all: every approval is granted (demos only)")
            log(f"{len(tools)} tools from {len(upstreams)} upstream(s); journal and outputs in {opts.out}")
            embedded = EmbeddedGate(harness, mailbox, cfg.agent)
            server = _server(GatewayServer(tools, embedded))
            failure: BaseException | None = None
            try:
                # As a plan run does: what exists at start (the SDK, pydantic's schemas) is
                # frozen out of the collector's traversals, young collections are rarer.
                with run_gc_policy():
                    await _serve_session(harness, embedded, server, opts.out)
            except (OSError, JournalError) as exc:
                failure = exc
            for upstream in upstreams:
                upstream.close()
            if failure is not None or harness.storage_error:
                # Never ends as if all were well: exit 4 and the report on stderr, like `phase24 run`.
                return report_storage_failure(harness, failure)
            summary = harness.summary
            status, calls = summary.get("status"), summary.get("plans_processed")
            log(f"run {summary.get('pipeline_id')} finished: {status}; {calls} calls")
    finally:
        dir_lock.release()
    return 0
