"""Detect conflicts between agents' planned tool calls and decide how to resolve each one.

Detection groups actions with dictionaries (no all-pairs scan), so it stays near-linear in
the number of actions; the resulting `ResolutionPlan` is what the orchestrator enforces.
"""

from __future__ import annotations

import gc
import json
import random
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict

from core.contracts import ExecutionMode, ToolContract, ToolContractRegistry
from core.plans import PlannedAction, ToolExecutionPlan

SUMMARY_CONFLICT_LIMIT = 1000


class ConflictType(StrEnum):
    RESOURCE = "RESOURCE"
    ORDERING = "ORDERING"
    RATE_LIMIT = "RATE_LIMIT"
    DUPLICATE_ACTION = "DUPLICATE_ACTION"
    PERMISSION = "PERMISSION"
    TIMEOUT = "TIMEOUT"


class ResolutionStrategy(StrEnum):
    DELAY = "DELAY"
    REASSIGN = "REASSIGN"
    DOWNGRADE = "DOWNGRADE"
    ABORT = "ABORT"


#: The order in which conflicts are resolved (and detected conflicts are listed).
RESOLUTION_ORDER: tuple[ConflictType, ...] = (
    ConflictType.DUPLICATE_ACTION,
    ConflictType.PERMISSION,
    ConflictType.ORDERING,
    ConflictType.RESOURCE,
    ConflictType.RATE_LIMIT,
)
_RANK = {t: i for i, t in enumerate(RESOLUTION_ORDER)}
_Outcome: TypeAlias = tuple[ResolutionStrategy, str, list[str]]


class Conflict(BaseModel):
    """One conflict found in a plan (or at runtime, for TIMEOUT).

    For ORDERING, `action_ids` is `[earlier provider, dependent]` or just `[dependent]`
    when no action of the needed tool comes earlier, and `dependency` names that tool.
    """

    model_config = ConfigDict(frozen=True)

    conflict_id: str
    plan_id: str
    conflict_type: ConflictType
    agents: list[str]
    tool: str
    resource: str | None
    action_ids: list[str]
    detail: str
    dependency: str | None = None


class Resolution(BaseModel):
    """How one conflict was resolved; `action_ids` are the actions the resolution changes."""

    model_config = ConfigDict(frozen=True)

    conflict_id: str
    conflict_type: ConflictType
    strategy: ResolutionStrategy
    outcome: str
    action_ids: list[str]


@dataclass
class ResolutionPlan:
    """Everything the orchestrator applies before and while executing a plan."""

    aborted: dict[str, str] = field(default_factory=dict)
    reassigned: dict[str, str] = field(default_factory=dict)
    mode_caps: dict[str, ExecutionMode] = field(default_factory=dict)
    extra_dependencies: dict[str, set[str]] = field(default_factory=dict)
    serialised_resources: set[str] = field(default_factory=set)
    tool_limits: dict[str, int] = field(default_factory=dict)

    def agent_for(self, action: PlannedAction) -> str:
        """The agent that runs `action` after reassignments."""
        return self.reassigned.get(action.id, action.agent)

    def cap(self, action_id: str, mode: ExecutionMode) -> None:
        """Lower the highest mode `action_id` may reach to `mode` (never raises a cap)."""
        current = self.mode_caps.get(action_id)
        self.mode_caps[action_id] = mode if current is None else ExecutionMode.lowest(current, mode)

    def wait(self, action_id: str, on: str) -> None:
        """Make `action_id` wait for `on`."""
        self.extra_dependencies.setdefault(action_id, set()).add(on)


