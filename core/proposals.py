"""Proposals from live agents: the request an agent sends, and what the gate made of it.

A proposal is one tool call an agent wants to make. It enters the same gate as a plan's
action (controller, conflicts, approvals, journal, outputs); `ProposalStatus` is what the
agent (and any viewer) can read back while it climbs and once it is decided.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.contracts import RiskLevel

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
TOOL_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
MAX_DEPTH = 32
"""How deeply `args` and a reported `result` may nest (deeper JSON could not be journaled)."""


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a JSON value, counting no further than `limit` + 1."""
    depth = 0
    level: list[Any] = [value]
    while level and depth <= limit:
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        if not nested:
            break
        depth += 1
        level = nested
    return depth


def _shallow(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and nesting_depth(value) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


class DeclaredContract(BaseModel):
    """The contract an agent declares for a tool it executes itself.

    Undeclared fields take the safe side, as the MCP annotations' defaults do: a tool that
    says nothing is HIGH risk, irreversible, not read-only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    risk: RiskLevel = RiskLevel.HIGH
    reversible: bool = False
    read_only: bool = False
    description: str = Field(default="", max_length=1024)


class ProposalIn(BaseModel):
    """`POST /v1/proposals`: one tool call an agent proposes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str = Field(pattern=ID_PATTERN, description="the proposing agent; must be the agent token's own name")
    tool: str = Field(pattern=TOOL_PATTERN, description="a registered tool, or one the agent executes itself")
    args: dict[str, Any] = Field(default_factory=dict, description="the tool's arguments (shown to the operator)")
    confidence: float = Field(ge=0.0, le=1.0, description="the agent's confidence, 0..1")
    plan_id: str | None = Field(default=None, pattern=ID_PATTERN, description="the agent's own grouping, optional")
    action_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="idempotency key: the same agent sending the same action_id again gets the same proposal",
    )
    contract: DeclaredContract | None = Field(
        default=None, description="for tools the agent executes itself; undeclared fields are HIGH and irreversible"
    )
    resource: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="what the call acts on (a row, a mailbox, a file), optional: while a proposal of another "
        "agent on the same resource is pending or running, this one is a RESOURCE conflict and waits its turn",
    )

    _args_depth = field_validator("args")(_shallow)


ProposalState = Literal[
    "RECEIVED", "MOCK", "DRY_RUN", "AWAITING_APPROVAL", "LIVE", "GRANTED", "COMPLETED", "LOCKED", "ABORTED"
]
Decision = Literal["pending", "allowed", "approved", "denied", "expired", "locked", "failed", "aborted", "unknown"]


class ProposalStatus(BaseModel):
    """`GET /v1/proposals/{id}`: the proposal as the gate sees it now."""

    proposal_id: str
    agent: str
    tool: str
    state: ProposalState = "RECEIVED"
    mode: Literal["MOCK", "DRY_RUN", "LIVE"] | None = Field(
        default=None, description="the highest mode allowed so far (LIVE with a grant_id: run it now)"
    )
    decision: Decision = "pending"
    decided: bool = False
    executed_by: Literal["service", "agent"] = "service"
    grant_id: str | None = None
    grant_args: dict[str, Any] | None = Field(
        default=None,
        description="with a grant: exactly the arguments it is for (the operator may have edited them); run these",
    )
    request_id: str | None = Field(default=None, description="the approval request, when one was needed")
    reason: str = ""
    result: dict[str, Any] | None = None


class ProposalAccepted(BaseModel):
    """The answer to `POST /v1/proposals` (201 new, 200 the same action_id again)."""

    proposal_id: str
    duplicate: bool = False


class OutcomeIn(BaseModel):
    """`POST /v1/grants/{grant_id}/outcome`: what the agent's own LIVE execution did."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=4096)

    _result_depth = field_validator("result")(_shallow)
