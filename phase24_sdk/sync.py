"""The sync client: the same calls as `Gate`, for code without an event loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from phase24_sdk import flows
from phase24_sdk.calls import (
    Contract,
    GatedTool,
    GateResult,
    Wire,
    checked,
    dumps,
    environment_proxy,
)
from phase24_sdk.errors import GateConnectionError

RETRIES = 3


class SyncGate:
    """One agent's connection to a gate service (blocking)."""

    def __init__(self, url: str, token: str, *, agent: str, transport: httpx.BaseTransport | None = None) -> None:
        self.agent = agent
        self._wire = Wire(url, token)
        self._transport = transport or httpx.HTTPTransport(proxy=environment_proxy(self._wire.base))

    def __enter__(self) -> SyncGate:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def _send(self, step: flows.Send) -> dict[str, Any]:
        body = None if step.body is None else dumps(step.body)
        request = self._wire.request(step.method, step.path, body, step.params, step.timeout)
        for attempt in range(RETRIES):
            try:
                response = self._transport.handle_request(request)
                try:
                    content = response.read()
                finally:
                    response.close()
                return checked(response.status_code, content)
            except httpx.ConnectError as exc:
                if attempt == RETRIES - 1:
                    raise GateConnectionError(f"cannot reach the gate service: {exc}") from exc
                time.sleep(0.1 * 2**attempt)
            except httpx.TransportError as exc:  # sent: the service may have acted, never resent here
                raise GateConnectionError(f"the connection to the gate service broke: {exc}") from exc
        raise AssertionError("unreachable")

    def _drive(self, flow: flows.Flow) -> Any:
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
                    result = self._send(step)
                else:
                    result = step.fn(**step.args)
            except Exception as exc:
                error = exc

    def propose(
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
        return str(self._drive(flows.propose(self.agent, proposal)))

    def propose_and_wait(
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
        return dict(self._drive(flows.propose_and_wait(self.agent, proposal, timeout_s)))

    def status(self, proposal_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return dict(self._drive(flows.status(proposal_id, wait_s)))

    def wait(self, proposal_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Long-poll until the proposal is decided (or `timeout_s` passes: GateTimeout)."""
        return dict(self._drive(flows.wait(proposal_id, timeout_s)))

    def report(
        self, grant_id: str, ok: bool, result: dict[str, Any] | None = None, error: str | None = None
    ) -> dict[str, Any]:
        return dict(self._drive(flows.report(grant_id, ok, result, error)))

    def call(
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
        result: GateResult = self._drive(flows.call(self.agent, proposal, fn, decision_timeout_s))
        return result

    def invoke(self, tool: GatedTool, confidence: float, **kwargs: Any) -> GateResult:
        if tool.is_async:
            raise TypeError(f"{tool.name} is async: use the async Gate")
        return self.call(tool.name, kwargs, confidence, tool.fn, contract=tool.contract)


def connect_sync(url: str, token: str, *, agent: str) -> SyncGate:
    """`with connect_sync(url, token, agent="a") as gate:`"""
    return SyncGate(url, token, agent=agent)