#: json.dumps(args, sort_keys=True, separators=(",", ":"), default=str), built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_args(args: dict[str, Any]) -> str:
    """The key used to compare two calls' arguments."""
    if not args:
        return "{}"
    try:
        return _CANONICAL.encode(args)
    except (TypeError, ValueError):  # non-string nested keys, circular values
        return repr(sorted(args.items(), key=lambda kv: kv[0]))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk build of acyclic objects.

    Detection and resolution allocate one or two small objects per conflict; on a large
    plan, collections triggered by those allocations would rescan the whole heap and
    roughly double the run time. Reference counting still frees everything.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ConflictResolver:
    """Finds RESOURCE, ORDERING, RATE_LIMIT, DUPLICATE_ACTION, PERMISSION and TIMEOUT conflicts."""

    def __init__(
        self,
        registry: ToolContractRegistry,
        rng: random.Random | None = None,
        delay_range_s: tuple[float, float] = (5.0, 15.0),
        max_timeout_retries: int = 1,
        history_limit: int = 10_000,
    ) -> None:
        low, high = delay_range_s
        if not 0.0 <= low <= high < float("inf"):
            raise ValueError(f"delay_range_s must satisfy 0 <= low <= high, got {delay_range_s}")
        if max_timeout_retries < 0:
            raise ValueError("max_timeout_retries must be >= 0")
        if history_limit < 1:
            raise ValueError("history_limit must be >= 1")
        self.registry = registry
        self.rng = rng if rng is not None else random.Random()
        self.delay_range_s = (float(low), float(high))
        self.max_timeout_retries = max_timeout_retries
        self.history: deque[tuple[Conflict, Resolution | None]] = deque(maxlen=history_limit)
        self.active_tools: dict[str, set[str]] = {}
        self.rate_limit_state: dict[str, int] = {}
        self.concurrency_limits: dict[str, int] = {}
        self._holds: Counter[tuple[str, str]] = Counter()
        self._by_type: Counter[ConflictType] = Counter()
        self._by_strategy: Counter[ResolutionStrategy] = Counter()
        self._issued = 0

    # -- contracts and runtime bookkeeping ------------------------------------------------

    @property
    def dependency_graph(self) -> dict[str, tuple[str, ...]]:
        """Tool -> the tools that must run before it, for every tool that has dependencies."""
        graph: dict[str, tuple[str, ...]] = {}
        for name in self.registry.names:
            dependencies = self.registry.get(name).dependencies
            if dependencies:
                graph[name] = dependencies
        return graph

    def register_tools(self, tool_names: Iterable[str]) -> None:
        """Track these tools; an unknown tool raises ContractError (nothing is registered)."""
        contracts = [self.registry.get(name) for name in tool_names]
        for contract in contracts:
            self.rate_limit_state.setdefault(contract.name, 0)
            self.active_tools.setdefault(contract.name, set())
            self.concurrency_limits[contract.name] = contract.max_concurrency

    def acquire(self, tool: str, agent: str) -> None:
        """Record that `agent` started an execution of `tool`."""
        self._holds[(tool, agent)] += 1
        self.active_tools.setdefault(tool, set()).add(agent)
        self.rate_limit_state[tool] = self.rate_limit_state.get(tool, 0) + 1

    def release(self, tool: str, agent: str) -> None:
        """Record that one execution of `tool` by `agent` ended; releasing nothing is a no-op."""
        key = (tool, agent)
        held = self._holds.get(key, 0)
        if held <= 0:
            return
        if held == 1:
            del self._holds[key]
            self.active_tools.get(tool, set()).discard(agent)
        else:
            self._holds[key] = held - 1
        self.rate_limit_state[tool] = max(0, self.rate_limit_state.get(tool, 0) - 1)

    # -- detection ------------------------------------------------------------------------

    def _new_conflict(
        self,
        plan_id: str,
        conflict_type: ConflictType,
        agents: list[str],
        tool: str,
        resource: str | None,
        action_ids: list[str],
        detail: str,
        dependency: str | None = None,
    ) -> Conflict:
        self._issued += 1
        conflict = Conflict(
            conflict_id=f"C{self._issued:04d}",
            plan_id=plan_id,
            conflict_type=conflict_type,
            agents=agents,
            tool=tool,
            resource=resource,
            action_ids=action_ids,
            detail=detail,
            dependency=dependency,
        )
        self._by_type[conflict_type] += 1
        self.history.append((conflict, None))
        return conflict

    def detect_conflicts(self, plan: ToolExecutionPlan) -> list[Conflict]:
        """All pre-execution conflicts of `plan`, listed (and numbered) in resolution order.

        Raises ContractError when the plan names a tool the registry does not know.
        """
        with _gc_paused():
            return self._detect(plan)

    def _detect(self, plan: ToolExecutionPlan) -> list[Conflict]:
        actions = plan.actions
        contracts = {tool: self.registry.get(tool) for tool in {a.tool for a in actions}}
        pid = plan.plan_id
        found: list[Conflict] = []

        by_resource: dict[str, list[PlannedAction]] = {}
        agents_of_tool: dict[str, dict[str, None]] = {}
        actions_of_tool: dict[str, list[str]] = {}
        duplicates: dict[tuple[str, str], list[PlannedAction]] = {}
        irreversible = {tool for tool, c in contracts.items() if not c.reversible}
        for action in actions:
            if action.resource is not None:
                by_resource.setdefault(action.resource, []).append(action)
            agents_of_tool.setdefault(action.tool, {})[action.agent] = None
            actions_of_tool.setdefault(action.tool, []).append(action.id)
            if action.tool in irreversible:
                key = (action.tool, canonical_args(action.args))
                duplicates.setdefault(key, []).append(action)

        doomed: set[str] = set()  # actions the resolution will abort, so they provide nothing
        for (tool, _), group in duplicates.items():
            if len(group) < 2:
                continue
            doomed.update(a.id for a in group[1:])
            resources = {a.resource for a in group}
            found.append(
                self._new_conflict(
                    pid,
                    ConflictType.DUPLICATE_ACTION,
                    sorted({a.agent for a in group}),
                    tool,
                    group[0].resource if len(resources) == 1 else None,
                    [a.id for a in group],
                    f"{len(group)} identical calls of irreversible tool {tool}",
                )
            )

        missing_cache: dict[tuple[str, str], tuple[list[str], bool]] = {}
        declared = plan.agents or {}
        for action in actions if plan.agents is not None else ():
            key = (action.agent, action.tool)
            cached = missing_cache.get(key)
            if cached is None:
                held = plan.permissions_of(action.agent) or ()
                required = contracts[action.tool].required_permissions
                missing = [p for p in required if p not in held]
                stranded = bool(missing) and not any(
                    name != action.agent and all(p in spec.permissions for p in required)
                    for name, spec in declared.items()
                )
                cached = missing_cache[key] = (missing, stranded)
            missing, stranded = cached
            if stranded:
                doomed.add(action.id)
            if missing:
                found.append(
                    self._new_conflict(
                        pid,
                        ConflictType.PERMISSION,
                        [action.agent],
                        action.tool,
                        action.resource,
                        [action.id],
                        f"agent {action.agent} lacks {', '.join(missing)} for {action.tool}",
                    )
                )

        found.extend(self._detect_ordering(plan, contracts, doomed))

        for resource, group in by_resource.items():
            agents = sorted({a.agent for a in group})
            if len(agents) < 2:
                continue
            found.append(
                self._new_conflict(
                    pid,
                    ConflictType.RESOURCE,
                    agents,
                    group[0].tool,
                    resource,
                    [a.id for a in group],
                    f"resource {resource} is used by {len(group)} actions of "
                    f"{len(agents)} agents ({', '.join(agents)})",
                )
            )

        for tool, agent_set in agents_of_tool.items():
            limit = self.concurrency_limits.get(tool, contracts[tool].max_concurrency)
            if len(agent_set) <= limit:
                continue
            found.append(
                self._new_conflict(
                    pid,
                    ConflictType.RATE_LIMIT,
                    sorted(agent_set),
                    tool,
                    None,
                    actions_of_tool[tool],
                    f"{len(agent_set)} agents use {tool}; its contract allows {limit} at a time",
                )
            )
        return found

    def _detect_ordering(
        self, plan: ToolExecutionPlan, contracts: dict[str, ToolContract], doomed: set[str]
    ) -> list[Conflict]:
        """Dependencies not guaranteed to run first.

        A dependency is satisfied when some ancestor of the action, through depends_on and
        each agent's own order, runs the needed tool. Ancestor tools are tracked as bit
        masks over the dependency tools, computed in one pass in topological order. Actions
        that resolution will abort (`doomed`: later duplicates, and actions no agent has
        the permissions for) run nothing, so they never count as providers.
        """
        actions = plan.actions
        needed = sorted({d for c in contracts.values() for d in c.dependencies})
        if not needed:
            return []
        bit = {tool: 1 << i for i, tool in enumerate(needed)}
        own = [0 if a.id in doomed else bit.get(a.tool, 0) for a in actions]
        masks = _ancestor_masks(actions, own, doomed)

        found: list[Conflict] = []
        last_of_tool: dict[str, int] = {}
        for i, action in enumerate(actions):
            for dependency in contracts[action.tool].dependencies:
                if not masks[i] & bit[dependency]:
                    found.append(self._ordering_conflict(plan, action, dependency, last_of_tool))
            if action.id not in doomed:
                last_of_tool[action.tool] = i
        return found

    def _ordering_conflict(
        self,
        plan: ToolExecutionPlan,
        action: PlannedAction,
        dependency: str,
        last_of_tool: dict[str, int],
    ) -> Conflict:
        j = last_of_tool.get(dependency)
        needs = f"{action.id} ({action.tool}, agent {action.agent}) needs {dependency} first"
        if j is None:
            ids = [action.id]
            agents = [action.agent]
            detail = f"{needs}, but no earlier action runs it"
        else:
            provider = plan.actions[j]
            ids = [provider.id, action.id]
            agents = sorted({provider.agent, action.agent})
            detail = f"{needs}; {provider.id} (agent {provider.agent}) runs it but is not ordered before it"
        return self._new_conflict(
            plan.plan_id,
            ConflictType.ORDERING,
            agents,
            action.tool,
            action.resource,
            ids,
            detail,
            dependency,
        )

    # -- resolution -----------------------------------------------------------------------

    def resolve_conflicts(
        self, plan: ToolExecutionPlan, conflicts: list[Conflict]
    ) -> tuple[list[Resolution], ResolutionPlan]:
        """One resolution per conflict (in the order given) and the plan that applies them.

        Conflicts are processed DUPLICATE_ACTION, PERMISSION, ORDERING, RESOURCE, RATE_LIMIT;
        an aborted action gets no other change. Raises ValueError for a conflict of another
        plan, naming an unknown action, or of type TIMEOUT (resolved by `record_timeout`).
        """
        with _gc_paused():
            return self._resolve(plan, conflicts)

    def _resolve(self, plan: ToolExecutionPlan, conflicts: list[Conflict]) -> tuple[list[Resolution], ResolutionPlan]:
        for conflict in conflicts:
            if conflict.plan_id != plan.plan_id:
                raise ValueError(
                    f"conflict {conflict.conflict_id} belongs to plan {conflict.plan_id!r}, not {plan.plan_id!r}"
                )
            if conflict.conflict_type is ConflictType.TIMEOUT:
                raise ValueError(f"conflict {conflict.conflict_id}: TIMEOUT is resolved by record_timeout")
        work = _Resolving(plan, self.registry, self.concurrency_limits, conflicts)
        resolutions: dict[str, Resolution] = {}
        for conflict in sorted(conflicts, key=lambda c: _RANK[c.conflict_type]):
            resolutions[conflict.conflict_id] = work.resolve(conflict)
        work.keep_reassigned_in_order()
        ordered = [resolutions[c.conflict_id] for c in conflicts]
        self._by_strategy.update(r.strategy for r in ordered)
        self._attach(resolutions)
        return ordered, work.result

    def _attach(self, resolutions: dict[str, Resolution]) -> None:
        """Pair resolutions with their conflicts in the history (recent ones sit at the end)."""
        pending = dict(resolutions)
        stash: list[tuple[Conflict, Resolution | None]] = []
        while pending and self.history:
            conflict, resolution = self.history.pop()
            stash.append((conflict, pending.pop(conflict.conflict_id, resolution)))
        self.history.extend(reversed(stash))

    def record_timeout(
        self, plan_id: str, action: PlannedAction, attempt: int
    ) -> tuple[Conflict, Resolution, float | None]:
        """A runtime timeout of `action` on its `attempt`-th try (1-based).

        A reversible tool with `attempt <= max_timeout_retries` is retried after a delay
        (returned, in seconds); anything else is aborted (returns None): an irreversible
        call whose effect is unknown is never repeated.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        contract = self.registry.get(action.tool)
        conflict = self._new_conflict(
            plan_id,
            ConflictType.TIMEOUT,
            [action.agent],
            action.tool,
            action.resource,
            [action.id],
            f"{action.id} ({action.tool}) timed out after {contract.timeout_seconds:g}s on attempt {attempt}",
        )
        delay: float | None
        if contract.reversible and attempt <= self.max_timeout_retries:
            delay = self.rng.uniform(*self.delay_range_s)
            strategy = ResolutionStrategy.DELAY
            outcome = f"retry {action.id} in {delay:.1f}s (attempt {attempt + 1})"
        else:
            delay = None
            strategy = ResolutionStrategy.ABORT
            if contract.reversible:
                outcome = f"aborted {action.id}: {attempt} attempts timed out"
            else:
                outcome = (
                    f"aborted {action.id}: {action.tool} is irreversible and the effect of "
                    "the timed-out call is unknown, so it is not retried"
                )
        resolution = Resolution(
            conflict_id=conflict.conflict_id,
            conflict_type=ConflictType.TIMEOUT,
            strategy=strategy,
            outcome=outcome,
            action_ids=[action.id],
        )
        self._by_strategy[strategy] += 1
        self.history[-1] = (conflict, resolution)
        return conflict, resolution, delay

    # -- reporting ------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        """The report's tool_conflicts.json, plus the most recent conflicts with outcomes."""
        with _gc_paused():
            return self._summary()

    def _summary(self) -> dict[str, object]:
        recent = list(self.history)[-SUMMARY_CONFLICT_LIMIT:]
        return {
            "total_conflicts": sum(self._by_type.values()),
            "by_type": {t.value: self._by_type[t] for t in ConflictType},
            "by_resolution_strategy": {s.value: self._by_strategy[s] for s in ResolutionStrategy},
            "conflicts": [
                {
                    **conflict.model_dump(mode="json"),
                    "strategy": resolution.strategy.value if resolution else None,
                    "outcome": resolution.outcome if resolution else None,
                }
                for conflict, resolution in recent
            ],
        }


