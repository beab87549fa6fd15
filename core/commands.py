"""The one command port of the gate: decide, lock, unlock, pause, resume.

Every way an operator acts on a running gate (the HTTP API, an attached console) goes
through `GateCommands`, so each command is checked, applied by the same core code as the
console's keys, and durably committed before the caller is told it happened.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from core.approval import ApprovalOutcome, deny, grant
from core.errors import Phase24Error
from core.gate_service import GateRequestRefused, GateService

DECISION_WAIT_S = 5.0


class CommandPort(Protocol):
    async def decide(
        self,
        request_id: str,
        approve: bool,
        reason: str,
        by: str,
        *,
        stop_agent: bool = False,
        edited_args: dict[str, Any] | None = None,
        args_fully_visible: bool | None = None,
    ) -> dict[str, Any]: ...

    async def lock(self, reason: str, by: str) -> dict[str, Any]: ...

    async def unlock(self, reason: str, by: str) -> dict[str, Any]: ...

    async def pause(self, by: str) -> dict[str, Any]: ...

    async def resume(self, by: str) -> dict[str, Any]: ...


class GateCommands:
    """`CommandPort` over a `GateService` running on the caller's event loop."""

    def __init__(self, service: GateService) -> None:
        self.service = service

    async def decide(
        self,
        request_id: str,
        approve: bool,
        reason: str,
        by: str,
        *,
        stop_agent: bool = False,
        edited_args: dict[str, Any] | None = None,
        args_fully_visible: bool | None = None,
    ) -> dict[str, Any]:
        """Answer one pending approval; returns the decision as the core recorded it.

        The core checks the answer again (bound to the action's hash, unused, unexpired,
        unlocked), so the recorded decision can be a refusal of an approve.
        """
        service = self.service
        request = next((r for r in service.approvals.pending if r.request_id == request_id), None)
        if request is None:
            raise GateRequestRefused("not_found", f"no pending approval request {request_id!r}")
        waiter = service.request_waiter(request_id)
        if approve:
            answer = grant(request, by, reason, edited_args=edited_args, args_fully_visible=args_fully_visible)
        else:
            answer = deny(
                request,
                by,
                reason or "denied by the operator",
                outcome=ApprovalOutcome.DENIED_AND_STOPPED if stop_agent else ApprovalOutcome.DENIED,
                args_fully_visible=args_fully_visible,
            )
        if not service.approvals.answer(answer):
            raise GateRequestRefused("conflict", f"approval request {request_id!r} is no longer pending")
        try:
            await asyncio.wait_for(waiter.wait(), DECISION_WAIT_S)
        except TimeoutError:
            raise GateRequestRefused("unavailable", "the core did not record the decision in time") from None
        await self._commit()
        record = service.decision_of(request_id)
        return {
            "request_id": request_id,
            "approved": record.approved if record else approve,
            "decided_by": record.decided_by if record else by,
            "reason": record.reason if record else reason,
        }

    async def lock(self, reason: str, by: str) -> dict[str, Any]:
        self.service.lock(reason or "locked by the operator", by)
        await self._commit()
        return self._lock_state()

    async def unlock(self, reason: str, by: str) -> dict[str, Any]:
        self.service.unlock(reason or "unlocked by the operator", by)
        await self._commit()
        return self._lock_state()

    async def pause(self, by: str) -> dict[str, Any]:
        self.service.pause(by)
        await asyncio.sleep(0)  # the RunPaused event is published on the loop's next turn
        await self._commit()
        return {"paused": self.service.paused}

    async def resume(self, by: str) -> dict[str, Any]:
        self.service.resume(by)
        await asyncio.sleep(0)
        await self._commit()
        return {"paused": self.service.paused}

    def _lock_state(self) -> dict[str, Any]:
        return {"locked": self.service.locked, "reason": self.service.lock_reason}

    async def _commit(self) -> None:
        try:
            await self.service.bus.barrier()
        except Phase24Error as exc:
            raise GateRequestRefused("unavailable", f"the journal could not record it: {exc}") from None
