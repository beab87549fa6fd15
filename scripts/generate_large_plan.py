"""Generate a large load-test plan: N actions over M agents, no approval waits.

Usage: python scripts/generate_large_plan.py [--actions 10000] [--agents 20] [--seed 24] [--out sample_plans/large.json]
HIGH-risk tools appear only with confidence below their LIVE threshold, so the plan runs
MOCK/DRY_RUN/LIVE without waiting for an operator.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

LOW_MEDIUM = [
    ("vision_inspect", 0.5),
    ("screenshot_capture", 0.5),
    ("memory_search", 0.5),
    ("goal_query", 0.5),
    ("text_extract", 0.5),
    ("math_compute", 0.5),
    ("ghl_search", 0.5),
    ("mployer_search", 0.5),
    ("msgraph_get_user", 0.5),
    ("form_fill", 0.65),
    ("msgraph_create_draft", 0.65),
]
HIGH = ["ghl_update_contact", "database_write", "file_operation"]


def build(actions: int, agents: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    names = [f"agent_{i:02d}" for i in range(agents)]
    out = []
    for i in range(actions):
        agent = names[i % agents]
        if rng.random() < 0.05:
            tool = rng.choice(HIGH)
            confidence = round(rng.uniform(0.3, 0.84), 2)
        else:
            tool, _ = rng.choice(LOW_MEDIUM)
            confidence = round(rng.uniform(0.3, 1.0), 2)
        action: dict[str, object] = {
            "id": f"a{i:06d}",
            "agent": agent,
            "tool": tool,
            "args": {"n": i, "target": f"record-{rng.randrange(actions)}"},
            "confidence": confidence,
        }
        if rng.random() < 0.02:
            action["resource"] = f"shared:{rng.randrange(50)}"
        out.append(action)
    return {
        "plan_id": f"large_{actions}",
        "phase21_plan_id": f"p21-large-{actions}",
        "description": f"Load test: {actions} actions over {agents} agents (generated, seed {seed}).",
        "actions": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("sample_plans/large.json"))
    args = parser.parse_args()
    plan = build(args.actions, args.agents, args.seed)
    args.out.write_text(json.dumps(plan, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.actions} actions, {args.agents} agents)")


if __name__ == "__main__":
    main()
