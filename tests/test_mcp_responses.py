"""What the agent gets back for each outcome the core can reach (gateway/responses.py)."""

from __future__ import annotations

import mcp_types as types
import pytest

from gateway.responses import response
from gateway.tools import TooLarge


def _result(state: str, mode: str | None, reason: str, approval: dict[str, str] | None = None) -> dict[str, object]:
    return {"final_state": state, "mode": mode, "reason": reason, "approval": approval, "confidence": 0.9}


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize(
    ("outcome", "by", "expected"),
    [
        ("EXPIRED", "gate", "EXPIRED"),
        ("DENIED_EARLIER", "gate", "denied earlier"),
        ("DENIED_AND_STOPPED", "operator", "stopped this agent"),
        ("DENIED", "operator", "was denied (operator)"),
        ("DENIED", "lock", "LOCKED"),
    ],
)
def test_every_refusal_is_a_tool_error_that_says_retrying_will_not_help(outcome: str, by: str, expected: str) -> None:
    approval = {"outcome": outcome, "decided_by": by}
    result = response(_result("LOCKED", "DRY_RUN", "why", approval), {}, "tool", 0.85)
    assert result.is_error and expected in _text(result) and "will not help" in _text(result)


def test_live_result_is_upstreams_own_and_an_oversized_one_is_withheld() -> None:
    upstream = types.CallToolResult(content=[types.TextContent(type="text", text="ok")])
    assert response(_result("COMPLETED", "LIVE", "LIVE succeeded"), {"LIVE": upstream}, "t", 0.7) is upstream
    withheld = response(_result("COMPLETED", "LIVE", "LIVE succeeded"), {"LIVE": TooLarge(9, 5)}, "t", 0.7)
    assert withheld.is_error and "DID run upstream" in _text(withheld)


def test_mock_and_dry_run_are_marked_not_sent_and_unknown_says_so() -> None:
    would = {"upstream": "u", "tool": "t", "arguments": {"a": 1}}
    dry = response(
        _result("COMPLETED", "DRY_RUN", "DRY_RUN succeeded; confidence 0.80 allows DRY_RUN"),
        {"DRY_RUN": {"would_send": would}},
        "t",
        0.85,
    )
    assert not dry.is_error and _text(dry).startswith("[phase24 DRY_RUN] NOT SENT") and '"a": 1' in _text(dry)
    assert "0.85" in _text(dry)
    unknown = response(_result("ABORTED", None, "LIVE outcome UNKNOWN, the effect may have happened"), {}, "t", 0.85)
    assert unknown.is_error and "will not send it again" in _text(unknown)


def test_a_held_approved_call_is_not_called_denied() -> None:
    approval = {"outcome": "APPROVED", "decided_by": "policy:approve-all", "approved": True}
    duplicate = response(
        _result("LOCKED", "DRY_RUN", "duplicate irreversible action: the journal already holds its intent", approval),
        {},
        "t",
        0.85,
    )
    assert duplicate.is_error and "already running or has run" in _text(duplicate) and "denied" not in _text(duplicate)
    changed = response(_result("LOCKED", "DRY_RUN", "action changed after approval", approval), {}, "t", 0.85)
    assert "denied" not in _text(changed) and "action changed after approval" in _text(changed)


@pytest.mark.parametrize(("status", "expected"), [("PENDING", "running right now"), ("FAILED", "failed LIVE earlier")])
def test_an_identical_call_held_by_the_journal_says_why(status: str, expected: str) -> None:
    reason = f"journal holds this action's LIVE intent as {status}; never retried"
    result = response(_result("ABORTED", "DRY_RUN", reason), {}, "t", 0.85)
    assert result.is_error and expected in _text(result) and "NOT sent" in _text(result)
