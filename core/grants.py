"""Single-use LIVE grants for tools the agent executes itself, and their leases.

A tool the service has no executor for is run by the agent: when the controller takes such
an action LIVE (after its intent is durable, and its approval when it needs one), the
`AgentExecutor` hands out a grant and waits for the agent to report the outcome. A grant
is used once; an outcome that does not come back within the lease leaves the intent
UNKNOWN in the journal, shown to the operator and never granted again.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from core.bindings import ExecutionOutcome, ModeImplementation, ToolBinding, ToolCall
from core.clock import Clock
from core.controller import IntentLedger
from core.errors import Phase24Error
from core.events import EventBus, GrantIssued, GrantOutcome
from core.journal import Journal
from core.plans import PlannedAction

GrantStatus = Literal["OUT", "DONE", "FAILED", "UNKNOWN"]


class GrantRefused(Phase24Error):
    """An outcome report the gate does not accept: `reason` is one of not_found, forbidden, conflict."""

    def __init__(self, reason: Literal["not_found", "forbidden", "conflict"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Grant:
    grant_id: str
    proposal_id: str
    plan_id: str
    action_id: str
    agent: str
    tool: str
    issued_at: float
    args: dict[str, Any] = field(default_factory=dict)
    """Exactly the arguments the grant is for (the operator's edited ones, when edited)."""
    status: GrantStatus = "OUT"
    result: dict[str, Any] | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class LeasedIntentLedger:
    """The journal as the controller's intent ledger, aware of grants that became UNKNOWN.

    The controller settles every recorded intent after the LIVE run; an intent whose grant
    ran out of lease is UNKNOWN (nobody knows whether the effect happened), so that outcome
    is not written over it.
    """

    def __init__(self, journal: Journal, inner: IntentLedger | None = None) -> None:
        """`inner` records intents and outcomes (by default the journal itself; the harness
        passes its ledger that remembers unsettled intents for the storage-failure report)."""
        self.journal = journal
        self.inner: IntentLedger = inner if inner is not None else journal
        self._keys: dict[str, str] = {}
        self._unknown: set[str] = set()

    def record_intent(
        self, action_hash: str, plan_id: str, action_id: str, agent: str, tool: str, approval_id: str | None
    ) -> None:
        self.inner.record_intent(action_hash, plan_id, action_id, agent, tool, approval_id)
        self._keys[plan_id] = action_hash

    def record_outcome(self, action_hash: str, success: bool) -> None:
        if action_hash in self._unknown:
            self._unknown.discard(action_hash)
            return
        self.inner.record_outcome(action_hash, success)

    def record_unknown(self, action_hash: str) -> None:
        if action_hash in self._unknown:  # the lease already marked it UNKNOWN, durably
            self._unknown.discard(action_hash)
            return
        self.inner.record_unknown(action_hash)

    def intent_status(self, action_hash: str) -> str | None:
        return self.inner.intent_status(action_hash)

    def mark_unknown(self, plan_id: str) -> bool:
        """Durably mark the plan's PENDING intent UNKNOWN; False if it recorded none (read-only tools)."""
        key = self._keys.pop(plan_id, None)
        if key is None:
            return False
        self.journal.mark_intent_unknown(key)
        self._unknown.add(key)
        return True


class GrantBook:
    """The grants handed out, by id; issues them, takes reports, expires leases."""

    def __init__(self, bus: EventBus, clock: Clock, *, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        self.bus = bus
        self.clock = clock
        self.lease_s = lease_s
        self.ledger: LeasedIntentLedger | None = None
        self._owners: dict[tuple[str, str], tuple[str, str]] = {}
        self._grants: dict[str, Grant] = {}
        self._ids = itertools.count(1)

    def expect(self, agent: str, action_id: str, proposal_id: str, plan_id: str) -> None:
        """Note which proposal an agent-executed action belongs to (before it runs)."""
        self._owners[(agent, action_id)] = (proposal_id, plan_id)

    def get(self, grant_id: str) -> Grant | None:
        return self._grants.get(grant_id)

    @property
    def outstanding(self) -> list[Grant]:
        return [g for g in self._grants.values() if g.status == "OUT"]

    def issue(self, action: PlannedAction) -> Grant:
        proposal_id, plan_id = self._owners.pop((action.agent, action.id))
        grant = Grant(
            grant_id=f"{self.bus.run_id}:G{next(self._ids)}",
            proposal_id=proposal_id,
            plan_id=plan_id,
            action_id=action.id,
            agent=action.agent,
            tool=action.tool,
            issued_at=self.clock.monotonic(),
            args=dict(action.args),
        )
        self._grants[grant.grant_id] = grant
        self.bus.emit(
            GrantIssued,
            grant_id=grant.grant_id,
            proposal_id=proposal_id,
            plan_id=plan_id,
            action_id=action.id,
            agent=action.agent,
            tool=action.tool,
            lease_s=self.lease_s,
        )
        return grant

    def report(self, grant_id: str, agent: str, ok: bool, result: dict[str, Any] | None, error: str | None) -> Grant:
        """The agent's outcome for its own grant; used once. A late report is recorded, refused."""
        grant = self._grants.get(grant_id)
        if grant is None:
            raise GrantRefused("not_found", f"no grant {grant_id!r}")
        if grant.agent != agent:
            raise GrantRefused("forbidden", f"grant {grant_id!r} belongs to another agent")
        if grant.status == "UNKNOWN":
            self._publish(grant, "LATE", error, result)
            raise GrantRefused(
                "conflict", f"grant {grant_id!r} expired: its outcome is UNKNOWN and left to the operator"
            )
        if grant.status != "OUT":
            raise GrantRefused("conflict", f"grant {grant_id!r} was already used (outcome {grant.status})")
        grant.status = "DONE" if ok else "FAILED"
        grant.result, grant.error = result, error
        self._publish(grant, grant.status, error, result)
        grant.done.set()
        return grant

    def expire(self, grant: Grant, why: str) -> None:
        """The lease ran out (or the service stops): the outcome is UNKNOWN, never re-granted."""
        if grant.status != "OUT":
            return
        grant.status = "UNKNOWN"
        grant.error = why
        if self.ledger is not None:
            self.ledger.mark_unknown(grant.plan_id)
        self._publish(grant, "UNKNOWN", why, None)
        grant.done.set()

    def expire_all(self, why: str) -> None:
        for grant in self.outstanding:
            self.expire(grant, why)

    def _publish(self, grant: Grant, status: str, error: str | None, result: dict[str, Any] | None) -> None:
        self.bus.emit(
            GrantOutcome,
            grant_id=grant.grant_id,
            proposal_id=grant.proposal_id,
            agent=grant.agent,
            tool=grant.tool,
            status=status,
            error=error,
            result=result,
        )


class AgentExecutor:
    """The implementations of a tool the agent runs itself, as a tool binding.

    MOCK and DRY_RUN run nothing (the gate only checks the proposal as it climbs; the
    outputs say `simulated: false` and the output names the agent as executor); LIVE hands
    out a grant and waits for its outcome until the lease runs out (then UNKNOWN).
    """

    simulated = False

    def __init__(self, book: GrantBook) -> None:
        self.book = book

    def binding(self, tool: str, *, compensable: bool) -> ToolBinding:
        """`compensable`: the tool's contract says it can be undone (then the gate can only
        report that it cannot undo an agent's own effect)."""
        return ToolBinding(
            tool=tool,
            mock=_checked_only("MOCK"),
            dry_run=_checked_only("DRY_RUN"),
            live=self._live,
            compensate=self._compensate if compensable else None,
            simulated=False,
            backend="agent",
        )

    async def _live(self, call: ToolCall) -> ExecutionOutcome:
        book = self.book
        grant = book.issue(call.action)
        try:
            await asyncio.wait_for(grant.done.wait(), book.lease_s)
        except TimeoutError:
            book.expire(grant, f"no outcome reported within the {book.lease_s:g}s lease")
        duration = round((book.clock.monotonic() - grant.issued_at) * 1000.0, 3)
        if grant.status == "DONE":
            return ExecutionOutcome(success=True, duration_ms=duration, output=grant.result or {}, simulated=False)
        if grant.status == "UNKNOWN":
            return ExecutionOutcome(
                success=False,
                duration_ms=duration,
                error=f"outcome UNKNOWN: {grant.error}",
                simulated=False,
                effect_unknown=True,
            )
        error = grant.error or "the agent reported a failure"
        return ExecutionOutcome(success=False, duration_ms=duration, error=error, simulated=False)

    async def _compensate(self, call: ToolCall) -> ExecutionOutcome:
        return ExecutionOutcome(
            success=False,
            duration_ms=0.0,
            error="an agent-executed tool cannot be compensated by the gate",
            simulated=False,
        )


def _checked_only(mode: str) -> ModeImplementation:
    async def step(call: ToolCall) -> ExecutionOutcome:
        return ExecutionOutcome(
            success=True,
            duration_ms=0.0,
            output={"executed_by": "agent", "mode": mode, "effect": "none: checked by the gate only"},
            simulated=False,
        )

    return step
