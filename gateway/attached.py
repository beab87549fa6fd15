"""The attached gate (`--attach URL --token-file F`): each call a proposal to a running `phase24 serve`.

The gateway is an agent of that service (an `agent` token bound to one agent name) and the
executor of its own tools. Per call: `POST /v1/proposals` (agent, the tool's contract name,
the arguments with the confidence argument taken out, the confidence, and the contract the
gateway declares for the tool: `core.mcp_contracts.attached_judgement`), then a long-poll
for the decision. MOCK / DRY_RUN: a marked "not sent" answer; nothing reaches upstream.
LIVE: the service hands out a single-use grant once the intent is durable in its journal;
the gateway calls upstream with exactly the grant's arguments (`grant_args`: the operator's
edited ones when edited) and reports the outcome (`POST /v1/grants/{id}/outcome`). Denied,
expired, locked: a tool error. An upstream call whose outcome the gateway does not know
(a timeout, a dropped connection) is not reported: the grant's lease runs out and the
service records UNKNOWN; nothing is ever sent twice. A report the service refuses (the lease
ran out first, the service restarted) ends the call with a tool error saying upstream acted.
"""

from __future__ import annotations

import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types

from core.errors import ConfigError
from gateway.responses import NO_RETRY, not_sent, tool_error
from gateway.tools import GatewayTool
from gateway.upstream import UpstreamDown
from phase24_sdk import Contract, Gate
from phase24_sdk.errors import GateConnectionError, GateHttpError

_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
PREVIEW_CHARS = 2000
"""How much of upstream's text answer goes into the reported outcome (the journal, the console)."""


@dataclass(frozen=True)
class AttachOptions:
    url: str
    token: str
    agent: str


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {path}: not a text file") from None
    if not token or len(token.split()) != 1:
        raise ConfigError(f"--token-file {path}: expected one token (from `phase24 token add --role agent NAME`)")
    return token


def attach_options(url: str, token_file: Path, agent: str) -> AttachOptions:
    if not re.match(r"^https?://[^\s/]+", url):
        raise ConfigError(f"--attach: expected the service's http:// URL, got {url!r}")
    if not _AGENT.match(agent):
        raise ConfigError(f"--agent: {agent!r} must be 1-128 letters, digits or _.:- (the agent token's name)")
    return AttachOptions(url.rstrip("/"), read_token(token_file), agent)


async def check_service(opts: AttachOptions, timeout_s: float = 10.0) -> None:
    """The service answers and the token is an agent token; a ConfigError (one line) otherwise."""
    headers = {"Authorization": f"Bearer {opts.token}"}
    try:
        async with httpx.AsyncClient(base_url=opts.url, timeout=timeout_s) as http:
            health = await http.get("/v1/health")
            state = await http.get("/v1/state", headers=headers)
    except httpx.HTTPError as exc:
        raise ConfigError(f"--attach {opts.url}: cannot reach the gate service: {type(exc).__name__}: {exc}") from None
    if health.status_code != 200:
        raise ConfigError(f"--attach {opts.url}: not a phase24 gate service (/v1/health answered {health.status_code})")
    if state.status_code == 401:
        raise ConfigError(f"--attach {opts.url}: the service refused the token (401): not one of its tokens")
    if state.status_code == 200:
        raise ConfigError(
            f"--attach {opts.url}: the token is an operator's or a viewer's; the gateway needs an agent token "
            f"(`phase24 token add --out DIR --role agent {opts.agent}`)"
        )
    if state.status_code != 403:
        raise ConfigError(f"--attach {opts.url}: unexpected answer {state.status_code} to the token check")


def _contract(tool: GatewayTool) -> Contract:
    c = tool.contract
    return Contract(c.risk_level.value, c.reversible, c.read_only, c.description)


def _preview(result: types.CallToolResult) -> str:
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    return text[:PREVIEW_CHARS]


