"""The OpenAPI 3.1 document of the gate's HTTP API (served at `GET /v1/openapi.json`).

Request and response schemas come from the same pydantic models the service validates
with, so the document cannot drift from what the service accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from core.proposals import OutcomeIn, ProposalAccepted, ProposalIn, ProposalStatus
from service.schemas import DecisionIn, DecisionOut, ErrorOut, LockOut, PauseOut, ReasonIn, SeatIn

API_VERSION = "1"


_MODELS: list[type[BaseModel]] = [
    ProposalIn,
    ProposalAccepted,
    ProposalStatus,
    OutcomeIn,
    ErrorOut,
    DecisionOut,
    LockOut,
    PauseOut,
    DecisionIn,
    ReasonIn,
    SeatIn,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str = "") -> dict[str, Any]:
    return {"description": description or name, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed JSON or not an object",
        401: "missing or unknown token",
        403: "the token's role may not do this",
        404: "not found (or not yours)",
        408: "body not received in time",
        409: "conflict (already used, already decided, other contract; the operator seat is held, or the "
        "X-Phase24-Seat a command names is not held)",
        413: "body over 64 KiB",
        422: "a field is invalid (named in `field`)",
        503: "starting, stopping, or storage failed (the gate is locked)",
    }
    return {str(code): _json("ErrorOut", text[code]) for code in codes}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


@cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    common = (400, 401, 403, 408, 413, 422, 503)
    paths: dict[str, Any] = {
        "/v1/proposals": {
            "post": {
                "summary": "Propose one tool call (agent token; `agent` must be the token's name). With "
                "?wait=S (0..60) the answer waits up to S for the decision and is the proposal's status "
                "(ProposalStatus) plus `duplicate`: one request instead of a POST and a GET long-poll",
                "security": bearer,
                "parameters": [
                    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60}}
                ],
                "requestBody": _body("ProposalIn"),
                "responses": {
                    "201": _json("ProposalAccepted", "journaled, then acknowledged (with ?wait: ProposalStatus)"),
                    "200": _json("ProposalAccepted", "the same action_id again: the same proposal"),
                    **_errors(*common, 409),
                },
            }
        },
        "/v1/proposals/{proposal_id}": {
            "get": {
                "summary": "A proposal's status; with ?wait=S (0..60) long-polls until it is decided",
                "security": bearer,
                "parameters": [
                    {"name": "proposal_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60}},
                ],
                "responses": {"200": _json("ProposalStatus"), **_errors(401, 404, 422)},
            }
        },
        "/v1/grants/{grant_id}/outcome": {
            "post": {
                "summary": "Report the outcome of the agent's own LIVE grant (once)",
                "security": bearer,
                "parameters": [{"name": "grant_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": _body("OutcomeIn"),
                "responses": {"200": _json("ProposalStatus", "the proposal, settled"), **_errors(*common, 404, 409)},
            }
        },
        "/v1/approvals": {
            "get": {
                "summary": "Pending approval requests (viewer, operator)",
                "security": bearer,
                "responses": {"200": {"description": "{pending: [request]}"}, **_errors(401, 403)},
            }
        },
        "/v1/approvals/{request_id}": {
            "post": {
                "summary": "Approve or deny a pending request (operator)",
                "security": bearer,
                "parameters": [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": _body("DecisionIn"),
                "responses": {"200": _json("DecisionOut"), **_errors(*common, 404, 409)},
            }
        },
        "/v1/lock": {
            "post": {
                "summary": "Lock the system to MOCK (operator)",
                "security": bearer,
                "requestBody": _body("ReasonIn"),
                "responses": {"200": _json("LockOut"), **_errors(*common)},
            }
        },
        "/v1/unlock": {
            "post": {
                "summary": "Unlock (operator)",
                "security": bearer,
                "requestBody": _body("ReasonIn"),
                "responses": {"200": _json("LockOut"), **_errors(*common)},
            }
        },
        "/v1/pause": {
            "post": {
                "summary": "Pause: no new action starts (operator)",
                "security": bearer,
                "responses": {"200": _json("PauseOut"), **_errors(401, 403)},
            }
        },
        "/v1/resume": {
            "post": {
                "summary": "Resume after a pause (operator)",
                "security": bearer,
                "responses": {"200": _json("PauseOut"), **_errors(401, 403)},
            }
        },
        "/v1/seat": {
            "post": {
                "summary": "Claim the operator seat (operator; one console at a time). Keep it with "
                "GET /v1/events?seat=SEAT_ID; it frees timeout_s after its last stream closed",
                "security": bearer,
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("SeatIn")}}},
                "responses": {
                    "201": {"description": "{seat_id, operator, console, claimed_at, connected, timeout_s}"},
                    **_errors(*common, 409),
                },
            },
            "get": {
                "summary": "Who holds the operator seat: {held, operator?, console?, claimed_at?, connected?, "
                "frees_in_s?, timeout_s} (viewer, operator)",
                "security": bearer,
                "responses": {"200": {"description": "seat state"}, **_errors(401, 403)},
            },
        },
        "/v1/seat/{seat_id}": {
            "delete": {
                "summary": "Give the operator seat back (operator)",
                "security": bearer,
                "parameters": [{"name": "seat_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{released: true}"}, **_errors(401, 403, 404)},
            }
        },
        "/v1/state": {
            "get": {
                "summary": "Lock, pause, counts, last event seq (viewer, operator)",
                "security": bearer,
                "responses": {"200": {"description": "state object"}, **_errors(401, 403)},
            }
        },
        "/v1/events": {
            "get": {
                "summary": "Server-sent events: every typed event (id = seq, event = kind, data = JSON); "
                "resumable with Last-Event-ID or ?since=SEQ (viewer, operator)",
                "security": bearer,
                "parameters": [
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "seat", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "text/event-stream"}, **_errors(401, 403, 409, 422)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format (viewer, operator)",
                "security": bearer,
                "responses": {"200": {"description": "text/plain; version=0.0.4"}, **_errors(401, 403)},
            }
        },
        "/v1/health": {"get": {"summary": "Liveness (no token)", "responses": {"200": {"description": "ok"}}}},
        "/v1/openapi.json": {"get": {"summary": "This document (no token)", "responses": {"200": {"description": ""}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Phase 24 gate",
            "version": API_VERSION,
            "description": "Live agents propose tool calls; the gate escalates MOCK -> DRY_RUN -> LIVE, "
            "operators approve, deny and lock. Bodies are limited to 64 KiB.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    }
