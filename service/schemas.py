"""Request and response bodies of the operator's side of the API (the agents' are in core.proposals)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DecisionIn(BaseModel):
    """`POST /v1/approvals/{request_id}`."""

    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern="^(approve|deny)$")
    reason: str = Field(default="", max_length=1024)


class ReasonIn(BaseModel):
    """`POST /v1/lock`, `POST /v1/unlock`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1024)


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
