"""Core throughput: the whole pipeline, headless, on 10,000 and 100,000 actions.

Each size runs in a fresh subprocess so peak RSS (VmHWM, see `peak_rss_mb`) belongs to that size alone.
Configuration: dry_run_only=True (MOCK/DRY_RUN, no approval waits), durable journal on,
every output file on (in a temporary directory), SystemClock, PolicyGate.

Timed: `execute_orchestration_pipeline()` only; plan loading (read + JSON + validation)
is reported separately. The bare-Python floor, in the same process: for each action a
dict lookup of its tool's risk, the mode chosen by threshold (capped at DRY_RUN) and a
list append of an audit tuple.

Cost breakdown, without a profiler's distortion: the 10k plan again (best of 2 fresh
processes each) with the journal off (`durable_journal=False`) and with no output at all
(`write_outputs=False`: neither journal nor files); the differences are what the journal and
the output files cost per action.

    python -m benchmarks.core_throughput [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT, bar, current_rss_mb, generator, peak_rss_mb, report, run_child

NAME = "core_throughput"
LARGE = ROOT / "sample_plans" / "large.json"
BIG_ACTIONS, BIG_AGENTS, BIG_SEED = 100_000, 20, 24
BAR_ACTIONS_PER_S = 20_000
BAR_FLOOR_RATIO = 10.0
# Fresh processes per figure: enough to skip a disturbed run, few enough that the whole
# suite stays under 5 minutes on a slow day of this VM.
TEN_K_RUNS = 3
BREAKDOWN_RUNS = 2


def bare_loop(actions: Any, registry: Any) -> tuple[float, int]:
    """Best-of-5 seconds of the floor loop over `actions`, and the audit length."""
    from core.contracts import ExecutionMode
    from core.controller import CONFIDENCE_THRESHOLDS

    risk_of = {name: registry.get(name).risk_level for name in registry.names}
    thresholds = CONFIDENCE_THRESHOLDS
    mock, dry_run, live = ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE
    best = float("inf")
    n = 0
    for _ in range(5):
        audit: list[tuple[str, str, str, ExecutionMode]] = []
        append = audit.append
        t0 = time.perf_counter()
        for a in actions:
            risk = risk_of[a.tool]
            low, high = thresholds[risk]
            c = a.confidence
            mode = live if c >= high else dry_run if c >= low else mock
            if mode is live:  # the run's ceiling is DRY_RUN
                mode = dry_run
            append((a.id, a.agent, a.tool, mode))
        best = min(best, time.perf_counter() - t0)
        n = len(audit)
    return best, n


VARIANTS = {
    "full": {},
    "no_journal": {"durable_journal": False},
    "no_outputs": {"write_outputs": False},
}


def measure(plan_path: Path, profile: bool = False, variant: str = "full") -> dict[str, Any]:
    """One size, in this process (call it in a fresh subprocess)."""
    baseline_rss = current_rss_mb()
    from core.approval import PolicyGate
    from core.clock import SystemClock
    from core.contracts import standard_registry
    from core.harness import Phase24ExecutionConfig, Phase24Harness
    from core.plans import load_plans

    imported_rss = current_rss_mb()
    registry = standard_registry()
    t0 = time.perf_counter()
    plans = load_plans([plan_path], registry)
    load_s = time.perf_counter() - t0
    actions = [a for p in plans for a in p.actions]
    n = len(actions)
    loaded_rss = current_rss_mb()

    floor_s, audit_len = bare_loop(actions, registry)
    assert audit_len == n

    with tempfile.TemporaryDirectory(prefix="bench-core-") as out:
        options = VARIANTS[variant]
        config = Phase24ExecutionConfig(
            output_dir=Path(out), dry_run_only=True, durable_journal=options.get("durable_journal", True)
        )
        harness = Phase24Harness(
            config,
            gate=PolicyGate(),
            clock=SystemClock(),
            registry=registry,
            write_outputs=options.get("write_outputs", True),
        )
        harness.load_phase21_plans(plans)
        profiler = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        summary = harness.execute_orchestration_pipeline()
        if profiler is not None:
            profiler.disable()
        run_s = time.perf_counter() - t0
        files = sorted(p.name for p in Path(out).iterdir())
        out_bytes = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file())
        journal_on = harness.journal is not None
    result: dict[str, Any] = {
        "variant": variant,
        "actions": n,
        "plan_load_s": round(load_s, 4),
        "run_s": round(run_s, 4),
        "actions_per_s": round(n / run_s, 1),
        "us_per_action": round(run_s / n * 1e6, 2),
        "events": harness.bus.last_seq,
        "events_per_s": round(harness.bus.last_seq / run_s, 1),
        "tools_executed": summary["total_tools_executed"],
        "final_states": summary["actions_by_final_state"],
        "journal_on": journal_on,
        "output_files": files,
        "output_bytes": out_bytes,
        "floor_s": round(floor_s, 6),
        "floor_actions_per_s": round(n / floor_s, 1),
        "floor_ratio": round(run_s / floor_s, 1),
        "rss_start_mb": round(baseline_rss, 1),
        "rss_after_imports_mb": round(imported_rss, 1),
        "rss_after_plan_load_mb": round(loaded_rss, 1),
        "rss_end_mb": round(current_rss_mb(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if profiler is not None:
        result["profile"] = top_functions(profiler)
        result["profile_cumulative"] = top_functions(profiler, 20, by="cumtime_s")
    return result


def top_functions(profiler: cProfile.Profile, limit: int = 15, by: str = "tottime_s") -> list[dict[str, Any]]:
    """The hottest functions by own time (`tottime_s`) or, for project code only, by
    cumulative time (`cumtime_s`)."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if by == "cumtime_s" and not file.startswith(str(ROOT)):
            continue
        rows.append(
            {
                "function": f"{_short(file)}:{line}({func})",
                "calls": ncalls,
                "tottime_s": round(tottime, 3),
                "share": round(tottime / total, 3) if total else 0.0,
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: r[by], reverse=True)
    return rows[:limit]


def _short(file: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


#: `python -m benchmarks` writes the generated 100k plan once and names it here, so each
#: benchmark that needs it does not generate it again (the generator is deterministic).
SHARED_PLAN_ENV = "PHASE24_BENCH_PLAN_100K"


def big_plan_file(directory: Path) -> Path:
    """The generated 100k plan as a JSON file (written outside the measured process)."""
    shared = os.environ.get(SHARED_PLAN_ENV)
    if shared and Path(shared).is_file():
        return Path(shared)
    path = directory / f"large_{BIG_ACTIONS}.json"
    plan = generator().build(BIG_ACTIONS, BIG_AGENTS, BIG_SEED)
    path.write_text(json.dumps(plan, separators=(",", ":")), encoding="utf-8")
    return path


def run(quick: bool = False) -> dict[str, Any]:
    # 10k: best of 3 fresh processes (the machine is shared); 100k: one process.
    runs = [run_child(f"benchmarks.{NAME}", str(LARGE)) for _ in range(1 if quick else TEN_K_RUNS)]
    sizes: dict[str, dict[str, Any]] = {"10k": min(runs, key=lambda r: r["run_s"])}
    sizes["10k"]["runs_s"] = [r["run_s"] for r in runs]
    if not quick:
        with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
            sizes["100k"] = run_child(f"benchmarks.{NAME}", str(big_plan_file(Path(tmp))))
    bars = []
    for label, r in sizes.items():
        bars.append(
            bar(
                NAME,
                f"{label}: actions/s end-to-end (journal on)",
                f"{r['actions_per_s']:,.0f} ({r['us_per_action']:.1f} µs/action)",
                f">= {BAR_ACTIONS_PER_S:,}",
                r["actions_per_s"] >= BAR_ACTIONS_PER_S,
            )
        )
        bars.append(
            bar(
                NAME,
                f"{label}: pipeline time / bare-loop floor",
                f"{r['floor_ratio']:,.0f}x (floor {r['floor_actions_per_s']:,.0f} actions/s)",
                "<= 10x",
                r["floor_ratio"] <= BAR_FLOOR_RATIO,
            )
        )
        bars.append(
            bar(
                NAME,
                f"{label}: plan load (read+JSON+validate)",
                f"{r['plan_load_s']:.2f} s",
                "(reported)",
                None,
            )
        )
        bars.append(bar(NAME, f"{label}: peak RSS", f"{r['peak_rss_mb']:.0f} MB", "(reported)", None))
    result: dict[str, Any] = {"benchmark": NAME, "sizes": sizes}
    if not quick:
        result["breakdown"] = breakdown(sizes["10k"])
        b = result["breakdown"]
        bars.append(
            bar(
                NAME,
                "10k: µs/action spent in journal / output files / the rest",
                f"{b['journal_us']:.0f} / {b['files_us']:.0f} / {b['rest_us']:.0f}",
                "(reported)",
                None,
            )
        )
    if "100k" in sizes:
        small, big = sizes["10k"], sizes["100k"]
        ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
        growth = (big["peak_rss_mb"] - big["rss_after_imports_mb"]) / max(
            1e-9, small["peak_rss_mb"] - small["rss_after_imports_mb"]
        )
        result["rss_ratio_100k_10k"] = round(ratio, 2)
        result["rss_growth_ratio_above_imports"] = round(growth, 2)
        bars.append(
            bar(
                NAME,
                "peak RSS 100k / 10k (10x actions)",
                f"{ratio:.2f}x (growth above imports {growth:.1f}x)",
                "< 10x (sub-linear)",
                ratio < 10,
            )
        )
    result["bars"] = bars
    return result


def breakdown(full: dict[str, Any]) -> dict[str, Any]:
    """µs per action with the journal off and with no output, and what the differences cost."""
    best: dict[str, float] = {"full": full["us_per_action"]}
    for variant in ("no_journal", "no_outputs"):
        runs = [run_child(f"benchmarks.{NAME}", str(LARGE), "--variant", variant) for _ in range(BREAKDOWN_RUNS)]
        best[variant] = min(r["us_per_action"] for r in runs)
    return {
        "us_per_action": best,
        "journal_us": round(best["full"] - best["no_journal"], 1),
        "files_us": round(best["no_journal"] - best["no_outputs"], 1),
        "rest_us": round(best["no_outputs"], 1),
    }


def profile(quick: bool = True) -> dict[str, Any]:
    """cProfile of the 10k pipeline in a fresh process (cProfile slows it ~2x)."""
    return run_child(f"benchmarks.{NAME}", str(LARGE), "--profile")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("plan", nargs="?", type=Path)
    parser.add_argument("--quick", action="store_true", help="10k only")
    parser.add_argument("--profile", action="store_true", help="profile the 10k run with cProfile")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="full", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.plan, profile=args.profile, variant=args.variant), default=str))
        return
    if args.profile:
        result = profile()
        print(json.dumps(result, default=str))
        for key in ("profile", "profile_cumulative"):
            print(f"-- {key} (tottime, cumtime, calls, function)")
            for row in result[key]:
                print(f"{row['tottime_s']:8.3f}s {row['cumtime_s']:8.3f}s {row['calls']:>9}  {row['function']}")
        return
    report(run(quick=args.quick))


if __name__ == "__main__":
    main()
