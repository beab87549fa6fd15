"""The HTTP API of the gate (Starlette): proposals, long-polled decisions, grants' outcomes,
approvals, lock, unlock, pause, resume, the event stream and metrics.

Every request but `/v1/health` and `/v1/openapi.json` carries `Authorization: Bearer TOKEN`.
Errors are JSON: `{"error": "...", "field": "args" | null}` with a 4xx (or 503) status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.commands import GateCommands
from core.gate_service import GateRequestRefused, GateService
from core.grants import GrantRefused
from core.proposals import OutcomeIn, ProposalIn
from service.metrics import CONTENT_TYPE, make_registry, render
from service.openapi import openapi_document
from service.schemas import DecisionIn, ReasonIn, SeatIn
from service.seat import SEAT_HEADER, OperatorSeat, SeatTaken
from service.tokens import Principal, TokenStore

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0
MAX_WAIT_S = 60.0

_STATUS = {"invalid": 422, "forbidden": 403, "not_found": 404, "conflict": 409, "unavailable": 503}

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


async def read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY_BYTES, read within BODY_TIMEOUT_S (a slow client gets 408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number", "body")
        if int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body")

    async def collect() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await collect()
    except TimeoutError:
        raise ApiError(408, f"body not received within {BODY_TIMEOUT_S:g}s", "body") from None


def json_model(model: BaseModel, status_code: int = 200, *, duplicate: bool | None = None) -> Response:
    """A model as a JSON answer, serialised by pydantic in one step (the agents' hot path:
    no dict, no copy, no second encoder); `duplicate` is added as the last field."""
    body = model.model_dump_json().encode()
    if duplicate is not None:
        body = body[:-1] + (b',"duplicate":true}' if duplicate else b',"duplicate":false}')
    return Response(body, status_code=status_code, media_type="application/json")


def _no_constants(name: str) -> Any:
    """NaN and Infinity are not JSON (and could not be answered back as JSON)."""
    raise ValueError(f"{name} is not a JSON number")


async def parse(request: Request, model: type[M], *, empty: bool = False) -> M:
    """The body as `model`; with `empty`, no body at all means `{}`."""
    raw = await read_body(request)
    if empty and not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw, parse_constant=_no_constants) if raw.strip() else None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(422, f"field {field}: {first['msg']}", field) from None


def wait_seconds(raw: str) -> float:
    """`?wait=S`: a number of seconds within 0..MAX_WAIT_S (422 naming `wait` otherwise)."""
    try:
        wait = float(raw)
    except ValueError:
        raise ApiError(422, f"wait must be a number of seconds, got {raw!r}", "wait") from None
    if not 0 <= wait <= MAX_WAIT_S:
        raise ApiError(422, f"wait must be within 0..{MAX_WAIT_S:g} seconds", "wait")
    return wait


class GateApi:
    """The routes, bound to one running `GateService`."""

    def __init__(self, service: GateService, tokens: TokenStore, seat: OperatorSeat) -> None:
        self.service = service
        self.commands = GateCommands(service)
        self.tokens = tokens
        self.seat = seat
        self.metrics = make_registry(service)

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing bearer token (Authorization: Bearer TOKEN)")
        principal = self.tokens.authenticate(token.strip())
        if principal is None:
            raise ApiError(401, "unknown token")
        return principal

    def require(self, request: Request, check: Callable[[Principal], bool], what: str) -> Principal:
        principal = self.principal(request)
        if not check(principal):
            raise ApiError(403, f"{principal.role} tokens cannot {what}")
        return principal

    def operator(self, request: Request, what: str) -> Principal:
        """An operator's command. One that names a seat (a console's) must name the held seat;
        one that names none is an operator API call, answered whoever holds the seat."""
        principal = self.require(request, lambda p: p.can_command, f"{what} (operator tokens only)")
        seat_id = request.headers.get(SEAT_HEADER)
        if seat_id is not None and not self.seat.holds(seat_id):
            raise ApiError(
                409,
                "this console does not hold the operator seat (released, or freed after its event stream was "
                f"gone {self.seat.timeout_s:g}s); attach again",
                "seat",
            )
        return principal

    # -- agents -----------------------------------------------------------------------

    async def propose(self, request: Request) -> Response:
        """With `?wait=S` the answer also waits (up to S) for the decision and carries the
        proposal's status: one request instead of a proposal and a long-poll."""
        principal = self.require(request, lambda p: p.role == "agent", "propose (agent tokens only)")
        raw_wait = request.query_params.get("wait")
        wait = None if raw_wait is None else wait_seconds(raw_wait)
        proposal = await parse(request, ProposalIn)
        if proposal.agent != principal.name:
            raise ApiError(403, f"this token proposes for agent {principal.name!r} only", "agent")
        accepted = await self.service.submit(proposal)
        code = 200 if accepted.duplicate else 201
        if wait is None:
            return json_model(accepted, code)
        status = await self.service.wait(accepted.proposal_id, wait)
        return json_model(status, code, duplicate=accepted.duplicate)

    async def proposal(self, request: Request) -> Response:
        principal = self.principal(request)
        proposal_id = request.path_params["proposal_id"]
        status = self.service.status(proposal_id)
        if principal.role == "agent" and status.agent != principal.name:
            raise ApiError(404, f"no proposal {proposal_id!r}")
        wait = wait_seconds(request.query_params.get("wait", "0"))
        if wait > 0:
            status = await self.service.wait(proposal_id, wait)
        return json_model(status)

    async def outcome(self, request: Request) -> Response:
        principal = self.require(request, lambda p: p.role == "agent", "report outcomes (agent tokens only)")
        body = await parse(request, OutcomeIn)
        grant_id = request.path_params["grant_id"]
        try:
            grant = self.service.grants.report(grant_id, principal.name, body.ok, body.result, body.error)
        except GrantRefused as exc:
            status = {"not_found": 404, "forbidden": 404, "conflict": 409}[exc.reason]
            # Another agent's grant is "not found" for this token: its existence is not disclosed.
            message = f"no grant {grant_id!r}" if exc.reason == "forbidden" else str(exc)
            raise ApiError(status, message) from None
        try:
            await self.service.bus.barrier()
        except Exception as exc:
            raise ApiError(503, f"the outcome could not be journaled: {exc}") from None
        final = await self.service.wait_finished(grant.proposal_id, 5.0)
        return json_model(final)

    # -- operators ----------------------------------------------------------------------

    async def decide(self, request: Request) -> Response:
        principal = self.operator(request, "answer approvals")
        body = await parse(request, DecisionIn)
        result = await self.commands.decide(
            request.path_params["request_id"],
            body.decision == "approve",
            body.reason,
            f"operator:{principal.name}",
            stop_agent=body.decision == "deny_and_stop",
            edited_args=body.edited_args,
            args_fully_visible=body.args_fully_visible,
        )
        return JSONResponse(result)

    async def lock(self, request: Request) -> Response:
        principal = self.operator(request, "lock")
        body = await parse(request, ReasonIn)
        return JSONResponse(await self.commands.lock(body.reason, f"operator:{principal.name}"))

    async def unlock(self, request: Request) -> Response:
        principal = self.operator(request, "unlock")
        body = await parse(request, ReasonIn)
        return JSONResponse(await self.commands.unlock(body.reason, f"operator:{principal.name}"))

    async def pause(self, request: Request) -> Response:
        principal = self.operator(request, "pause")
        return JSONResponse(await self.commands.pause(f"operator:{principal.name}"))

    async def resume(self, request: Request) -> Response:
        principal = self.operator(request, "resume")
        return JSONResponse(await self.commands.resume(f"operator:{principal.name}"))

    # -- the operator seat (service/seat.py) -------------------------------------------------

    async def claim_seat(self, request: Request) -> Response:
        principal = self.require(
            request, lambda p: p.can_command, "hold the operator seat (operator tokens only; attach --read-only)"
        )
        body = await parse(request, SeatIn, empty=True)
        try:
            seat = self.seat.claim(principal.name, body.console or principal.name)
        except SeatTaken as exc:
            return JSONResponse({"error": str(exc), "field": None, "holder": exc.holder.public()}, status_code=409)
        return JSONResponse(
            {"seat_id": seat.seat_id, **seat.public(), "timeout_s": self.seat.timeout_s}, status_code=201
        )

    async def release_seat(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_command, "release the operator seat (operator tokens only)")
        if not self.seat.release(request.path_params["seat_id"]):
            raise ApiError(404, "no operator seat is held with this id", "seat_id")
        return JSONResponse({"released": True})

    async def seat_state(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_watch, "watch (viewer or operator tokens)")
        return JSONResponse(self.seat.describe())

    # -- watchers -----------------------------------------------------------------------

    async def state(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_watch, "watch (viewer or operator tokens)")
        return JSONResponse(self.service.snapshot() | {"operator_seat": self.seat.describe()})

    async def approvals(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_watch, "watch (viewer or operator tokens)")
        return JSONResponse({"pending": self.service.pending_approvals()})

    async def events(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_watch, "watch (viewer or operator tokens)")
        raw = request.headers.get("last-event-id") or request.query_params.get("since") or "0"
        if not raw.isdigit():
            raise ApiError(422, f"since / Last-Event-ID must be a sequence number, got {raw!r}", "since")
        seat_id = request.query_params.get("seat")
        if seat_id is not None and not self.seat.holds(seat_id):
            raise ApiError(409, "seat: this seat is not held (released or timed out); claim it again", "seat")
        backlog, watch = self.service.feed.watch(int(raw))

        async def stream() -> AsyncIterator[dict[str, Any]]:
            # The seat is kept while its stream is open (connected in the generator, so the
            # `finally` that disconnects it always runs).
            seat = self.seat.connect(seat_id) if seat_id is not None else None
            try:
                for seq, kind, data in backlog:
                    yield {"id": str(seq), "event": kind, "data": data}
                while True:
                    item = await watch.queue.get()
                    if item is None:
                        return
                    seq, kind, data = item
                    yield {"id": str(seq), "event": kind, "data": data}
            finally:
                self.service.feed.unwatch(watch)
                if seat is not None:
                    self.seat.disconnect(seat)

        return EventSourceResponse(stream(), ping=15, send_timeout=30)

    async def metrics_text(self, request: Request) -> Response:
        self.require(request, lambda p: p.can_watch, "read metrics (viewer or operator tokens)")
        return Response(render(self.metrics), media_type=CONTENT_TYPE)

    # -- open ---------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "accepting": self.service.accepting})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


