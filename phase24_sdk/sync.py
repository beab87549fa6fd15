"""The sync client: the same calls as `Gate`, for code without an event loop."""

from __future__ import annotations

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
    Wire,
    checked,
    dumps,
    environment_proxy,
    failure_body,
    granted_args,
    outcome_body,
    proposal_body,
)
from phase24_sdk.errors import GateConnectionError, GateTimeout, raise_for_decision

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

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, float] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        request = self._wire.request(method, path, None if body is None else dumps(body), params, timeout)
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
        return str(self._send("POST", "/v1/proposals", body)["proposal_id"])

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
        """As `Gate.propose_and_wait`: one request, then long-polls if it is not decided yet."""
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
        status = self._send("POST", "/v1/proposals", body, params={"wait": first}, timeout=first + 10.0)
        if status.get("decided"):
            return status
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.wait(str(status["proposal_id"]), left)

    def status(self, proposal_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        return self._send("GET", f"/v1/proposals/{proposal_id}", params={"wait": wait_s}, timeout=wait_s + 10.0)

    def wait(self, proposal_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else min(LONG_POLL_S, deadline - time.monotonic())
            status = self.status(proposal_id, max(0.0, left))
            if status.get("decided"):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise GateTimeout(f"proposal {proposal_id} not decided within {timeout_s:g}s", status)

    def report(
        self, grant_id: str, ok: bool, result: dict[str, Any] | None = None, error: str | None = None
    ) -> dict[str, Any]:
        return self._send("POST", f"/v1/grants/{grant_id}/outcome", {"ok": ok, "result": result, "error": error})

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
        """As `Gate.call`: `fn(**args)` runs only on a LIVE grant; denials raise."""
        status = self.propose_and_wait(
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
            self.report(grant_id, False, error="the caller gave no function to run")
            raise ValueError(f"{tool} was granted LIVE but no function was given to run it")
        try:
            value = fn(**granted_args(status, args))
        except Exception as exc:
            self.report(grant_id, **failure_body(exc))
            raise
        final = self.report(grant_id, **outcome_body(value))
        raise_for_decision(final)
        return GateResult(proposal_id, "LIVE", str(final["decision"]), True, value, final)

    def invoke(self, tool: GatedTool, confidence: float, **kwargs: Any) -> GateResult:
        if tool.is_async:
            raise TypeError(f"{tool.name} is async: use the async Gate")
        return self.call(tool.name, kwargs, confidence, tool.fn, contract=tool.contract)


def connect_sync(url: str, token: str, *, agent: str) -> SyncGate:
    """`with connect_sync(url, token, agent="a") as gate:`"""
    return SyncGate(url, token, agent=agent)
