"""What a row of the console links to: an action's hash, its approval request and decision,
its conflicts. Filled from the rare events (approvals, intents, conflicts), bounded."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from core.events import (
    ApprovalDecided,
    ApprovalRequested,
    ConflictDetected,
    ConflictResolved,
    Event,
    IntentRecorded,
)

MAX_ACTIONS = 10_000
MAX_CONFLICTS = 2_000

ActionKey = tuple[str, str]  # (plan_id, action_id)


@dataclass
class ActionLinks:
    action_hash: str = ""
    requests: list[ApprovalRequested] = field(default_factory=list)
    decisions: list[ApprovalDecided] = field(default_factory=list)
    conflict_ids: list[str] = field(default_factory=list)


class RelatedIndex:
    """Links between rows, keyed by (plan, action) and by conflict id."""

    def __init__(self) -> None:
        self.actions: OrderedDict[ActionKey, ActionLinks] = OrderedDict()
        self.conflicts: OrderedDict[str, tuple[ConflictDetected, ConflictResolved | None]] = OrderedDict()

    def _links(self, plan_id: str, action_id: str) -> ActionLinks:
        key = (plan_id, action_id)
        links = self.actions.get(key)
        if links is None:
            links = self.actions[key] = ActionLinks()
            while len(self.actions) > MAX_ACTIONS:
                self.actions.popitem(last=False)
        return links

    def add(self, event: Event) -> None:
        if isinstance(event, ApprovalRequested):
            links = self._links(event.plan_id, event.action_id)
            links.requests.append(event)
            links.action_hash = links.action_hash or event.action_hash
        elif isinstance(event, ApprovalDecided):
            links = self._links(event.plan_id, event.action_id)
            links.decisions.append(event)
            links.action_hash = links.action_hash or event.original_action_hash or event.action_hash
        elif isinstance(event, IntentRecorded):
            self._links(event.plan_id, event.action_id).action_hash = event.action_hash
        elif isinstance(event, ConflictDetected):
            self.conflicts[event.conflict_id] = (event, None)
            while len(self.conflicts) > MAX_CONFLICTS:
                self.conflicts.popitem(last=False)
            for action_id in event.action_ids:
                self._links(event.plan_id, action_id).conflict_ids.append(event.conflict_id)
        elif isinstance(event, ConflictResolved):
            found = self.conflicts.get(event.conflict_id)
            if found is not None:
                self.conflicts[event.conflict_id] = (found[0], event)

    def for_action(self, plan_id: str, action_id: str) -> ActionLinks:
        return self.actions.get((plan_id, action_id)) or ActionLinks()

    def related(self, event: Event) -> list[Event]:
        """The rows `event` links to: its conflicts, its approval request and decision (or,
        for a conflict, its resolution; for a decision, its request)."""
        out: list[Event] = []
        if isinstance(event, (ConflictDetected, ConflictResolved)):
            found = self.conflicts.get(event.conflict_id)
            if found is not None:
                out.extend(e for e in found if e is not None and e is not event)
            return out
        plan_id = getattr(event, "plan_id", None)
        action_id = getattr(event, "action_id", None)
        if not isinstance(plan_id, str) or not isinstance(action_id, str):
            return out
        links = self.for_action(plan_id, action_id)
        for conflict_id in links.conflict_ids:
            found = self.conflicts.get(conflict_id)
            if found is not None:
                out.append(found[1] or found[0])
        out.extend(e for e in links.requests if e is not event)
        out.extend(e for e in links.decisions if e is not event)
        return out
