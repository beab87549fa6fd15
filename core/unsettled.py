"""Which LIVE effects of this process have no durably recorded outcome.

Wraps the intent ledger the controller writes to. An intent that was recorded and whose
outcome could not be (the journal failed in between, or the process is still unwinding an
error) is UNKNOWN: the effect may or may not have happened. A storage-failure report names
each of them, so a failed write never reads as success.
"""

from __future__ import annotations

from typing import Any

from core.controller import IntentLedger


class UnsettledIntents:
    """An `IntentLedger` that remembers the intents still waiting for their outcome."""

    def __init__(self, inner: IntentLedger) -> None:
        self.inner = inner
        self._open: dict[str, dict[str, Any]] = {}

    def record_intent(
        self, action_hash: str, plan_id: str, action_id: str, agent: str, tool: str, approval_id: str | None
    ) -> None:
        self.inner.record_intent(action_hash, plan_id, action_id, agent, tool, approval_id)
        self._open[action_hash] = {
            "action_hash": action_hash,
            "plan_id": plan_id,
            "action_id": action_id,
            "agent": agent,
            "tool": tool,
        }

    def record_outcome(self, action_hash: str, success: bool) -> None:
        self.inner.record_outcome(action_hash, success)
        self._open.pop(action_hash, None)

    def record_unknown(self, action_hash: str) -> None:
        self.inner.record_unknown(action_hash)
        self._open.pop(action_hash, None)  # settled as UNKNOWN: reported with the unknown outcomes

    def intent_status(self, action_hash: str) -> str | None:
        return self.inner.intent_status(action_hash)

    def unsettled(self) -> list[dict[str, Any]]:
        """Intents recorded by this process whose outcome is not recorded, oldest first."""
        return list(self._open.values())
