"""What a gate call does, written once for both clients.

Each operation is a generator that yields the steps it needs and gets their results back:
`Send` (one HTTP request to the service; the result is the decoded JSON answer) and `Run` (the
caller's function; the result is its return value). The async client (`Gate`) and the sync
one (`SyncGate`) only drive these flows (`drive`): they differ in how they send a request,
sleep between retries and run the caller's function, not in what a call means. An exception
from a step is thrown back into the flow at that step, so the flow's own `try` sees it (a
failing function is reported to the gate, then re-raised).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from phase24_sdk.calls import (
    LONG_POLL_S,
    Contract,
    GateResult,
    failure_body,
    granted_args,
    outcome_body,
    proposal_body,
)
from phase24_sdk.errors import GateTimeout, raise_for_decision


@dataclass(frozen=True)
class Send:
    """One request: `method path` with a JSON `body`, `params` and a read `timeout`."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, float] | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Run:
    """The caller's function on the granted arguments (a coroutine is awaited by `Gate`)."""

    fn: Callable[..., Any]
    args: dict[str, Any]


Flow = Generator[Send | Run, Any, Any]


@dataclass(frozen=True)
class Proposal:
    """What an agent proposes (the body of `POST /v1/proposals`, less the agent)."""

    tool: str
    args: dict[str, Any]
    confidence: float
    plan_id: str | None = None
    action_id: str | None = None
    contract: Contract | None = None
    resource: str | None = None

    def body(self, agent: str) -> dict[str, Any]:
        return proposal_body(
            agent,
            self.tool,
            self.args,
            self.confidence,
            plan_id=self.plan_id,
            action_id=self.action_id,
            contract=self.contract,
            resource=self.resource,
        )


def propose(agent: str, proposal: Proposal) -> Flow:
    answer = yield Send("POST", "/v1/proposals", proposal.body(agent))
    return str(answer["proposal_id"])


def status(proposal_id: str, wait_s: float = 0.0) -> Flow:
    return (yield Send("GET", f"/v1/proposals/{proposal_id}", params={"wait": wait_s}, timeout=wait_s + 10.0))


def wait(proposal_id: str, timeout_s: float | None = None) -> Flow:
    """Long-poll until the proposal is decided (or `timeout_s` passes: GateTimeout)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = LONG_POLL_S if deadline is None else min(LONG_POLL_S, deadline - time.monotonic())
        answer = yield from status(proposal_id, max(0.0, left))
        if answer.get("decided"):
            return answer
        if deadline is not None and time.monotonic() >= deadline:
            raise GateTimeout(f"proposal {proposal_id} not decided within {timeout_s:g}s", answer)


def propose_and_wait(agent: str, proposal: Proposal, timeout_s: float | None = None) -> Flow:
    """Propose and wait for the decision in one request (`POST /v1/proposals?wait=S`); a
    decision that takes longer than one long-poll goes on with `GET .../{id}?wait=S`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    first = LONG_POLL_S if timeout_s is None else max(0.0, min(LONG_POLL_S, timeout_s))
    answer = yield Send("POST", "/v1/proposals", proposal.body(agent), params={"wait": first}, timeout=first + 10.0)
    if answer.get("decided"):
        return answer
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    return (yield from wait(str(answer["proposal_id"]), left))


def report(grant_id: str, ok: bool, result: dict[str, Any] | None = None, error: str | None = None) -> Flow:
    return (yield Send("POST", f"/v1/grants/{grant_id}/outcome", {"ok": ok, "result": result, "error": error}))


def call(
    agent: str, proposal: Proposal, fn: Callable[..., Any] | None, decision_timeout_s: float | None = None
) -> Flow:
    """Propose, wait for the decision, run `fn(**args)` only on a LIVE grant (with the
    operator's edit when there was one), report its outcome; a refusal raises."""
    answer = yield from propose_and_wait(agent, proposal, decision_timeout_s)
    proposal_id = str(answer["proposal_id"])
    raise_for_decision(answer)
    grant_id = answer.get("grant_id")
    if grant_id is None:
        value = answer.get("result") if answer.get("executed_by") == "service" else None
        return GateResult(proposal_id, answer.get("mode"), str(answer["decision"]), False, value, answer)
    if fn is None:
        yield from report(grant_id, False, error="the caller gave no function to run")
        raise ValueError(f"{proposal.tool} was granted LIVE but no function was given to run it")
    try:
        value = yield Run(fn, granted_args(answer, proposal.args))
    except Exception as exc:
        yield from report(grant_id, **failure_body(exc))
        raise
    final = yield from report(grant_id, **outcome_body(value))
    raise_for_decision(final)
    return GateResult(proposal_id, "LIVE", str(final["decision"]), True, value, final)