class ServiceGate:
    """Proposals to a gate service; the gateway runs the granted calls (a `ProposalGate`)."""

    def __init__(self, opts: AttachOptions, max_result_bytes: int, gate: Gate | None = None) -> None:
        self.opts = opts
        self.max_result_bytes = max_result_bytes
        self.gate = gate or Gate(opts.url, opts.token, agent=opts.agent)

    async def aclose(self) -> None:
        await self.gate.aclose()

    def _unreachable(self, tool: GatewayTool, what: str, exc: BaseException) -> types.CallToolResult:
        if isinstance(exc, GateHttpError):
            why = f"the gate service refused {what}: {exc}"
        else:
            why = f"cannot reach the gate service at {self.opts.url} ({what}): {type(exc).__name__}: {exc}"
        _log(f"{tool.exposed}: {why}")
        return tool_error(f"phase24 gateway: NOT sent to upstream: {why}.", {"service_error": why})

    async def propose(self, tool: GatewayTool, arguments: dict[str, Any], confidence: float) -> types.CallToolResult:
        name = tool.contract.name
        try:
            proposal_id = await self.gate.propose(
                name, arguments, confidence, action_id=f"mcp-{uuid.uuid4().hex}", contract=_contract(tool)
            )
        except (GateHttpError, GateConnectionError, httpx.HTTPError) as exc:
            return self._unreachable(tool, "the proposal", exc)
        try:
            status = await self.gate.wait(proposal_id)
        except (GateHttpError, GateConnectionError, httpx.HTTPError) as exc:
            return self._unreachable(tool, f"the decision of {proposal_id}", exc)
        details: dict[str, Any] = {
            "proposal_id": proposal_id,
            "state": status.get("state"),
            "mode": status.get("mode"),
            "decision": status.get("decision"),
            "reason": status.get("reason", ""),
            "confidence": confidence,
        }
        grant_id = status.get("grant_id")
        if grant_id is not None:
            return await self._run_grant(tool, str(grant_id), status, details)
        decision = str(status.get("decision"))
        reason = str(status.get("reason", ""))
        mode = status.get("mode")
        if decision in ("allowed", "approved") and mode in ("MOCK", "DRY_RUN"):
            would = {"upstream": tool.upstream.spec.name, "tool": tool.tool.name, "arguments": arguments}
            return not_sent(str(mode), f"{reason}.", would, details)
        return tool_error(f"phase24 gateway: NOT sent to upstream: {_denial(decision, reason)}", details)

    async def _run_grant(
        self, tool: GatewayTool, grant_id: str, status: dict[str, Any], details: dict[str, Any]
    ) -> types.CallToolResult:
        granted = status.get("grant_args")
        args: dict[str, Any] = granted if isinstance(granted, dict) else {}
        details["grant_id"] = grant_id
        try:
            result = await tool.upstream.call(tool.tool.name, args, tool.contract.timeout_seconds)
        except UpstreamDown as exc:
            await self._report(grant_id, False, None, f"not sent: {exc}")
            return tool_error(
                f"phase24 gateway: NOT sent: upstream unavailable: {exc}. Nothing reached upstream; the gateway "
                "starts it again, so the same call may succeed in a few seconds.",
                details,
            )
        except Exception as exc:  # it may have been sent: the outcome is unknown, never re-sent
            why = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            _log(f"{tool.exposed}: outcome UNKNOWN ({why}); not reported, the grant's lease makes it UNKNOWN")
            return tool_error(
                f"phase24 gateway: the outcome of this call is UNKNOWN ({why}). Upstream may have acted. The "
                "gate service records it UNKNOWN when the grant's lease runs out; it is not sent again; the "
                f"operator must check. {NO_RETRY}",
                details,
            )
        size = len(result.model_dump_json(by_alias=True, exclude_none=True))
        outcome = {"upstream_is_error": bool(result.is_error), "result_bytes": size, "text": _preview(result)}
        try:
            final = await self.gate.report(grant_id, True, outcome)
        except (GateHttpError, GateConnectionError, httpx.HTTPError) as exc:
            why = str(exc) if isinstance(exc, GateHttpError) else f"{type(exc).__name__}: {exc}"
            _log(f"{tool.exposed}: upstream acted, but its outcome could not be reported: {why}")
            return tool_error(
                f"phase24 gateway: {tool.exposed} DID run upstream, but the gate service did not take its "
                f"outcome ({why}); the service shows it UNKNOWN. The gateway will not send it again. {NO_RETRY}",
                {**details, "report_error": why},
            )
        details.update(decision=final.get("decision"), state=final.get("state"))
        if size > self.max_result_bytes:
            return tool_error(
                f"phase24 gateway: {tool.exposed} DID run upstream, but its answer ({size} bytes) is over the "
                f"gateway's limit ({self.max_result_bytes} bytes) and was withheld. {NO_RETRY}",
                {**details, "result_bytes": size},
            )
        return result

    async def _report(self, grant_id: str, ok: bool, result: dict[str, Any] | None, error: str | None) -> None:
        try:
            await self.gate.report(grant_id, ok, result, error)
        except (GateHttpError, GateConnectionError, httpx.HTTPError) as exc:
            _log(f"grant {grant_id}: the outcome could not be reported: {exc}")


def _denial(decision: str, reason: str) -> str:
    if decision == "expired":
        return f"the approval request EXPIRED (no answer in time): {reason}. {NO_RETRY}"
    if decision == "locked":
        return (
            f"the system is LOCKED by the operator (everything stays at MOCK): {reason}. "
            f"{NO_RETRY} Wait for the operator to unlock."
        )
    if reason.startswith("denied earlier"):
        return f"an identical call was denied earlier in this run, so it was refused without asking again. {NO_RETRY}"
    if "agent stopped" in reason:
        return f"the operator denied this call and stopped this agent: {reason}. {NO_RETRY}"
    if decision == "denied":
        return f"the approval was denied: {reason}. {NO_RETRY}"
    if decision == "unknown":
        return f"the outcome is UNKNOWN: {reason}. The operator must check. {NO_RETRY}"
    return f"the call did not complete ({decision}): {reason}"


def _log(text: str) -> None:
    print(f"phase24 mcp-gateway: {text}", file=sys.stderr, flush=True)