Handler = Callable[[Request], Awaitable[Response]]


def _guard(handler: Handler) -> Handler:
    """Turn refusals into JSON errors; nothing escapes as a bare 500 with a traceback."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error(exc.status, exc.message, exc.field)
        except GateRequestRefused as exc:
            return error(_STATUS[exc.reason], str(exc), exc.field)

    return guarded


def create_app(service: GateService, tokens: TokenStore, seat: OperatorSeat | None = None) -> Starlette:
    api = GateApi(service, tokens, seat if seat is not None else OperatorSeat())
    routes = [
        Route("/v1/proposals", _guard(api.propose), methods=["POST"]),
        Route("/v1/proposals/{proposal_id}", _guard(api.proposal), methods=["GET"]),
        Route("/v1/grants/{grant_id}/outcome", _guard(api.outcome), methods=["POST"]),
        Route("/v1/approvals", _guard(api.approvals), methods=["GET"]),
        Route("/v1/approvals/{request_id}", _guard(api.decide), methods=["POST"]),
        Route("/v1/lock", _guard(api.lock), methods=["POST"]),
        Route("/v1/unlock", _guard(api.unlock), methods=["POST"]),
        Route("/v1/pause", _guard(api.pause), methods=["POST"]),
        Route("/v1/resume", _guard(api.resume), methods=["POST"]),
        Route("/v1/seat", _guard(api.claim_seat), methods=["POST"]),
        Route("/v1/seat", _guard(api.seat_state), methods=["GET"]),
        Route("/v1/seat/{seat_id}", _guard(api.release_seat), methods=["DELETE"]),
        Route("/v1/state", _guard(api.state), methods=["GET"]),
        Route("/v1/events", _guard(api.events), methods=["GET"]),
        Route("/v1/health", _guard(api.health), methods=["GET"]),
        Route("/v1/openapi.json", _guard(api.openapi), methods=["GET"]),
        Route("/metrics", _guard(api.metrics_text), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"no route {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, f"method {request.method} not allowed on {request.url.path}")

    async def internal(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {type(exc).__name__}")

    return Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, 500: internal},
    )
