"""The async client: `async with connect(url, token, agent="a") as gate: await gate.call(...)`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from phase24_sdk.calls import (
    LONG_POLL_S,
    Contract,
    GatedTool,
    GateResult,
    Risk,
    Wire,
    checked,
    dumps,
    environment_proxy,
    failure_body,
    gated_tool,
    granted_args,
    outcome_body,
    proposal_body,
)
from phase24_sdk.errors import GateConnectionError, GateTimeout, raise_for_decision

RETRIES = 3


class Gate:
    """One agent's connection to a gate service (async).

    Requests go over one httpx transport (httpcore's connection pool, one keep-alive
    connection); `transport` replaces it (e.g. an in-process ASGI app).
    """

    def __init__(self, url: str, token: str, *, agent: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.agent = agent
        self._wire = Wire(url, token)
        self._transport = transport or httpx.AsyncHTTPTransport(proxy=environment_proxy(self._wire.base))

    async def __aenter__(self) -> Gate:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, float] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        # Only a request that never reached the service is retried (the same action_id
        # makes even a repeated proposal the same proposal).
        request = self._wire.request(method, path, None if body is None else dumps(body), params, timeout)
        for attempt in range(RETRIES):
            try:
                response = await self._transport.handle_async_request(request)
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                return checked(response.status_code, content)
            except httpx.ConnectError as exc:
                if attempt == RETRIES - 1:
                    raise GateConnectionError(f"cannot reach the gate service: {exc}") from exc
                await asyncio.sleep(0.1 * 2**attempt)
            except httpx.TransportError as exc:  # sent: the service may have acted, never resent here
                raise GateConnectionError(f"the connection to the gate service broke: {exc}") from exc
        raise AssertionError("unreachable")

    async def propose(
        self,
        tool: str,
        args: dict[str, Any],
        confidence: float,
        *,
        plan_id: str | None = None,
        action_id: str | None = None,
        contract: Contract | None = None,
        resource: str | None = None,
    ) -> str:
        body = proposal_body(
            self.agent,
            tool,
            args,
            confidence,
            plan_id=plan_id,
            action_id=action_id,
            contract=contract,
            resource=resource,
        )
        return str((await self._send("POST", "/v1/proposals", body))["proposal_id"])

    async def propose_and_wait(
        self,
        tool: str,
        args: dict[str, Any],
        confidence: float,
        *,
        plan_id: str | None = None,
        action_id: str | None = None,
        contract: Contract | None = None,
        resource: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Propose and wait for the decision in one request (`POST /v1/proposals?wait=S`);
        a decision that takes longer than one long-poll goes on with `GET .../{id}?wait=S`."""
        body = proposal_body(
            self.agent,
            tool,
            args,
            confidence,
            plan_id=plan_id,
            action_id=action_id,
            contract=contract,
            resource=resource,
        )
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        first = LONG_POLL_S if timeout_s is None else max(0.0, min(LONG_POLL_S, timeout_s))
        status = await self._send("POST", "/v1/proposals", body, params={"wait": first}, timeout=first + 10.0)
        if status.get("decided"):
            return status
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await self.wait(str(status["proposal_id"]), left)

    async def status(self, proposal_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return await self._send("GET", f"/v1/proposals/{proposal_id}", params={"wait": wait_s}, timeout=wait_s + 10.0)

    async def wait(self, proposal_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Long-poll until the proposal is decided (or `timeout_s` passes: GateTimeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else min(LONG_POLL_S, deadline - time.monotonic())
            status = await self.status(proposal_id, max(0.0, left))
            if status.get("decided"):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise GateTimeout(f"proposal {proposal_id} not decided within {timeout_s:g}s", status)

    async def report(
        self, grant_id: str, ok: bool, result: dict[str, Any] | None = None, error: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": ok, "result": result, "error": error}
        return await self._send("POST", f"/v1/grants/{grant_id}/outcome", body)

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        confidence: float,
        fn: Callable[..., Any] | None = None,
        *,
        contract: Contract | None = None,
        resource: str | None = None,
        plan_id: str | None = None,
        action_id: str | None = None,
        decision_timeout_s: float | None = None,
    ) -> GateResult:
        """Propose, wait for the decision, run `fn(**args)` only on a LIVE grant, report its outcome.

        Raises GateDenied, GateExpired, GateLocked, GateUnknown or GateFailed when the call
        does not go ahead. A tool the service runs itself needs no `fn`: its result is returned.
        """
        status = await self.propose_and_wait(
            tool,
            args,
            confidence,
            plan_id=plan_id,
            action_id=action_id,
            contract=contract,
            resource=resource,
            timeout_s=decision_timeout_s,
        )
        proposal_id = str(status["proposal_id"])
        raise_for_decision(status)
        grant_id = status.get("grant_id")
        if grant_id is None:
            value = status.get("result") if status.get("executed_by") == "service" else None
            return GateResult(proposal_id, status.get("mode"), str(status["decision"]), False, value, status)
        if fn is None:
            await self.report(grant_id, False, error="the caller gave no function to run")
            raise ValueError(f"{tool} was granted LIVE but no function was given to run it")
        try:
            value = fn(**granted_args(status, args))
            if asyncio.iscoroutine(value):
                value = await value
        except Exception as exc:
            await self.report(grant_id, **failure_body(exc))
            raise
        final = await self.report(grant_id, **outcome_body(value))
        raise_for_decision(final)
        return GateResult(proposal_id, "LIVE", str(final["decision"]), True, value, final)

    async def invoke(self, tool: GatedTool, confidence: float, **kwargs: Any) -> GateResult:
        """Run a `@gated_tool` function behind the gate."""
        return await self.call(tool.name, kwargs, confidence, tool.fn, contract=tool.contract)

    def tool(
        self, *, confidence: float, risk: Risk = "HIGH", reversible: bool = False, read_only: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator bound to this gate: the decorated function proposes itself when awaited."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            gated = gated_tool(risk=risk, reversible=reversible, read_only=read_only)(fn)

            async def run(**kwargs: Any) -> GateResult:
                return await self.invoke(gated, confidence, **kwargs)

            run.__name__ = fn.__name__
            run.__doc__ = fn.__doc__
            return run

        return wrap


def connect(url: str, token: str, *, agent: str, transport: httpx.AsyncBaseTransport | None = None) -> Gate:
    """`async with connect(url, token, agent="mail_agent") as gate:`"""
    return Gate(url, token, agent=agent, transport=transport)
