"""Each upstream tool as the gateway exposes it: its contract, and its binding per mode.

MOCK answers a clearly marked mock result; DRY_RUN answers what would be sent (upstream,
tool, exact arguments); neither calls upstream. LIVE forwards exactly the arguments of the
action as approved (`call.args`) and keeps upstream's answer for the agent. What each step
produced is left in the `Mailbox` under the call's plan and action, where the server picks
it up after the core has decided (a read-only call's upstream answer: as soon as it is in).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from core.bindings import EffectNotApplied, ExecutionOutcome, ToolBinding, ToolCall
from core.contracts import ToolContract
from core.errors import ConfigError
from core.mcp_contracts import (
    CONFIDENCE_ARG,
    Annotations,
    ToolOverride,
    attached_judgement,
    contract_for,
    contract_name,
    judge,
    with_confidence_arg,
)
from gateway.upstream import Upstream, UpstreamDown


@dataclass(frozen=True)
class GatewayTool:
    exposed: str  # the name the client sees (prefix + upstream's name)
    upstream: Upstream
    tool: types.Tool  # as upstream listed it
    contract: ToolContract
    confidence: float
    judged_by: str

    def listed(self) -> types.Tool:
        """The tool as the gateway lists it: upstream's, renamed, with the confidence argument,
        and its description saying how the gate judges it (so an agent knows what to expect)."""
        c = self.contract
        gate = f"[Phase 24 gate: {c.risk_level.value} risk, {'reversible' if c.reversible else 'irreversible'}"
        gate += "; LIVE needs an operator's approval]" if c.requires_approval else "]"
        description = f"{self.tool.description} {gate}" if self.tool.description else gate
        return self.tool.model_copy(
            update={
                "name": self.exposed,
                "input_schema": with_confidence_arg(self.tool.input_schema),
                "description": description,
            }
        )

    def record(self) -> dict[str, Any]:
        c = self.contract
        return {
            "exposed": self.exposed,
            "upstream": self.upstream.spec.name,
            "upstream_tool": self.tool.name,
            "contract": c.name,
            "risk": c.risk_level.value,
            "reversible": c.reversible,
            "read_only": c.read_only,
            "requires_approval": c.requires_approval,
            "timeout_s": c.timeout_seconds,
            "confidence": self.confidence,
            "judged_by": self.judged_by,
        }


def annotations_of(tool: types.Tool) -> Annotations | None:
    a = tool.annotations
    if a is None:
        return None
    return Annotations(
        read_only=a.read_only_hint,
        destructive=a.destructive_hint,
        idempotent=a.idempotent_hint,
        open_world=a.open_world_hint,
    )


def gateway_tools(upstreams: list[Upstream], *, attached: bool = False) -> list[GatewayTool]:
    """Every upstream tool with its exposed name and contract; duplicate exposed names are refused.

    `attached`: the contracts declared to a gate service (an override may only tighten them)."""
    tools: list[GatewayTool] = []
    exposed: set[str] = set()
    taken: set[str] = set()
    for upstream in upstreams:
        spec = upstream.spec
        unknown = set(spec.tools) - {t.name for t in upstream.tools}
        if unknown:
            raise ConfigError(f"upstreams.{spec.name}.tools.{sorted(unknown)[0]}: upstream has no such tool")
        for tool in upstream.tools:
            name = spec.prefix + tool.name
            if CONFIDENCE_ARG in (tool.input_schema.get("properties") or {}):
                raise ConfigError(
                    f"upstream {spec.name!r}: tool {tool.name!r} has its own argument {CONFIDENCE_ARG!r}, "
                    "which the gateway adds and strips; it cannot be proxied"
                )
            if name in exposed:
                raise ConfigError(f"tool name {name!r} is exposed twice: give the upstreams distinct prefixes")
            exposed.add(name)
            override = spec.tools.get(tool.name, ToolOverride())
            cname = contract_name(name, taken)
            taken.add(cname)
            annotations = annotations_of(tool)
            contract = contract_for(
                cname,
                f"MCP tool {tool.name!r} of upstream {spec.name!r}",
                annotations,
                override,
                timeout_s=spec.timeout_s,
                attached=attached,
            )
            if contract.compensable:
                raise ConfigError(
                    f"upstreams.{spec.name}.tools.{tool.name}: reversible = true needs an undo, and the gateway "
                    "cannot undo an upstream call (set read_only = true, or leave it irreversible)"
                )
            confidence = override.confidence if override.confidence is not None else spec.confidence
            judged = attached_judgement(annotations, override) if attached else judge(annotations, override)
            tools.append(GatewayTool(name, upstream, tool, contract, confidence, judged.source))
    return tools


class Mailbox:
    """What each mode's step produced, per (plan, action), until the server collects it.

    `expect` registers a future for a call's upstream answer: it is resolved with the
    `CallToolResult` as soon as the LIVE step has it (not for an answer over the size limit),
    so the server can answer a read-only call before the core's bookkeeping after it. Where
    the server's stdout reports its flushes (`flushed`, gateway/stdio.py), the LIVE step of
    such a call then waits (`answer_sent`, at most ANSWER_WAIT_S) until the next flush, so
    that the answer is written before the bookkeeping runs, not after it."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._answers: dict[tuple[str, str], asyncio.Future[types.CallToolResult | None]] = {}
        self._held: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._lock = threading.Lock()
        self.flushes_reported = False

    def expect(self, plan_id: str, action_id: str) -> asyncio.Future[types.CallToolResult | None]:
        future: asyncio.Future[types.CallToolResult | None] = asyncio.get_running_loop().create_future()
        self._answers[(plan_id, action_id)] = future
        return future

    def put(self, call: ToolCall, mode: str, value: Any) -> None:
        key = (call.plan_id, call.action.id)
        with self._lock:
            self._items.setdefault(key, {})[mode] = value
        if mode == "LIVE" and type(value) is types.CallToolResult:
            future = self._answers.pop(key, None)
            if future is not None and not future.done():
                future.set_result(value)
                if self.flushes_reported:
                    self._held[key] = future.get_loop().create_future()

    async def answer_sent(self, call: ToolCall) -> None:
        """After `put`: wait until the server's next flush (the answer written), if the answer
        went to a waiting server and flushes are reported; at most ANSWER_WAIT_S."""
        held = self._held.get((call.plan_id, call.action.id))
        if held is not None:
            timer = held.get_loop().call_later(ANSWER_WAIT_S, _release, held)
            try:
                await held
            except asyncio.CancelledError:
                # The answer is already the agent's: the step's timeout (or a cancel) landing
                # in this short wait must not record the call as timed out or failed. The
                # step ends as it would have a moment later (the cancel is absorbed here).
                pass
            finally:
                timer.cancel()
                self._held.pop((call.plan_id, call.action.id), None)

    def flushed(self) -> None:
        """The server's stdout has written what it had: every held step goes on."""
        self.flushes_reported = True
        for held in self._held.values():
            _release(held)

    def take(self, plan_id: str, action_id: str) -> dict[str, Any]:
        self._answers.pop((plan_id, action_id), None)
        with self._lock:
            return self._items.pop((plan_id, action_id), {})


