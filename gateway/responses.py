"""What the agent gets back for a call, from what the core decided and what each step produced.

- LIVE done: upstream's own result, unchanged (an answer over the size limit is withheld,
  with an error saying the call did run).
- MOCK or DRY_RUN only: a result marked `[phase24 MOCK]` / `[phase24 DRY_RUN]` saying the call
  was NOT sent, and (DRY_RUN) exactly what would be sent.
- Denied, EXPIRED, denied earlier, the lock, a duplicate, a failure or an UNKNOWN outcome:
  a tool error (`isError: true`) saying what happened and whether retrying can help.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from gateway.tools import TooLarge

NO_RETRY = "Retrying this call unchanged will not help."


def _error(text: str, details: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content={"phase24": details}, is_error=True
    )


def tool_error(text: str, details: dict[str, Any]) -> types.CallToolResult:
    """A tool error (`isError: true`) with the gate's details under `structuredContent.phase24`."""
    return _error(text, details)


def not_sent(mode: str, text: str, would: dict[str, Any], details: dict[str, Any]) -> types.CallToolResult:
    """A MOCK or DRY_RUN answer: a normal result marked `[phase24 MODE] NOT SENT`, and (DRY_RUN)
    exactly what would be sent."""
    text = text.strip()
    if mode == "DRY_RUN":
        text += f" Would send: {json.dumps(would, ensure_ascii=False, sort_keys=True)}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"[phase24 {mode}] NOT SENT to upstream: {text}")],
        structured_content={
            "phase24": {**details, "not_sent": True, **({"would_send": would} if mode == "DRY_RUN" else {})}
        },
        is_error=False,
    )


def refused(text: str) -> types.CallToolResult:
    """A call the gateway refused before it reached the core (unknown tool, bad arguments)."""
    return _error(f"phase24 gateway: {text}", {"refused": text})


def _denial(approval: dict[str, Any] | None, reason: str) -> str:
    outcome = (approval or {}).get("outcome", "")
    by = (approval or {}).get("decided_by", "")
    if "duplicate irreversible action" in reason:
        return (
            "an identical irreversible call is already running or has run in this gateway run "
            f"(the journal holds its intent), and the gateway never repeats an irreversible effect. {NO_RETRY}"
        )
    if approval is not None and approval.get("approved"):
        return f"{reason}. {NO_RETRY}"  # approved, then held (the lock, a changed action)
    if outcome == "EXPIRED":
        return f"the approval request EXPIRED (no answer in time): {reason}. {NO_RETRY}"
    if outcome == "DENIED_EARLIER":
        return f"an identical call was denied earlier in this run, so it was refused without asking again. {NO_RETRY}"
    if outcome == "DENIED_AND_STOPPED":
        return f"the operator denied this call and stopped this agent: {reason}. {NO_RETRY}"
    if by == "lock" or reason.startswith("system locked") or "system locked" in reason:
        return (
            f"the system is LOCKED by the operator (everything stays at MOCK): {reason}. "
            f"{NO_RETRY} Wait for the operator to unlock."
        )
    if approval is not None:
        return f"the approval was denied ({by}): {reason}. {NO_RETRY}"
    return f"{reason}. {NO_RETRY}"


def response(
    tool_result: dict[str, Any], outputs: dict[str, Any], exposed: str, threshold: float
) -> types.CallToolResult:
    """The agent's answer; `tool_result` is the action's entry in the plan's result."""
    state = tool_result["final_state"]
    mode = tool_result["mode"]
    reason = str(tool_result.get("reason", ""))
    approval = tool_result.get("approval")
    details = {
        "state": state,
        "mode": mode,
        "reason": reason,
        "confidence": tool_result.get("confidence"),
        **({"approval": approval} if approval else {}),
    }
    if state == "COMPLETED" and mode == "LIVE":
        live = outputs.get("LIVE")
        if isinstance(live, types.CallToolResult):
            return live
        if isinstance(live, TooLarge):
            return _error(
                f"phase24 gateway: {exposed} DID run upstream, but its answer ({live.size} bytes) is over the "
                f"gateway's limit ({live.limit} bytes) and was withheld. {NO_RETRY}",
                {**details, "result_bytes": live.size},
            )
    if state == "COMPLETED" and "not repeated" in reason:
        return _error(
            f"phase24 gateway: NOT sent: an identical irreversible call already ran LIVE in this gateway run "
            f"(journal intent DONE), and the gateway never repeats an irreversible effect. {NO_RETRY}",
            details,
        )
    if state == "COMPLETED" and mode in ("MOCK", "DRY_RUN"):
        step = outputs.get(mode) or {}
        hint = (
            f"A LIVE call needs confidence >= {threshold:.2f} (argument `_phase24_confidence`). "
            if "confidence" in reason
            else ""
        )
        return not_sent(mode, f"{reason}. {hint}", step.get("would_send", {}), details)
    if state == "LOCKED":
        return _error(f"phase24 gateway: NOT sent to upstream: {_denial(approval, reason)}", details)
    if "upstream unavailable:" in reason:
        why = reason[reason.index("upstream unavailable:") :]
        return _error(
            f"phase24 gateway: NOT sent: {why}. Nothing reached upstream; the gateway starts it again, "
            "so the same call may succeed in a few seconds.",
            details,
        )
    if "LIVE intent as PENDING" in reason:
        return _error(
            "phase24 gateway: NOT sent: an identical irreversible call is running right now (journal intent "
            f"PENDING), and the gateway never sends the same irreversible call twice. {NO_RETRY}",
            details,
        )
    if "LIVE intent as FAILED" in reason:
        return _error(
            f"phase24 gateway: NOT sent: an identical irreversible call failed LIVE earlier in this gateway run "
            f"(journal intent FAILED) and is never retried. {NO_RETRY}",
            details,
        )
    if "UNKNOWN" in reason:
        return _error(
            f"phase24 gateway: the outcome of this call is UNKNOWN: {reason}. Upstream may have acted. "
            f"The gateway will not send it again; the operator must check. {NO_RETRY}",
            details,
        )
    return _error(f"phase24 gateway: the call did not complete ({state}): {reason}", details)
