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
    checked,
    failure_body,
    outcome_body,
    proposal_body,
)
from phase24_sdk.errors import GateTimeout, raise_for_decision

RETRIES = 3


class SyncGate:
    """One agent's connection to a gate service (blocking)."""

    def __init__(self, url: str, token: str, *, agent: str, transport: httpx.BaseTransport | None = None) -> None:
        self.agent = agent
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0),
            transport=transport,
        )

    def __enter__(self) -> SyncGate:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(RETRIES):
            try:
                return checked(self._http.request(method, path, **kwargs))
            except httpx.ConnectError:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
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
    ) -> str:
        body = proposal_body(
            self.agent, tool, args, confidence, plan_id=plan_id, action_id=action_id, contract=contract
        )
        return str(self._send("POST", "/v1/proposals", json=body)["proposal_id"])

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
        return self._send("POST", f"/v1/grants/{grant_id}/outcome", json={"ok": ok, "result": result, "error": error})

    def call(
        self,
        tool: str,
        args: dict[str, Any],
        confidence: float,
        fn: Callable[..., Any] | None = None,
        *,
        contract: Contract | None = None,
        plan_id: str | None = None,
        action_id: str | None = None,
        decision_timeout_s: float | None = None,
    ) -> GateResult:
        """As `Gate.call`: `fn(**args)` runs only on a LIVE grant; denials raise."""
        proposal_id = self.propose(tool, args, confidence, plan_id=plan_id, action_id=action_id, contract=contract)
        status = self.wait(proposal_id, decision_timeout_s)
        raise_for_decision(status)
        grant_id = status.get("grant_id")
        if grant_id is None:
            value = status.get("result") if status.get("executed_by") == "service" else None
            return GateResult(proposal_id, status.get("mode"), str(status["decision"]), False, value, status)
        if fn is None:
            self.report(grant_id, False, error="the caller gave no function to run")
            raise ValueError(f"{tool} was granted LIVE but no function was given to run it")
        try:
            value = fn(**args)
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