def _release(held: asyncio.Future[None]) -> None:
    if not held.done():
        held.set_result(None)


ANSWER_WAIT_S = 0.01
"""The longest a read-only call's LIVE step waits, once it has upstream's answer, for the
server to write that answer before the core's bookkeeping goes on (it is usually well under a
millisecond; a later write only means the bookkeeping ran first). The wait is inside the
step's timeout, but a timeout that lands in it is absorbed: the answer has reached the agent,
so the call is recorded as answered, never as timed out."""


@dataclass(frozen=True)
class TooLarge:
    size: int
    limit: int


def _size_bound(result: types.CallToolResult) -> int | None:
    """An upper bound on the size of the result's JSON when it is text content only (a
    character takes at most 6 bytes in JSON: an escape like \\u001f), else None."""
    if result.structured_content is not None or result.meta is not None:
        return None
    bound = 128
    for item in result.content:
        if type(item) is not types.TextContent or item.annotations is not None or item.meta is not None:
            return None
        bound += 64 + 6 * len(item.text)
    return bound


class _Step:
    def __init__(self, tool: GatewayTool, mailbox: Mailbox, max_result_bytes: int, mode: str) -> None:
        self.tool = tool
        self.mailbox = mailbox
        self.max_result_bytes = max_result_bytes
        self.mode = mode
        # MOCK never waits; DRY_RUN waits at most timeout/2 for an upstream being started
        # again: the guard needs no timer of its own for them (core/guard.py).
        self.bounded = mode != "LIVE"

    def _would_send(self, call: ToolCall) -> dict[str, Any]:
        return {"upstream": self.tool.upstream.spec.name, "tool": self.tool.tool.name, "arguments": call.args}

    async def __call__(self, call: ToolCall) -> ExecutionOutcome:
        if self.mode == "DRY_RUN":
            # Upstream must be there (started again if it went down) before a LIVE intent is
            # recorded for a call that could not be sent. No tool is called.
            try:
                if self.tool.upstream.session is None:
                    await self.tool.upstream.connected(self.tool.contract.timeout_seconds / 2)
            except UpstreamDown as exc:
                raise EffectNotApplied(f"upstream unavailable: {exc}") from None
        if self.mode != "LIVE":
            output = {"phase24_mode": self.mode, "not_sent": True, "would_send": self._would_send(call)}
            self.mailbox.put(call, self.mode, output)
            return ExecutionOutcome(success=True, duration_ms=0.0, output=output, simulated=False)
        try:
            # No read timeout of the SDK's as well: the guard times this step at the
            # contract's timeout (core/guard.py), which is the same limit.
            result = await self.tool.upstream.call(self.tool.tool.name, call.args, None)
        except UpstreamDown as exc:
            raise EffectNotApplied(f"not sent: {exc}") from None
        # The SDK encodes the answer for the client anyway: it is encoded here only when a
        # cheap bound cannot show it is within the limit.
        bound = _size_bound(result)
        if bound is not None and bound <= self.max_result_bytes:
            self.mailbox.put(call, "LIVE", result)
            live: dict[str, Any] = {"upstream_is_error": bool(result.is_error), "result_bytes_at_most": bound}
            await self.mailbox.answer_sent(call)
        else:
            size = len(result.model_dump_json(by_alias=True, exclude_none=True))
            self.mailbox.put(
                call, "LIVE", result if size <= self.max_result_bytes else TooLarge(size, self.max_result_bytes)
            )
            live = {"upstream_is_error": bool(result.is_error), "result_bytes": size}
            await self.mailbox.answer_sent(call)
        return ExecutionOutcome(success=True, duration_ms=0.0, output=live, simulated=False)


def binding_for(tool: GatewayTool, mailbox: Mailbox, max_result_bytes: int) -> ToolBinding:
    return ToolBinding(
        tool=tool.contract.name,
        mock=_Step(tool, mailbox, max_result_bytes, "MOCK"),
        dry_run=_Step(tool, mailbox, max_result_bytes, "DRY_RUN"),
        live=_Step(tool, mailbox, max_result_bytes, "LIVE"),
        compensate=None,
        simulated=False,
        backend=f"mcp:{tool.upstream.spec.name}",
    )
