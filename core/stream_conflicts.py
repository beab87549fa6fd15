"""Conflict detection for a stream of proposals: a dependency can be met by an earlier proposal.

In a plan, `msgraph_send_email` needs `msgraph_get_user` and `msgraph_create_draft` to run
before it in the plan. A live agent proposes one call at a time, so each proposal is a
one-action plan; the same ORDERING rule applies with "before" meaning an earlier proposal
of the same agent that completed. Everything else (and the resolution) is the plan code.

RESOURCE across proposals: in a plan, actions of different agents on one resource are
serialised. Across a stream, a proposal that names a `resource` while proposals of other
agents on it are pending or running (entered earlier, not finished) is the same RESOURCE
conflict, resolved the same way (DELAY): it waits until those have finished. Proposals of
one agent on one resource do not conflict, as in a plan.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core.conflicts import Conflict, ConflictResolver, ConflictType, Resolution, ResolutionStrategy
from core.contracts import ToolContract, ToolContractRegistry
from core.plans import ToolExecutionPlan


class StreamConflictResolver(ConflictResolver):
    """`ConflictResolver` that remembers which tools each agent has completed."""

    def __init__(self, registry: ToolContractRegistry, **options: Any) -> None:
        super().__init__(registry, **options)
        self.completed: defaultdict[str, set[str]] = defaultdict(set)
        # resource -> the proposals on it not finished yet: plan_id -> (agent, action_id), in arrival order
        self.on_resource: dict[str, dict[str, tuple[str, str]]] = {}

    def record_completed(self, agent: str, tool: str) -> None:
        self.completed[agent].add(tool)

    def _detect_ordering(
        self, plan: ToolExecutionPlan, contracts: dict[str, ToolContract], doomed: set[str]
    ) -> list[Conflict]:
        if len(plan.actions) != 1:
            return super()._detect_ordering(plan, contracts, doomed)
        action = plan.actions[0]
        done = self.completed.get(action.agent, set())
        return [
            self._ordering_conflict(plan, action, dependency, {})
            for dependency in contracts[action.tool].dependencies
            if dependency not in done
        ]

    # -- RESOURCE across proposals ---------------------------------------------------------

    def enter(self, resource: str, plan_id: str, agent: str, action_id: str) -> list[tuple[str, str, str]]:
        """A proposal on `resource` arrived; returns the earlier unfinished ones of other
        agents on it, (plan_id, agent, action_id), oldest first: what it must wait for."""
        holders = self.on_resource.setdefault(resource, {})
        before = [(pid, other, aid) for pid, (other, aid) in holders.items() if other != agent]
        holders[plan_id] = (agent, action_id)
        return before

    def leave(self, resource: str, plan_id: str) -> None:
        """The proposal finished (whatever its outcome)."""
        holders = self.on_resource.get(resource)
        if holders is not None:
            holders.pop(plan_id, None)
            if not holders:
                del self.on_resource[resource]

    def cross_resource_conflict(
        self, plan_id: str, agent: str, action_id: str, tool: str, resource: str, before: list[tuple[str, str, str]]
    ) -> tuple[Conflict, Resolution]:
        """The RESOURCE conflict of a proposal that must wait, and its DELAY resolution
        (numbered, counted and kept in the history like a plan's)."""
        agents = sorted({agent, *(other for _, other, _ in before)})
        waits_for = ", ".join(pid for pid, _, _ in before)
        conflict = self._new_conflict(
            plan_id,
            ConflictType.RESOURCE,
            agents,
            tool,
            resource,
            [*(aid for _, _, aid in before), action_id],
            f"resource {resource} is used by {len(before) + 1} proposals of {len(agents)} agents ({', '.join(agents)})",
        )
        resolution = Resolution(
            conflict_id=conflict.conflict_id,
            conflict_type=ConflictType.RESOURCE,
            strategy=ResolutionStrategy.DELAY,
            outcome=f"serialised on resource {resource}: {action_id} waits for {waits_for}",
            action_ids=[action_id],
        )
        self._by_strategy[ResolutionStrategy.DELAY] += 1
        self._attach({conflict.conflict_id: resolution})
        return conflict, resolution
