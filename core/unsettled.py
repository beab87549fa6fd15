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
        # Outcomes recorded but maybe not committed yet (the journal groups commits): with
        # the journal sequence number at which each was recorded.
        self._settling: dict[str, tuple[int, dict[str, Any]]] = {}

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
        self._settled(action_hash)

    def record_unknown(self, action_hash: str) -> None:
        self.inner.record_unknown(action_hash)
        self._settled(action_hash)  # settled as UNKNOWN: reported with the unknown outcomes

    def _settled(self, action_hash: str) -> None:
        intent = self._open.pop(action_hash, None)
        seq = getattr(self.inner, "last_seq", None)
        if intent is None or seq is None:
            return
        if len(self._settling) >= 256:
            committed = self._committed_seq()
            self._settling = {h: (s, i) for h, (s, i) in self._settling.items() if s > committed}
        self._settling[action_hash] = (seq, intent)

    def _committed_seq(self) -> int:
        committed = getattr(self.inner, "committed_seq", None)
        return committed if isinstance(committed, int) else 0

    def intent_status(self, action_hash: str) -> str | None:
        return self.inner.intent_status(action_hash)

    def unsettled(self) -> list[dict[str, Any]]:
        """Intents recorded by this process whose outcome is not recorded, oldest first."""
        committed = self._committed_seq()
        lost = [intent for seq, intent in self._settling.values() if seq > committed]
        return lost + list(self._open.values())
