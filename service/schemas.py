"""Request and response bodies of the operator's side of the API (the agents' are in core.proposals)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DecisionIn(BaseModel):
    """`POST /v1/approvals/{request_id}`."""

    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern="^(approve|deny|deny_and_stop)$")
    reason: str = Field(default="", max_length=1024)
    # Edit, then approve: the arguments the operator approves instead of the agent's (the
    # approval binds to the hash of the action with them; the tool and agent cannot change).
    edited_args: dict[str, Any] | None = None
    # Whether the arguments were entirely on the operator's screen when they answered.
    args_fully_visible: bool | None = None


class ReasonIn(BaseModel):
    """`POST /v1/lock`, `POST /v1/unlock`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1024)


class SeatIn(BaseModel):
    """`POST /v1/seat` (the body may be empty)."""

    model_config = ConfigDict(extra="forbid")

    console: str = Field(default="", max_length=200, description="how the console names itself (shown to others)")


class ErrorOut(BaseModel):
    error: str = Field(description="one line; names the problem")
    field: str | None = Field(description="the request field at fault, when one is")


class DecisionOut(BaseModel):
    request_id: str
    approved: bool = Field(description="as the core recorded it: an approve can still be refused (locked, expired)")
    decided_by: str
    reason: str


class LockOut(BaseModel):
    locked: bool
    reason: str


class PauseOut(BaseModel):
    paused: bool
