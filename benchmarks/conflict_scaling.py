"""Conflict detection + resolution time at 1k, 10k and 100k actions, every type present.

The generated plans (20 declared agents, seed 24) contain:
- PERMISSION: agents 16-18 lack crm.write / db.write (others hold them: REASSIGN), and
  no agent holds files.write (file_operation is stranded: ABORT);
- RESOURCE: 5% of actions use one of N/50 shared resources;
- DUPLICATE_ACTION: 2% of actions are database_write calls with one of N/100 argument sets;
- ORDERING: agents 12-15 run only dependent tools (button_click, ghl_create_contact,
  msgraph_send_email, mployer_add_contact) whose providers run in other agents (DELAY),
  and mployer_search never appears (DOWNGRADE); agents 16-19 call a few dependent tools;
- RATE_LIMIT: many agents use database_write / button_click / msgraph_send_email
  (max_concurrency 1) and other limited tools;
- depends_on: 10% of the other agents' actions depend on one of the previous 20 actions,
  never of agents 12-15 (so those agents never inherit a provider and their ORDERING
  conflicts grow linearly with the plan).
TIMEOUT is runtime-only (raised by `record_timeout` while executing), so no plan has it.

Timed: `detect_conflicts(plan)` + `resolve_conflicts(plan, conflicts)` on a fresh
`ConflictResolver`, best of 5 (plan validation is reported separately), under the
collector policy every run executes with (`core.gc_policy.run_gc_policy`: the loaded plan
frozen, rarer young collections), as `orchestrate()` does inside `run_pipeline`.

    python -m benchmarks.conflict_scaling [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections import Counter
from itertools import pairwise
from typing import Any

from benchmarks import bar, report

NAME = "conflict_scaling"
SIZES = (1_000, 10_000, 100_000)
REPEATS = 5
BAR_STEP_RATIO = 12.0
BAR_100K_S = 1.0

ALL_PERMISSIONS = (
    "screen.read",
    "screen.write",
    "memory.read",
    "goals.read",
    "crm.read",
    "crm.write",
    "mployer.read",
    "mployer.write",
    "mail.send",
    "mail.draft",
    "directory.read",
    "db.write",
)  # files.write: held by nobody
READERS = [
    "vision_inspect",
    "screenshot_capture",
    "memory_search",
    "goal_query",
    "text_extract",
    "math_compute",
    "ghl_search",
    "msgraph_get_user",
]  # mployer_search: never in the plan
WRITERS = ["form_fill", "msgraph_create_draft", "ghl_update_contact", "file_operation"]
DEPENDENT = ["button_click", "ghl_create_contact", "msgraph_send_email", "mployer_add_contact"]


def build_plan(actions: int, seed: int = 24, agents: int = 20) -> dict[str, Any]:
    rng = random.Random(seed)
    names = [f"agent_{i:02d}" for i in range(agents)]
    declared: dict[str, dict[str, list[str]]] = {}
    for i, name in enumerate(names):
        perms = list(ALL_PERMISSIONS)
        if i in (16, 17):
            perms.remove("crm.write")
            perms.remove("db.write")
        if i == 18:
            perms.remove("crm.write")
        declared[name] = {"permissions": perms}
    out: list[dict[str, Any]] = []
    resources = max(2, actions // 50)
    dup_keys = max(2, actions // 100)
    for i in range(actions):
        agent_index = i % agents
        agent = names[agent_index]
        args: dict[str, Any] = {"n": i}
        r = rng.random()
        if 12 <= agent_index <= 15:
            tool = rng.choice(DEPENDENT)
        elif r < 0.02:
            tool = "database_write"
            args = {"row": rng.randrange(dup_keys)}  # duplicates of an irreversible call
        elif r < 0.10:
            tool = rng.choice(WRITERS)
        elif r < 0.13:
            tool = "database_write"
        elif r < 0.15:
            tool = rng.choice(DEPENDENT[:3])
        else:
            tool = rng.choice(READERS)
        action: dict[str, Any] = {
            "id": f"a{i:06d}",
            "agent": agent,
            "tool": tool,
            "args": args,
            "confidence": round(rng.uniform(0.3, 1.0), 2),
        }
        if rng.random() < 0.05:
            action["resource"] = f"res:{rng.randrange(resources)}"
        if i >= agents and not 12 <= agent_index <= 15 and rng.random() < 0.10:
            target = rng.randrange(i - agents, i)  # one of the previous 20 actions,
            if 12 <= target % agents <= 15:  # never one of the dependent-only agents
                target -= 4
            action["depends_on"] = [f"a{target:06d}"]
        out.append(action)
    return {
        "plan_id": f"conflicts_{actions}",
        "description": f"Conflict scaling: {actions} actions, every pre-execution conflict type.",
        "agents": declared,
        "actions": out,
    }


def measure(actions: int) -> dict[str, Any]:
    from core.conflicts import ConflictResolver
    from core.contracts import standard_registry
    from core.gc_policy import run_gc_policy
    from core.plans import parse_plans

    registry = standard_registry()
    data = build_plan(actions)
    t0 = time.perf_counter()
    (plan,) = parse_plans(data, f"generated:{actions}", registry)
    validate_s = time.perf_counter() - t0
    times: list[tuple[float, float]] = []
    conflicts: list[Any] = []
    resolutions: list[Any] = []
    for _ in range(REPEATS):
        del conflicts, resolutions
        gc.collect()
        resolver = ConflictResolver(registry, rng=random.Random(24))
        with run_gc_policy():
            t0 = time.perf_counter()
            conflicts = resolver.detect_conflicts(plan)
            t1 = time.perf_counter()
            resolutions, _plan = resolver.resolve_conflicts(plan, conflicts)
            t2 = time.perf_counter()
        times.append((t1 - t0, t2 - t1))
    detect_s, resolve_s = min(times, key=sum)
    by_type = Counter(c.conflict_type.value for c in conflicts)
    by_strategy = Counter(f"{r.conflict_type.value}:{r.strategy.value}" for r in resolutions)
    return {
        "actions": actions,
        "validate_s": round(validate_s, 4),
        "detect_s": round(detect_s, 4),
        "resolve_s": round(resolve_s, 4),
        "total_s": round(detect_s + resolve_s, 4),
        "all_totals_s": [round(sum(t), 4) for t in times],
        "conflicts": len(conflicts),
        "by_type": dict(sorted(by_type.items())),
        "by_strategy": dict(sorted(by_strategy.items())),
        "types_missing": sorted(
            {"RESOURCE", "ORDERING", "RATE_LIMIT", "DUPLICATE_ACTION", "PERMISSION"} - set(by_type)
        ),
    }


def run(quick: bool = False) -> dict[str, Any]:
    sizes = SIZES[:2] if quick else SIZES
    results = {f"{n // 1000}k": measure(n) for n in sizes}
    bars = []
    labels = list(results)
    for label in labels:
        r = results[label]
        bars.append(
            bar(
                NAME,
                f"{label}: detect+resolve ({r['conflicts']:,} conflicts)",
                f"{r['total_s'] * 1000:,.1f} ms (detect {r['detect_s'] * 1000:,.1f} + resolve "
                f"{r['resolve_s'] * 1000:,.1f})",
                "< 1 s" if label == "100k" else "(reported)",
                r["total_s"] < BAR_100K_S if label == "100k" else None,
            )
        )
    for small, big in pairwise(labels):
        ratio = results[big]["total_s"] / results[small]["total_s"]
        bars.append(
            bar(NAME, f"time {big} / {small} (10x actions)", f"{ratio:.1f}x", "<= 12x", ratio <= BAR_STEP_RATIO)
        )
    missing = sorted({t for r in results.values() for t in r["types_missing"]})
    bars.append(
        bar(
            NAME,
            "conflict types present",
            "all 5 pre-execution types" if not missing else f"missing {', '.join(missing)}",
            "all (TIMEOUT is runtime-only)",
            not missing,
        )
    )
    return {"benchmark": NAME, "sizes": results, "note": "TIMEOUT is runtime-only", "bars": bars}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="conflict detection + resolution scaling")
    parser.add_argument("--quick", action="store_true", help="1k and 10k only")
    args = parser.parse_args(argv)
    report(run(quick=args.quick))


if __name__ == "__main__":
    main()
