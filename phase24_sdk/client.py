"""The async client: `async with connect(url, token, agent="a") as gate: await gate.call(...)`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from phase24_sdk import flows
from phase24_sdk.calls import (
    Contract,
    GatedTool,
    GateResult,
    Risk,
    Wire,
    checked,
    dumps,
    environment_proxy,
    gated_tool,
)
from phase24_sdk.errors import GateConnectionError

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

    async def _send(self, step: flows.Send) -> dict[str, Any]:
        # Only a request that never reached the service is retried (the same action_id
        # makes even a repeated proposal the same proposal).
        body = None if step.body is None else dumps(step.body)
        request = self._wire.request(step.method, step.path, body, step.params, step.timeout)
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

    async def _drive(self, flow: flows.Flow) -> Any:
        """Run a flow (phase24_sdk/flows.py): send its requests, run its function, hand each
        result back (an exception is thrown back into the flow where it asked)."""
        result: Any = None
        error: Exception | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            try:
                if isinstance(step, flows.Send):
                    result = await self._send(step)
                else:
                    result = step.fn(**step.args)
                    if asyncio.iscoroutine(result):
                        result = await result
            except Exception as exc:
                error = exc

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
        proposal = flows.Proposal(tool, args, confidence, plan_id, action_id, contract, resource)
        return str(await self._drive(flows.propose(self.agent, proposal)))

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
        proposal = flows.Proposal(tool, args, confidence, plan_id, action_id, contract, resource)
        return dict(await self._drive(flows.propose_and_wait(self.agent, proposal, timeout_s)))

    async def status(self, proposal_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return dict(await self._drive(flows.status(proposal_id, wait_s)))

    async def wait(self, proposal_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Long-poll until the proposal is decided (or `timeout_s` passes: GateTimeout)."""
        return dict(await self._drive(flows.wait(proposal_id, timeout_s)))

    async def report(
        self, grant_id: str, ok: bool, result: dict[str, Any] | None = None, error: str | None = None
    ) -> dict[str, Any]:
        return dict(await self._drive(flows.report(grant_id, ok, result, error)))

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
        proposal = flows.Proposal(tool, args, confidence, plan_id, action_id, contract, resource)
        result: GateResult = await self._drive(flows.call(self.agent, proposal, fn, decision_timeout_s))
        return result

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
