"""Conflict detection for a stream of proposals: a dependency can be met by an earlier proposal.

In a plan, `msgraph_send_email` needs `msgraph_get_user` and `msgraph_create_draft` to run
before it in the plan. A live agent proposes one call at a time, so each proposal is a
one-action plan; the same ORDERING rule applies with "before" meaning an earlier proposal
of the same agent that completed. Everything else (and the resolution) is the plan code.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from core.conflicts import Conflict, ConflictResolver
from core.contracts import ToolContract, ToolContractRegistry
from core.plans import ToolExecutionPlan


class StreamConflictResolver(ConflictResolver):
    """`ConflictResolver` that remembers which tools each agent has completed."""

    def __init__(self, registry: ToolContractRegistry, **options: Any) -> None:
        super().__init__(registry, **options)
        self.completed: defaultdict[str, set[str]] = defaultdict(set)

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
