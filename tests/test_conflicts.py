"""Unit tests for core.conflicts: detection and resolution of the six conflict types."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest
from pydantic import ValidationError

from core.conflicts import (
    Conflict,
    ConflictResolver,
    ConflictType,
    ResolutionStrategy,
)
from core.contracts import (
    ExecutionMode,
    RiskLevel,
    ToolContract,
    ToolContractRegistry,
    standard_registry,
)
from core.errors import ContractError
from core.plans import ToolExecutionPlan, parse_plans


def act(action_id: str, agent: str, tool: str, **extra: Any) -> dict[str, Any]:
    return {"id": action_id, "agent": agent, "tool": tool, "confidence": 0.9, **extra}


def make_plan(
    actions: list[dict[str, Any]],
    agents: dict[str, list[str]] | None = None,
    plan_id: str = "p1",
) -> ToolExecutionPlan:
    data: dict[str, Any] = {"plan_id": plan_id, "actions": actions}
    if agents is not None:
        data["agents"] = {name: {"permissions": perms} for name, perms in agents.items()}
    return ToolExecutionPlan.model_validate(data)


def of_type(conflicts: list[Conflict], kind: ConflictType) -> list[Conflict]:
    return [c for c in conflicts if c.conflict_type is kind]


@pytest.fixture
def resolver() -> ConflictResolver:
    return ConflictResolver(standard_registry(), rng=random.Random(7))


def test_conflict_resolver_initialization() -> None:
    resolver = ConflictResolver(standard_registry())
    assert resolver.active_tools == {}
    assert resolver.rate_limit_state == {}
    assert isinstance(resolver.history, deque)
    assert resolver.history.maxlen == 10_000
    assert resolver.delay_range_s == (5.0, 15.0)
    assert resolver.max_timeout_retries == 1

    resolver.register_tools(["button_click", "form_fill"])
    assert resolver.rate_limit_state == {"button_click": 0, "form_fill": 0}
    assert resolver.concurrency_limits == {"button_click": 1, "form_fill": 2}

    with pytest.raises(ContractError, match="unknown tool 'teleport'"):
        resolver.register_tools(["memory_search", "teleport"])
    assert "memory_search" not in resolver.rate_limit_state

    resolver.acquire("form_fill", "a")
    resolver.acquire("form_fill", "a")
    resolver.acquire("form_fill", "b")
    assert resolver.rate_limit_state["form_fill"] == 3
    assert resolver.active_tools["form_fill"] == {"a", "b"}
    resolver.release("form_fill", "a")
    assert resolver.active_tools["form_fill"] == {"a", "b"}
    resolver.release("form_fill", "a")
    resolver.release("form_fill", "a")  # nothing held any more: no-op
    assert resolver.active_tools["form_fill"] == {"b"}
    assert resolver.rate_limit_state["form_fill"] == 1

    with pytest.raises(ValueError):
        ConflictResolver(standard_registry(), delay_range_s=(10.0, 5.0))
    with pytest.raises(ValueError):
        ConflictResolver(standard_registry(), history_limit=0)


def test_resource_conflict_detection(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("a1", "alice", "memory_search", resource="crm:42"),
            act("b1", "bob", "goal_query", resource="crm:42"),
            act("a2", "alice", "memory_search", resource="crm:42"),
            act("c1", "carol", "memory_search", resource="crm:7"),
            act("c2", "carol", "goal_query", resource="crm:7"),
            act("d1", "dave", "memory_search"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [c.conflict_type for c in conflicts] == [ConflictType.RESOURCE]
    conflict = conflicts[0]
    assert conflict.conflict_id == "C0001"
    assert conflict.plan_id == "p1"
    assert conflict.resource == "crm:42"
    assert conflict.agents == ["alice", "bob"]
    assert conflict.action_ids == ["a1", "b1", "a2"]
    assert conflict.tool == "memory_search"
    # ids keep counting per resolver
    assert resolver.detect_conflicts(plan)[0].conflict_id == "C0002"


def test_duplicate_action_conflict_detection(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("w1", "alice", "file_operation", args={"path": "/x", "op": "delete"}),
            act("w2", "bob", "file_operation", args={"op": "delete", "path": "/x"}),
            act("w3", "alice", "file_operation", args={"path": "/y", "op": "delete"}),
            act("w4", "alice", "file_operation", args={"path": "/x", "op": "delete"}),
            # reversible tools may repeat: no conflict
            act("f1", "alice", "form_fill", args={"field": "name"}),
            act("f2", "bob", "form_fill", args={"field": "name"}),
        ]
    )
    duplicates = of_type(resolver.detect_conflicts(plan), ConflictType.DUPLICATE_ACTION)
    assert len(duplicates) == 1
    assert duplicates[0].action_ids == ["w1", "w2", "w4"]
    assert duplicates[0].agents == ["alice", "bob"]
    assert duplicates[0].tool == "file_operation"


def test_conflict_resolution_delay_strategy(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("a1", "alice", "text_extract", resource="doc:1"),
            act("b1", "bob", "text_extract", resource="doc:1"),
            act("c1", "carol", "text_extract", resource="doc:1"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert len(resolutions) == 1
    resolution = resolutions[0]
    assert resolution.conflict_id == conflicts[0].conflict_id
    assert resolution.strategy is ResolutionStrategy.DELAY
    assert resolution.outcome == "serialised 3 actions on resource doc:1"
    assert resolution.action_ids == ["a1", "b1", "c1"]
    assert applied.serialised_resources == {"doc:1"}
    assert applied.aborted == {} and applied.reassigned == {} and applied.mode_caps == {}


def test_conflict_resolution_abort_strategy(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("e1", "alice", "database_write", args={"row": 1}, resource="db"),
            act("e2", "alice", "database_write", args={"row": 1}, resource="db"),
            act("e3", "bob", "database_write", args={"row": 1}, resource="db"),
        ],
        agents={"alice": ["db.write"], "bob": []},
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [c.conflict_type for c in conflicts] == [
        ConflictType.DUPLICATE_ACTION,
        ConflictType.PERMISSION,
        ConflictType.RESOURCE,
        ConflictType.RATE_LIMIT,
    ]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    by_type = {r.conflict_type: r for r in resolutions}
    duplicate = by_type[ConflictType.DUPLICATE_ACTION]
    assert duplicate.strategy is ResolutionStrategy.ABORT
    assert duplicate.action_ids == ["e2", "e3"]
    assert applied.aborted == {"e2": "duplicate of e1", "e3": "duplicate of e1"}
    # abort wins: bob's missing permission changes nothing, nor do the later resolutions
    permission = by_type[ConflictType.PERMISSION]
    assert permission.strategy is ResolutionStrategy.ABORT
    assert permission.action_ids == []
    assert applied.reassigned == {}
    assert by_type[ConflictType.RESOURCE].action_ids == ["e1"]
    assert by_type[ConflictType.RATE_LIMIT].action_ids == ["e1"]


def test_tool_dependency_graph(resolver: ConflictResolver) -> None:
    graph = resolver.dependency_graph
    assert graph["button_click"] == ("vision_inspect", "form_fill")
    assert graph["ghl_create_contact"] == ("ghl_search",)
    assert graph["mployer_add_contact"] == ("mployer_search",)
    assert graph["msgraph_send_email"] == ("msgraph_get_user", "msgraph_create_draft")
    assert len(graph) == 4
    assert "vision_inspect" not in graph


def test_conflict_summary_statistics() -> None:
    resolver = ConflictResolver(standard_registry(), rng=random.Random(7), history_limit=50)
    empty = resolver.summary()
    assert empty == {
        "total_conflicts": 0,
        "by_type": {t.value: 0 for t in ConflictType},
        "by_resolution_strategy": {s.value: 0 for s in ResolutionStrategy},
        "conflicts": [],
    }
    plan = make_plan(
        [
            act("a1", "alice", "text_extract", resource="doc"),
            act("b1", "bob", "text_extract", resource="doc"),
            act("c1", "alice", "button_click"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    resolver.resolve_conflicts(plan, conflicts)
    resolver.record_timeout("p1", plan.actions[0], attempt=1)
    summary = resolver.summary()
    assert summary["total_conflicts"] == 4
    assert summary["by_type"] == {
        "RESOURCE": 1,
        "ORDERING": 2,
        "RATE_LIMIT": 0,
        "DUPLICATE_ACTION": 0,
        "PERMISSION": 0,
        "TIMEOUT": 1,
    }
    assert summary["by_resolution_strategy"] == {
        "DELAY": 2,
        "REASSIGN": 0,
        "DOWNGRADE": 2,
        "ABORT": 0,
    }
    listed = summary["conflicts"]
    assert isinstance(listed, list)
    assert [c["conflict_id"] for c in listed] == ["C0001", "C0002", "C0003", "C0004"]
    assert listed[0]["conflict_type"] == "ORDERING"
    assert listed[0]["strategy"] == "DOWNGRADE"
    assert listed[0]["dependency"] == "vision_inspect"
    assert listed[2]["outcome"] == "serialised 2 actions on resource doc"
    assert listed[3]["conflict_type"] == "TIMEOUT" and listed[3]["strategy"] == "DELAY"

    # the history is bounded, the counts are not
    for attempt in range(60):
        resolver.record_timeout("p1", plan.actions[2], attempt=attempt + 1)
    summary = resolver.summary()
    assert summary["total_conflicts"] == 64
    assert len(resolver.history) == 50
    assert len(summary["conflicts"]) == 50  # type: ignore[arg-type]


def test_summary_lists_at_most_1000_conflicts() -> None:
    resolver = ConflictResolver(standard_registry(), rng=random.Random(7))
    action = make_plan([act("x", "alice", "database_write")]).actions[0]
    for _ in range(1005):
        resolver.record_timeout("p1", action, attempt=1)
    summary = resolver.summary()
    listed = summary["conflicts"]
    assert isinstance(listed, list)
    assert len(listed) == 1000
    assert listed[-1]["conflict_id"] == "C1005"
    assert summary["by_resolution_strategy"] == {
        "DELAY": 0,
        "REASSIGN": 0,
        "DOWNGRADE": 0,
        "ABORT": 1005,
    }


def test_ordering_conflict_delays_dependent_until_other_agents_provider(
    resolver: ConflictResolver,
) -> None:
    plan = make_plan(
        [
            act("v1", "seer", "vision_inspect"),
            act("f1", "filler", "form_fill"),
            act("v2", "seer", "vision_inspect"),
            act("k1", "clicker", "button_click"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [(c.conflict_type, c.dependency, c.action_ids) for c in conflicts] == [
        (ConflictType.ORDERING, "vision_inspect", ["v2", "k1"]),
        (ConflictType.ORDERING, "form_fill", ["f1", "k1"]),
    ]
    assert conflicts[0].agents == ["clicker", "seer"]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert [r.strategy for r in resolutions] == [ResolutionStrategy.DELAY] * 2
    assert resolutions[0].outcome == "k1 now waits for v2 (vision_inspect)"
    assert applied.extra_dependencies == {"k1": {"v2", "f1"}}
    assert applied.mode_caps == {}


def test_ordering_satisfied_by_own_order_or_depends_on(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("v1", "seer", "vision_inspect"),
            act("n1", "notary", "math_compute", depends_on=["v1"]),
            act("f1", "clicker", "form_fill"),
            act("k1", "clicker", "button_click", depends_on=["n1"]),
        ]
    )
    assert resolver.detect_conflicts(plan) == []


def test_ordering_conflict_downgrades_when_dependency_never_runs_first(
    resolver: ConflictResolver,
) -> None:
    plan = make_plan(
        [
            act("f1", "alice", "form_fill"),
            act("k1", "alice", "button_click"),
            act("v1", "alice", "vision_inspect"),  # too late to count
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [(c.conflict_type, c.dependency, c.action_ids) for c in conflicts] == [
        (ConflictType.ORDERING, "vision_inspect", ["k1"]),
    ]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert resolutions[0].strategy is ResolutionStrategy.DOWNGRADE
    assert resolutions[0].outcome == ("dependency vision_inspect not run before k1; capped at DRY_RUN")
    assert applied.mode_caps == {"k1": ExecutionMode.DRY_RUN}
    assert applied.extra_dependencies == {}


def test_ordering_conflict_downgrades_when_waiting_would_cycle(
    resolver: ConflictResolver,
) -> None:
    # v1 waits for b2, and b2 follows k1 in bob's own order: k1 waiting for v1 would deadlock.
    plan = make_plan(
        [
            act("v1", "alice", "vision_inspect", depends_on=["b2"]),
            act("f1", "bob", "form_fill"),
            act("k1", "bob", "button_click"),
            act("b2", "bob", "math_compute"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [(c.conflict_type, c.action_ids) for c in conflicts] == [
        (ConflictType.ORDERING, ["v1", "k1"]),
    ]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert resolutions[0].strategy is ResolutionStrategy.DOWNGRADE
    assert "cycle" in resolutions[0].outcome
    assert applied.mode_caps == {"k1": ExecutionMode.DRY_RUN}
    assert applied.extra_dependencies == {}


def test_ordering_delay_reorders_when_plan_order_is_not_topological(
    resolver: ConflictResolver,
) -> None:
    # v1 waits for z1, a later action of an unrelated agent: k1 may still wait for v1
    plan = make_plan(
        [
            act("v1", "alice", "vision_inspect", depends_on=["z1"]),
            act("f1", "bob", "form_fill"),
            act("k1", "bob", "button_click"),
            act("z1", "carol", "math_compute"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert [r.strategy for r in resolutions] == [ResolutionStrategy.DELAY]
    assert applied.extra_dependencies == {"k1": {"v1"}}


def test_a_plan_whose_agent_order_already_cycles_is_refused_before_resolution() -> None:
    # a1 -> a2 (alice's order) -> b1 (depends_on) -> b2 (bob's order) -> a1 (depends_on):
    # it would deadlock, so the plan never reaches the resolver.
    with pytest.raises(ValidationError, match=r"dependency cycle \(counting each agent's own order\)"):
        make_plan(
            [
                act("a1", "alice", "math_compute", depends_on=["b2"]),
                act("a2", "alice", "button_click"),
                act("b1", "bob", "math_compute", depends_on=["a2"]),
                act("b2", "bob", "math_compute"),
            ]
        )


def test_ordering_waits_for_a_provider_that_is_not_aborted() -> None:
    registry = ToolContractRegistry(
        [
            ToolContract(name="stamp", description="Stamp", risk_level=RiskLevel.MEDIUM, reversible=False),
            ToolContract(
                name="ship",
                description="Ship",
                risk_level=RiskLevel.MEDIUM,
                reversible=False,
                dependencies=("stamp",),
            ),
        ]
    )
    resolver = ConflictResolver(registry)
    plan = make_plan(
        [
            act("s1", "alice", "stamp"),
            act("s2", "bob", "stamp"),  # duplicate of s1: aborted, so it provides nothing
            act("x1", "bob", "ship"),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [(c.conflict_type, c.action_ids) for c in conflicts] == [
        (ConflictType.DUPLICATE_ACTION, ["s1", "s2"]),
        (ConflictType.ORDERING, ["s1", "x1"]),
    ]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert applied.aborted == {"s2": "duplicate of s1"}
    assert applied.extra_dependencies == {"x1": {"s1"}}
    assert resolutions[1].outcome == "x1 now waits for s1 (stamp)"


def test_permission_conflict_reassigns_and_keeps_original_order(
    resolver: ConflictResolver,
) -> None:
    plan = make_plan(
        [
            act("f1", "bob", "form_fill"),
            act("v1", "alice", "vision_inspect"),
            act("k1", "alice", "button_click"),
            act("m1", "alice", "math_compute"),
        ],
        agents={
            "alice": ["screen.read"],
            "carol": ["screen.read"],
            "bob": ["screen.write", "screen.read"],
            "dave": ["screen.write", "screen.read"],
        },
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [c.conflict_type for c in conflicts] == [ConflictType.PERMISSION, ConflictType.ORDERING]
    assert conflicts[0].detail == "agent alice lacks screen.write for button_click"
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert resolutions[0].strategy is ResolutionStrategy.REASSIGN
    assert applied.reassigned == {"k1": "bob"}  # first declared agent holding screen.write
    assert applied.agent_for(plan.actions[2]) == "bob"
    # k1 still follows v1 (alice's order) and m1 still follows k1; f1 comes from ORDERING
    assert applied.extra_dependencies == {"k1": {"v1", "f1"}, "m1": {"k1"}}


def test_permission_conflict_aborts_when_no_agent_holds_permissions(
    resolver: ConflictResolver,
) -> None:
    plan = make_plan(
        [act("e1", "alice", "database_write", args={"sql": "DELETE"})],
        agents={"alice": ["db.read"], "bob": []},
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [c.conflict_type for c in conflicts] == [ConflictType.PERMISSION]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert resolutions[0].strategy is ResolutionStrategy.ABORT
    assert resolutions[0].action_ids == ["e1"]
    assert applied.aborted == {"e1": "no declared agent holds db.write for database_write"}
    assert applied.reassigned == {}


def test_permissions_not_checked_when_plan_declares_no_agents(
    resolver: ConflictResolver,
) -> None:
    plan = make_plan([act("e1", "alice", "database_write")])
    assert resolver.detect_conflicts(plan) == []


def test_rate_limit_conflict_detection_and_delay(resolver: ConflictResolver) -> None:
    plan = make_plan(
        [
            act("a1", "alice", "database_write", args={"row": 1}),
            act("b1", "bob", "database_write", args={"row": 2}),
            act("c1", "carol", "file_operation", args={"path": "/a"}),
            act("d1", "dave", "file_operation", args={"path": "/b"}),
        ]
    )
    conflicts = resolver.detect_conflicts(plan)
    assert [(c.conflict_type, c.tool, c.agents) for c in conflicts] == [
        (ConflictType.RATE_LIMIT, "database_write", ["alice", "bob"]),
    ]
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert resolutions[0].strategy is ResolutionStrategy.DELAY
    assert resolutions[0].action_ids == ["a1", "b1"]
    assert applied.tool_limits == {"database_write": 1}


def test_timeout_of_reversible_tool_is_retried_after_delay() -> None:
    resolver = ConflictResolver(standard_registry(), rng=random.Random(7))
    action = make_plan([act("f1", "alice", "form_fill", resource="page")]).actions[0]
    conflict, resolution, delay = resolver.record_timeout("p1", action, attempt=1)
    expected = random.Random(7).uniform(5.0, 15.0)
    assert delay == expected
    assert 5.0 <= delay <= 15.0
    assert conflict.conflict_type is ConflictType.TIMEOUT
    assert conflict.action_ids == ["f1"] and conflict.resource == "page"
    assert resolution.strategy is ResolutionStrategy.DELAY
    assert resolution.outcome == f"retry f1 in {expected:.1f}s (attempt 2)"
    assert resolver.history[-1] == (conflict, resolution)

    # retries are bounded
    _, resolution, delay = resolver.record_timeout("p1", action, attempt=2)
    assert delay is None
    assert resolution.strategy is ResolutionStrategy.ABORT


def test_timeout_of_irreversible_tool_is_aborted() -> None:
    resolver = ConflictResolver(standard_registry(), rng=random.Random(7))
    action = make_plan([act("s1", "alice", "msgraph_send_email")]).actions[0]
    conflict, resolution, delay = resolver.record_timeout("p1", action, attempt=1)
    assert delay is None
    assert conflict.tool == "msgraph_send_email"
    assert resolution.strategy is ResolutionStrategy.ABORT
    assert "irreversible" in resolution.outcome


def test_detect_never_reports_timeout_and_resolve_rejects_it(resolver: ConflictResolver) -> None:
    plan = make_plan([act("f1", "alice", "form_fill")])
    assert resolver.detect_conflicts(plan) == []
    conflict, _, _ = resolver.record_timeout("p1", plan.actions[0], attempt=1)
    with pytest.raises(ValueError, match="record_timeout"):
        resolver.resolve_conflicts(plan, [conflict])


def test_resolve_rejects_conflicts_of_another_plan(resolver: ConflictResolver) -> None:
    first = make_plan([act("a", "x", "text_extract", resource="r"), act("b", "y", "text_extract", resource="r")])
    other = make_plan([act("a", "x", "text_extract")], plan_id="p2")
    conflicts = resolver.detect_conflicts(first)
    with pytest.raises(ValueError, match="belongs to plan 'p1'"):
        resolver.resolve_conflicts(other, conflicts)


def test_unknown_tool_in_plan_raises_contract_error(resolver: ConflictResolver) -> None:
    plan = make_plan([act("a", "x", "teleport")])
    with pytest.raises(ContractError):
        resolver.detect_conflicts(plan)


def test_plan_in_report_format_has_no_ordering_conflicts(resolver: ConflictResolver) -> None:
    (plan,) = parse_plans(
        {
            "plan_id": "report",
            "agent_assignments": {"agent_1": ["vision_inspect", "form_fill", "button_click"]},
            "execution_order": ["vision_inspect", "form_fill", "button_click"],
            "confidence_scores": {"vision_inspect": 0.9, "form_fill": 0.8, "button_click": 0.85},
        },
        "inline",
    )
    assert resolver.detect_conflicts(plan) == []


def test_twenty_thousand_actions_are_grouped_not_paired() -> None:
    resolver = ConflictResolver(standard_registry())
    actions: list[dict[str, Any]] = []
    groups = 5000
    for g in range(groups):
        screen = f"screen{g}"
        actions += [
            act(f"v{g}", "seer", "vision_inspect", resource=screen),
            act(f"f{g}", "filler", "form_fill", resource=screen),
            act(f"k{g}", "clicker", "button_click", resource=screen, args={"at": g}),
            act(f"w{g}", f"writer{g % 3}", "database_write", args={"row": g % 2500}),
        ]
    plan = make_plan(actions)
    assert len(plan.actions) == 20_000

    conflicts = resolver.detect_conflicts(plan)
    counts = {t: len(of_type(conflicts, t)) for t in ConflictType}
    assert counts == {
        ConflictType.RESOURCE: groups,
        ConflictType.ORDERING: 2 * groups,
        ConflictType.RATE_LIMIT: 1,
        ConflictType.DUPLICATE_ACTION: 2500,
        ConflictType.PERMISSION: 0,
        ConflictType.TIMEOUT: 0,
    }
    resolutions, applied = resolver.resolve_conflicts(plan, conflicts)
    assert len(resolutions) == len(conflicts) == 17_501
    assert len(applied.aborted) == 2500
    assert applied.aborted["w4999"] == "duplicate of w2499"
    assert len(applied.serialised_resources) == groups
    assert applied.tool_limits == {"database_write": 1}
    assert len(applied.extra_dependencies) == groups
    assert applied.extra_dependencies["k4321"] == {"v4321", "f4321"}
    assert applied.mode_caps == {}
    summary = resolver.summary()
    assert summary["total_conflicts"] == 17_501
    assert len(summary["conflicts"]) == 1000  # type: ignore[arg-type]
    assert len(resolver.history) == 10_000