def _predecessors(
    actions: Sequence[PlannedAction], agents: Sequence[str], aborted: Container[str] = ()
) -> list[list[int]]:
    """For each action (by index): depends_on targets plus the same agent's previous action.

    An aborted action is cancelled in its agent's queue without waiting for its depends_on.
    """
    index = {a.id: i for i, a in enumerate(actions)} if any(a.depends_on for a in actions) else {}
    last: dict[str, int] = {}
    preds: list[list[int]] = []
    for i, agent in enumerate(agents):
        previous = last.get(agent)
        row = [] if previous is None else [previous]
        depends_on = actions[i].depends_on
        if depends_on and actions[i].id not in aborted:
            row.extend(index[d] for d in depends_on)
        last[agent] = i
        preds.append(row)
    return preds


def _ancestor_masks(actions: Sequence[PlannedAction], own: Sequence[int], aborted: Container[str]) -> list[int]:
    """For each action, the OR of `own` over its ancestors (depends_on and agent order).

    One pass in plan order while every depends_on points backwards; otherwise one pass in
    topological order (nodes on a cycle only see the ancestors placed before them).
    """
    index = {a.id: i for i, a in enumerate(actions)} if any(a.depends_on for a in actions) else {}
    masks = [0] * len(actions)
    last: dict[str, int] = {}
    for i, action in enumerate(actions):
        previous = last.get(action.agent)
        mask = 0 if previous is None else masks[previous] | own[previous]
        for dep in () if action.id in aborted else action.depends_on:
            j = index[dep]
            if j > i:
                break
            mask |= masks[j] | own[j]
        else:
            masks[i] = mask
            last[action.agent] = i
            continue
        break
    else:
        return masks
    preds = _predecessors(actions, [a.agent for a in actions], aborted)
    order, _ = _topological_order(preds)
    for i in order:
        mask = 0
        for p in preds[i]:
            mask |= masks[p] | own[p]
        masks[i] = mask
    return masks


def _topological_order(preds: Sequence[Sequence[int]]) -> tuple[list[int], bool]:
    """An order where every node follows its predecessors, and whether the graph is acyclic.

    Plan order when every edge points forward; else Kahn's order, then the nodes on or
    behind a cycle in plan order.
    """
    n = len(preds)
    if all(p < i for i, row in enumerate(preds) for p in row):
        return list(range(n)), True
    indegree = [len(row) for row in preds]
    succ: list[list[int]] = [[] for _ in range(n)]
    for i, row in enumerate(preds):
        for p in row:
            succ[p].append(i)
    ready = deque(i for i in range(n) if indegree[i] == 0)
    order: list[int] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for s in succ[node]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if len(order) == n:
        return order, True
    placed = set(order)
    order.extend(i for i in range(n) if i not in placed)
    return order, False


class _Resolving:
    """The state of one `resolve_conflicts` call."""

    def __init__(
        self,
        plan: ToolExecutionPlan,
        registry: ToolContractRegistry,
        limits: dict[str, int],
        conflicts: Sequence[Conflict],
    ) -> None:
        self.plan = plan
        self.ordering = {
            (c.action_ids[-1], c.dependency) for c in conflicts if c.conflict_type is ConflictType.ORDERING
        }
        self.registry = registry
        self.limits = limits
        self.actions = plan.actions
        self.index = {a.id: i for i, a in enumerate(plan.actions)}
        self.result = ResolutionPlan()
        self._chains_kept = False
        self._preds: list[list[int]] | None = None
        self._succ: list[list[int]] | None = None
        self._rank: list[int] = []
        self._acyclic = True
        self._forward: bool | None = None
        self._positions_of_tool: dict[str, list[int]] | None = None
        self._agent_queues: dict[str, list[int]] | None = None

    def _position(self, conflict: Conflict, action_id: str) -> int:
        i = self.index.get(action_id)
        if i is None:
            raise ValueError(
                f"conflict {conflict.conflict_id} names unknown action {action_id!r} in plan {self.plan.plan_id!r}"
            )
        return i

    def resolve(self, conflict: Conflict) -> Resolution:
        kind = conflict.conflict_type
        if kind is ConflictType.DUPLICATE_ACTION:
            strategy, outcome, changed = self._duplicate(conflict)
        elif kind is ConflictType.PERMISSION:
            strategy, outcome, changed = self._permission(conflict)
        else:
            self.keep_reassigned_in_order()
            if kind is ConflictType.ORDERING:
                strategy, outcome, changed = self._ordering(conflict)
            elif kind is ConflictType.RESOURCE:
                strategy, outcome, changed = self._resource(conflict)
            else:
                strategy, outcome, changed = self._rate_limit(conflict)
        return Resolution(
            conflict_id=conflict.conflict_id,
            conflict_type=kind,
            strategy=strategy,
            outcome=outcome,
            action_ids=changed,
        )

    def _already_aborted(self, action_id: str) -> _Outcome:
        reason = self.result.aborted[action_id]
        return ResolutionStrategy.ABORT, f"{action_id} is already aborted ({reason})", []

    def _duplicate(self, conflict: Conflict) -> _Outcome:
        for action_id in conflict.action_ids:
            self._position(conflict, action_id)
        first, *rest = conflict.action_ids
        changed = [a for a in rest if a not in self.result.aborted]
        for action_id in changed:
            self.result.aborted[action_id] = f"duplicate of {first}"
        return (
            ResolutionStrategy.ABORT,
            f"kept {first}; aborted {len(changed)} duplicate call(s) of {conflict.tool}",
            changed,
        )

    def _permission(self, conflict: Conflict) -> _Outcome:
        y = self._position(conflict, conflict.action_ids[0])
        action = self.actions[y]
        if action.id in self.result.aborted:
            return self._already_aborted(action.id)
        required = self.registry.get(action.tool).required_permissions
        candidates = [
            name
            for name, spec in (self.plan.agents or {}).items()
            if name != action.agent and all(p in spec.permissions for p in required)
        ]
        target = next((name for name in candidates if self._move(y, action.agent, name)), None)
        if target is None:
            if candidates:
                self.result.aborted[action.id] = f"reassigning it to {', '.join(candidates)} would deadlock the plan"
                capped = self._cap_lost_dependencies()
                outcome = f"aborted {action.id}: every agent that could take it would deadlock the plan"
                if capped:
                    outcome += f"; capped {len(capped)} action(s) that relied on it at DRY_RUN"
                return ResolutionStrategy.ABORT, outcome, [action.id, *capped]
            else:
                self.result.aborted[action.id] = f"no declared agent holds {', '.join(required)} for {action.tool}"
                outcome = f"aborted {action.id}: no agent holds the permissions {action.tool} needs"
            return ResolutionStrategy.ABORT, outcome, [action.id]
        self.result.reassigned[action.id] = target
        return (
            ResolutionStrategy.REASSIGN,
            f"reassigned {action.id} ({action.tool}) from {action.agent} to {target}, "
            f"keeping its place in {action.agent}'s order",
            [action.id],
        )

    def _cap_lost_dependencies(self) -> list[str]:
        """Cap at DRY_RUN every live action whose dependency no longer runs before it.

        Only needed after an abort detection could not foresee (a reassignment that would
        deadlock): the aborted action provides nothing and no longer waits for its
        depends_on. Dependencies that already have an ORDERING conflict are left to it.
        """
        actions, aborted = self.actions, self.result.aborted
        dependencies = [self.registry.get(a.tool).dependencies for a in actions]
        bit = {tool: 1 << i for i, tool in enumerate(sorted({d for deps in dependencies for d in deps}))}
        own = [0 if a.id in aborted else bit.get(a.tool, 0) for a in actions]
        masks = _ancestor_masks(actions, own, aborted)
        capped = []
        for i, action in enumerate(actions):
            if action.id in aborted or action.id in self.result.mode_caps:
                continue
            if any(not masks[i] & bit[d] and (action.id, d) not in self.ordering for d in dependencies[i]):
                self.result.cap(action.id, ExecutionMode.DRY_RUN)
                capped.append(action.id)
        return capped

    def _move(self, y: int, source: str, target: str) -> bool:
        """Put action y in `target`'s queue (at its plan position) unless that closes a cycle.

        With every depends_on pointing backwards in plan order no cycle is possible. Otherwise
        y must fit between its neighbours in the target's queue; its original agent's order
        stays in the graph (and is kept by `keep_reassigned_in_order`).
        """
        if self._depends_on_forward():
            return True
        queues = self._queues()
        queue = queues.setdefault(target, [])
        k = bisect_left(queue, y)
        before = queue[k - 1] if k else None
        after = queue[k] if k < len(queue) else None
        if before is not None and not self._add_edge(before, y):
            return False
        if after is not None and not self._add_edge(y, after):
            if before is not None:
                self._drop_edge(before, y)
            return False
        queue.insert(k, y)
        old = queues[source]
        del old[bisect_left(old, y)]
        return True

    def _queues(self) -> dict[str, list[int]]:
        """Each agent's actions (plan positions, ascending) after the reassignments so far."""
        if self._agent_queues is None:
            queues: dict[str, list[int]] = {}
            for i, action in enumerate(self.actions):
                queues.setdefault(self.result.agent_for(action), []).append(i)
            self._agent_queues = queues
        return self._agent_queues

    def keep_reassigned_in_order(self) -> None:
        """Keep each reassigned action in its original agent's order (once, after PERMISSION).

        It waits for the nearest earlier live action of its original agent, and the nearest
        later live one waits for it, so no ordering the plan relied on is lost.
        """
        if self._chains_kept:
            return
        self._chains_kept = True
        reassigned, aborted = self.result.reassigned, self.result.aborted
        if not reassigned:
            return
        last_live: dict[str, str] = {}
        moved_last: dict[str, str] = {}  # original agent -> its latest reassigned action
        for action in self.actions:
            if action.id in aborted:
                continue
            agent = action.agent
            moved = moved_last.pop(agent, None)
            if moved is not None:
                self.result.wait(action.id, moved)
            if action.id in reassigned:
                previous = last_live.get(agent)
                if previous is not None:
                    self.result.wait(action.id, previous)
                moved_last[agent] = action.id
            last_live[agent] = action.id

    def _graph(self) -> tuple[list[list[int]], list[list[int]]]:
        """The run-time graph: depends_on, each agent's original and current order, and the
        extra dependencies so far.

        Built on first use: predecessor and successor lists, and a topological rank per
        action that `_add_edge` keeps valid as edges are added.
        """
        if self._preds is None or self._succ is None:
            preds = _predecessors(self.actions, [a.agent for a in self.actions], self.result.aborted)
            if self.result.reassigned:
                current = _predecessors(self.actions, [self.result.agent_for(a) for a in self.actions])
                for row, extra in zip(preds, current, strict=True):
                    row.extend(extra)
            for action_id, waits in self.result.extra_dependencies.items():
                preds[self.index[action_id]].extend(self.index[w] for w in waits)
            succ: list[list[int]] = [[] for _ in self.actions]
            for i, row in enumerate(preds):
                for p in row:
                    succ[p].append(i)
            order, self._acyclic = _topological_order(preds)
            rank = [0] * len(order)
            for position, node in enumerate(order):
                rank[node] = position
            self._preds, self._succ, self._rank = preds, succ, rank
        return self._preds, self._succ

    def _try_wait(self, x: int, y: int) -> bool:
        """Make y wait for x unless that would close a cycle."""
        # While every edge points forward in plan order, a forward edge needs no check.
        all_forward = self._preds is None and x < y and self._depends_on_forward()
        if not all_forward and not self._add_edge(x, y):
            return False
        self.result.wait(self.actions[y].id, self.actions[x].id)
        return True

    def _add_edge(self, x: int, y: int) -> bool:
        """Add x -> y to the graph unless it would close a cycle.

        When x already ranks before y the edge is safe. Otherwise a DFS from y, pruned to
        ranks below x's, looks for x; if it is absent the affected ranks are reordered
        (Pearce-Kelly), so most checks cost O(1) and the rest only touch the affected region.
        """
        preds, succ = self._graph()
        rank = self._rank
        if not self._acyclic:  # the plan's own order already deadlocks: plain search
            if self._search(succ, y, x, None) is None:
                return False
        elif rank[x] > rank[y]:
            upper, lower = rank[x], rank[y]
            ahead = self._search(succ, y, x, lambda node: rank[node] < upper)
            if ahead is None:
                return False
            behind = self._search(preds, x, -1, lambda node: rank[node] > lower) or []
            moved = sorted(behind, key=rank.__getitem__) + sorted(ahead, key=rank.__getitem__)
            slots = sorted(rank[node] for node in moved)
            for node, slot in zip(moved, slots, strict=True):
                rank[node] = slot
        succ[x].append(y)
        preds[y].append(x)
        return True

    def _drop_edge(self, x: int, y: int) -> None:
        """Remove the edge x -> y added last (a topological rank stays valid without it)."""
        preds, succ = self._graph()
        row = succ[x]
        del row[len(row) - 1 - row[::-1].index(y)]
        row = preds[y]
        del row[len(row) - 1 - row[::-1].index(x)]

    def _depends_on_forward(self) -> bool:
        if self._forward is None:
            index = self.index
            self._forward = all(index[d] < i for i, a in enumerate(self.actions) for d in a.depends_on)
        return self._forward

    @staticmethod
    def _search(edges: list[list[int]], start: int, goal: int, keep: Callable[[int], bool] | None) -> list[int] | None:
        """Nodes reachable from `start` along `edges` (through nodes `keep` accepts), or
        None as soon as `goal` is reached."""
        seen = {start}
        stack = [start]
        found: list[int] = []
        while stack:
            node = stack.pop()
            found.append(node)
            for nxt in edges[node]:
                if nxt == goal:
                    return None
                if nxt not in seen and (keep is None or keep(nxt)):
                    seen.add(nxt)
                    stack.append(nxt)
        return found

    def _provider(self, dependency: str, before: int) -> int | None:
        """The latest action of `dependency` before position `before` that is not aborted."""
        if self._positions_of_tool is None:
            positions: dict[str, list[int]] = {}
            for i, a in enumerate(self.actions):
                positions.setdefault(a.tool, []).append(i)
            self._positions_of_tool = positions
        candidates = self._positions_of_tool.get(dependency, [])
        for k in range(bisect_left(candidates, before) - 1, -1, -1):
            if self.actions[candidates[k]].id not in self.result.aborted:
                return candidates[k]
        return None

    def _ordering(self, conflict: Conflict) -> _Outcome:
        y = self._position(conflict, conflict.action_ids[-1])
        dependent = self.actions[y].id
        if dependent in self.result.aborted:
            return self._already_aborted(dependent)
        dependency = conflict.dependency or "a dependency"
        x: int | None = None
        if len(conflict.action_ids) > 1:
            x = self._position(conflict, conflict.action_ids[0])
            if self.actions[x].id in self.result.aborted:
                x = self._provider(self.actions[x].tool, y)
        if x is None:
            self.result.cap(dependent, ExecutionMode.DRY_RUN)
            return (
                ResolutionStrategy.DOWNGRADE,
                f"dependency {dependency} not run before {dependent}; capped at DRY_RUN",
                [dependent],
            )
        provider = self.actions[x].id
        if not self._try_wait(x, y):
            self.result.cap(dependent, ExecutionMode.DRY_RUN)
            return (
                ResolutionStrategy.DOWNGRADE,
                f"waiting for {provider} ({dependency}) would create a cycle; {dependent} capped at DRY_RUN",
                [dependent],
            )
        return (
            ResolutionStrategy.DELAY,
            f"{dependent} now waits for {provider} ({dependency})",
            [dependent],
        )

    def _resource(self, conflict: Conflict) -> _Outcome:
        live = [a for a in conflict.action_ids if a not in self.result.aborted]
        for action_id in live:
            self._position(conflict, action_id)
        resource = conflict.resource or ""
        self.result.serialised_resources.add(resource)
        return (
            ResolutionStrategy.DELAY,
            f"serialised {len(live)} actions on resource {resource}",
            live,
        )

    def _rate_limit(self, conflict: Conflict) -> _Outcome:
        tool = conflict.tool
        limit = self.limits.get(tool, self.registry.get(tool).max_concurrency)
        live = [a for a in conflict.action_ids if a not in self.result.aborted]
        self.result.tool_limits[tool] = limit
        return (
            ResolutionStrategy.DELAY,
            f"at most {limit} {tool} call(s) at a time across {len(conflict.agents)} agents",
            live,
        )
