"""Run every benchmark, print the tables and write benchmarks/results.md.

    python -m benchmarks            # everything (a few minutes on 2 cores), writes results.md
    python -m benchmarks --quick    # 10k plan / 100k synthetic events only; prints, writes nothing
    python -m benchmarks --only startup approval_latency

Each benchmark runs in its own subprocess (`python -m benchmarks.<name>`); those that need
a clean peak RSS start further subprocesses themselves. When a bar is missed, the
matching cProfile run is added to the notes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import PYTHON, ROOT, cpu_calibration, met_text, reference, run_child, table
from benchmarks.core_throughput import BAR_ACTIONS_PER_S as BAR_CORE_ACTIONS_PER_S
from benchmarks.core_throughput import BREAKDOWN_RUNS, SHARED_PLAN_ENV, big_plan_file
from benchmarks.live_path import BAR_DRY_ACTIONS_PER_S, BAR_LIVE_ACTIONS_PER_S

BENCHMARKS = (
    "live_path",
    "core_throughput",
    "conflict_scaling",
    "console_flood",
    "startup",
    "approval_latency",
    "service_roundtrip",
    "attached_prompt",
    "mcp_gateway",
)
RESULTS = ROOT / "benchmarks" / "results.md"
SUITE_ARGS = {"mcp_gateway": ["--json"]}  # its own output is a list of figures; the suite wants its JSON line


def run_benchmark(name: str, quick: bool, extra_env: dict[str, str]) -> tuple[dict[str, Any], float]:
    # A private system-lock state per benchmark: one that presses `l` leaves the others
    # unlocked. (Run alone, `python -m benchmarks.NAME` gets one from benchmarks/__init__.py.)
    with tempfile.TemporaryDirectory(prefix=f"bench-state-{name}-") as state:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PHASE24_STATE_DIR": state, **extra_env}
        cmd = [PYTHON, "-m", f"benchmarks.{name}", *(["--quick"] if quick else []), *SUITE_ARGS.get(name, [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
        elapsed = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-4000:])
        return {"benchmark": name, "error": proc.stderr[-2000:], "bars": []}, elapsed
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line), elapsed
    return {"benchmark": name, "error": "no JSON line", "bars": []}, elapsed


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.release()})"
    except OSError:
        pass

    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    versions = []
    for package in ("textual", "pydantic", "rich"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:
            pass
    return {
        "date": cmd("date"),
        "nproc": cmd("nproc") or str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": os_name,
        "packages": ", ".join(versions),
        "commit": cmd("git", "rev-parse", "--short", "HEAD"),
        "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", "(unset)"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def missed(result: dict[str, Any]) -> bool:
    return bool(result.get("error")) or any(b["met"] is False for b in result.get("bars", []))


def profile_table(rows: list[dict[str, Any]], limit: int) -> str:
    return table(
        [(f"{r['tottime_s']:.3f}", f"{r['cumtime_s']:.3f}", r["calls"], f"`{r['function']}`") for r in rows[:limit]],
        ("own s", "cumulative s", "calls", "function"),
    )


_SHARES = (
    ("EventBus.emit (all subscribers)", "core/events.py", "(emit)"),
    ("journal", "core/journal.py", "(observe)"),
    ("JSONL writer", "core/outputs.py", "(observe)"),
    ("monitor", "core/monitor.py", "(observe)"),
    ("feedback", "core/feedback.py", "(observe)"),
)


def _shares(profile: dict[str, Any] | None) -> str:
    """Cumulative shares of the main subscribers in the core profile."""
    if not profile:
        return "(no profile)"
    rows = profile.get("profile_cumulative", [])
    total = next((r["cumtime_s"] for r in rows if "execute_orchestration_pipeline" in r["function"]), None)
    if not total:
        return "(no profile)"
    parts = []
    for label, path, func in _SHARES:
        row = next((r for r in rows if path in r["function"] and r["function"].endswith(func)), None)
        if row is not None:
            parts.append(f"{label} {row['cumtime_s'] / total:.0%}")
    return ", ".join(parts) or "(not in the top functions)"


def notes(
    results: dict[str, dict[str, Any]], profiles: dict[str, dict[str, Any]], machine_factor: float | None = None
) -> list[str]:
    out: list[str] = []
    out += live_path_notes(results.get("live_path", {}))
    core = results.get("core_throughput", {})
    if core.get("sizes"):
        s10 = core["sizes"]["10k"]
        s100 = core["sizes"].get("100k")
        out += [
            "### core_throughput",
            "",
            f"- 10k: {s10['actions_per_s']:,.0f} actions/s ({s10['us_per_action']:.0f} µs/action, "
            f"{s10['events']:,} events = {s10['events'] / s10['actions']:.1f} events/action, "
            f"{s10['events_per_s']:,.0f} events/s); fresh-process runs: {s10.get('runs_s')} s. "
            + (
                f"100k: {s100['actions_per_s']:,.0f} actions/s, {s100['events']:,} events, "
                f"{s100['output_bytes'] / 1e6:,.0f} MB of output files. "
                if s100
                else ""
            )
            + (
                f"Per action the 100k run costs {s100['us_per_action'] / s10['us_per_action']:.2f}x the 10k one "
                "(the same events per action; a 10x larger heap and working set make each one slower). "
                if s100
                else ""
            )
            + f"The bar needs {1e6 / BAR_CORE_ACTIONS_PER_S:.0f} µs per action: this is "
            f"{s10['us_per_action'] * BAR_CORE_ACTIONS_PER_S / 1e6:.1f}x that."
            + (
                f" Read against the machine the bar was set on (the design note's journal workload ran "
                f"{machine_factor:.1f}x slower here, see the header), the 10k figure corresponds to roughly "
                f"{s10['actions_per_s'] * machine_factor:,.0f} actions/s there: an estimate, since the core's "
                "interpreter work and that workload need not slow down alike."
                if machine_factor
                else ""
            ),
        ]
        b = core.get("breakdown")
        if b:
            u = b["us_per_action"]
            out.append(
                "- Where the time goes, measured without a profiler (10k plan, best of "
                f"{BREAKDOWN_RUNS} fresh processes per configuration): everything on {u['full']:.0f} µs/action; "
                "journal off "
                f"{u['no_journal']:.0f}; no output at all {u['no_outputs']:.0f}. So the durable journal costs "
                f"~{b['journal_us']:.0f} µs/action (~{b['journal_us'] / (s10['events'] / s10['actions']):.1f} µs "
                "per event: canonical JSON, SHA-256 chain link, one SQLite row in a 512-row group commit), "
                f"the JSONL/JSON files ~{b['files_us']:.0f} µs/action, and the core itself with the monitor "
                f"and the feedback loop ~{b['rest_us']:.0f} µs/action (controller climb, event construction "
                "and validation, asyncio scheduling of 20 agents, end-of-plan records). Differences between "
                "runs on this shared machine are large (the same 10k run has been seen between ~85 and "
                "~150 µs/action), so small differences here are noise."
            )
        out += [
            "- What limits it (cProfile below, 10k run): every event is a pydantic model built and "
            "validated, then delivered synchronously to the bus subscribers (journal: canonical JSON + "
            "hash chain + SQLite batch; output JSONL writer; monitor; feedback loop; the harness's "
            f"counters). Share of the profiled pipeline: {_shares(profiles.get('core_throughput'))}. "
            "No single hot spot remains: the cost is spread over "
            f"~{s10['us_per_action'] / (s10['events'] / s10['actions']):.0f} µs per event x "
            f"{s10['events'] / s10['actions']:.1f} events per action. Already done after profiling: "
            "end-of-plan records encoded by pydantic in one call (run.json, the per-plan result line) "
            "and built without re-validation; the loaded plan frozen out of the cyclic GC for the run "
            "(`core/gc_policy.py`); cheaper journal, monitor and feedback-loop paths per event. "
            "Measured and not worth it here: fewer or deferred WAL checkpoints (within noise).",
            "- Bare-loop floor: the floor (dict lookup + threshold + tuple append) costs "
            f'~{1e6 / s10["floor_actions_per_s"]:.2f} µs/action, so "within 10x" means ~'
            f"{10e6 / s10['floor_actions_per_s']:.0f} µs per action, about what building and "
            "serialising one pydantic event costs. The bar cannot be met by a design that publishes "
            "typed events per transition in CPython; the ratio is reported as measured. At 100k the "
            "floor itself is slower per action (the cyclic GC traversing the larger heap of loaded "
            "plan objects, and memory locality), which is why the 100k ratio looks better than the "
            "10k one.",
        ]
        if s100:
            out.append(
                f"- Memory: peak RSS {s10['peak_rss_mb']:.0f} MB (10k) and {s100['peak_rss_mb']:.0f} MB "
                f"(100k): ratio {core.get('rss_ratio_100k_10k')}x for 10x the actions, so the bar "
                "(sub-linear) is met as defined, but mostly because of the fixed ~38 MB interpreter + "
                "imports. Above that baseline the growth is "
                f"{core.get('rss_growth_ratio_above_imports')}x, i.e. close to linear: the loaded plan "
                f"(100k validated actions: {s100['rss_after_plan_load_mb'] - s100['rss_after_imports_mb']:.0f}"
                " MB) plus what the run keeps per action (tool results for the summary and the per-plan "
                "result file).",
            )
        out.append("")
        prof = profiles.get("core_throughput")
        if prof:
            out += [
                f"cProfile, 10k plan, one fresh process (profiled run {prof['run_s']} s; cProfile roughly "
                "doubles the time). Top functions by own time:",
                "",
                profile_table(prof["profile"], 12),
                "",
                "Project functions by cumulative time:",
                "",
                profile_table(prof["profile_cumulative"], 16),
                "",
            ]
    conflicts = results.get("conflict_scaling", {})
    if conflicts.get("sizes"):
        sizes = conflicts["sizes"]
        out += [
            "### conflict_scaling",
            "",
            "- Conflicts per size: "
            + "; ".join(f"{k}: {v['conflicts']:,} ({v['by_type']})" for k, v in sizes.items())
            + ". TIMEOUT is runtime-only (`record_timeout` while executing) and cannot be in a plan.",
            "- Best-of-5 totals per size: "
            + "; ".join(f"{k}: {v['all_totals_s']}" for k, v in sizes.items())
            + ". The per-function cost ratios between 10k and 100k (cProfile, checked while "
            "writing this benchmark) are 10-12x for every function, a few dict-building steps up to "
            "~18x: no super-linear algorithm, but per-item cost rises with the working set (dict "
            "resizing, cache misses). The 100k/10k ratio therefore sits near the 12x bar and "
            "varies by about ±1x between runs on this shared 2-core machine.",
            "",
        ]
    flood = results.get("console_flood", {})
    if flood.get("console"):
        c, clean, h, syn = flood["console"], flood["console_clean"], flood["headless"], flood["synthetic"]
        out += [
            "### console_flood",
            "",
            f"- {flood['plan']} plan through the console: {c['events_received']:,} events at "
            f"{c['events_per_s']:,.0f} events/s, {c['frames']} frames ({c['frames_per_s']}/s, counted as "
            "`App._display` calls with a compositor update; headless, so the bytes a terminal would "
            "need are not produced). Keys are injected from a separate thread through the driver path.",
            f"- Pause: the key reaches `action_pause` in p50/p95/max {c['key_p50_ms']}/{c['key_p95_ms']}/"
            f"{c['key_max_ms']} ms; the RunPaused/RunResumed event is emitted on the core's loop "
            f"p50/p95/max {c.get('pause_in_core_p50_ms')}/{c.get('pause_in_core_p95_ms')}/"
            f"{c.get('pause_in_core_max_ms')} ms after the key.",
            f"- Lock: the flag is set {c['lock_flag_ms']} ms after the key and the next action the core "
            f"finishes goes to LOCKED {c['first_locked_transition_ms']} ms after the key; `SystemLocked` "
            f"is emitted on the core's loop {c['lock_event_ms']} ms after the key (of which the durable "
            f"lock record, `lock_store`, took {c.get('lock_store_ms')} ms; the rest is the wait for the "
            "core's loop to run the callback that `call_soon_threadsafe` scheduled).",
            f"- Wall time: console {clean['wall_s']} s (core in its worker {clean['core_run_s']} s) vs "
            f"headless pipeline {h['run_s']} s = {flood['wall_ratio']}x. The core and the UI share one "
            "GIL on this 2-core machine.",
            f"- RSS: console process end {c['rss_end_mb']} MB / peak {c['peak_rss_mb']} MB on the "
            f"{flood['plan']} plan (headless peak {h['peak_rss_mb']} MB: most of it is the core's own).",
            f"- {syn['events']:,} synthetic StateTransition events pushed from a thread: `app.feed` "
            f"accepts {syn['feed_calls_per_s']:,.0f} calls/s but the UI absorbs {syn['absorbed_per_s']:,.0f} "
            f"events/s, so up to {syn.get('max_backlog', 0):,} events waited in the feed's unbounded deque; "
            f"peak RSS {syn['peak_rss_mb']} MB, {syn['rss_end_mb']} MB after everything was drained (CPython "
            "keeps the freed memory in its arenas). While the backlog lasts the UI draws "
            f"{syn['frames_per_s']} frames/s and keys wait up to {syn['key_max_ms']} ms: one `drain()` "
            "takes at most 25,000 events per tick (five ticks a second), and `RunView.apply` formats "
            "only the newest 400 lines of a tick.",
            "",
        ]
        prof = profiles.get("console_flood")
        if prof:
            out += [
                "cProfile of the UI thread (the app's loop) during the 10k sample plan (the core thread "
                f"is not profiled; profiled wall {prof['wall_s']} s). By cumulative time:",
                "",
                profile_table(prof["profile_cumulative"], 18),
                "",
                "By own time:",
                "",
                profile_table(prof["profile"], 10),
                "",
                "Each tick re-lays out the screen (`Screen._refresh_layout`) and re-renders the "
                "changed widgets (`_compositor._render_chops`, `_styles_cache.render_line`); "
                "`RunView.apply` is the console's own share (it formats only the lines it draws).",
                "",
            ]
    start = results.get("startup", {})
    if start.get("as_configured"):
        a, w = start["as_configured"], start["warm_bytecode_cache"]
        out += [
            "### startup",
            "",
            f"- First frame (status bar text seen on the pty): {a['first_frame_all_s']} s as this "
            f"machine runs Python (PYTHONDONTWRITEBYTECODE={start.get('pythondontwritebytecode') or '(unset)'}: "
            "the project's own modules are compiled at every start; site-packages has bytecode), "
            f"{w['first_frame_all_s']} s with a warm bytecode cache. `phase24 run happy_path.json`: "
            f"{a['run_all_s']} s, most of it the plan's simulated latencies (SystemClock).",
            "",
        ]
    appr = results.get("approval_latency", {})
    if appr.get("bars"):
        s, r = appr["request_to_modal_on_screen"], appr["ready_to_modal_on_screen"]
        m, d, lv = appr["request_to_prompt_filled"], appr["y_to_decided_in_core"], appr["y_to_live_started"]
        out += [
            "### approval_latency",
            "",
            f"- {appr['requests']} requests. Request -> the prompt filled (`ApprovalModal.show_request`): "
            f"p50 {m['p50_ms']} ms; -> first frame with the prompt: p50 {s['p50_ms']} / p95 {s['p95_ms']} ms "
            f"(from when it could be shown: p50 {r['p50_ms']} / p95 {r['p95_ms']} ms). Samples (ms): "
            f"{s['samples_ms']}.",
            f"- `y` -> ApprovalDecided on the core: p50 {d['p50_ms']} ms; -> LIVE started: p50 "
            f"{lv['p50_ms']} / p95 {lv['p95_ms']} ms. Samples (ms): {lv['samples_ms']}.",
            f"- Requests made once the console had composed its prompt (each run's first request comes "
            f"during start-up): p50 {appr['ready_to_modal_on_screen_console_started']['p50_ms']} / p95 "
            f"{appr['ready_to_modal_on_screen_console_started']['p95_ms']} ms.",
            "- What limits it: while requests wait, an answered prompt stays up and is filled in place with "
            "the next one (no pop of the prompt, which drew the whole main screen, and push of a new one, "
            "which restyled and drew every widget); it keeps its size between requests, so a fill repaints "
            "its texts only, drawn in the same call when nothing changes size. What remains is Textual "
            "drawing the prompt's changed lines on the UI thread that also serves the running core's event "
            "feed, and each console's first prompt: laid out and drawn from scratch while the main screen "
            "lays out the run's first events. After `y` the approval worker hands the decision to the core "
            "(`QueueGate.answer` -> `call_soon_threadsafe`), which waits for one group commit (the intent "
            "record with the decision) before LIVE.",
            "",
        ]
        prof = profiles.get("approval_latency")
        if prof:
            out += [
                "cProfile of the UI thread over one run of approvals.json, by cumulative time:",
                "",
                profile_table(prof["profile_cumulative"], 18),
                "",
            ]
    return out


def live_path_notes(live: dict[str, Any]) -> list[str]:
    """What the LIVE path's figures say, against the floor measured in the same run."""
    sizes = live.get("sizes")
    if not sizes:
        return []
    out = ["### live_path (the path users run: `phase24 run PLAN --approve-all`)", ""]
    for label, f in sizes.items():
        floor, bare, lv, dry = f["floor"], f["floor_no_disk"], f["live"], f["dry_run_only"]
        disk = floor["us_per_action"] - bare["us_per_action"]
        out.append(
            f"- {label} ({lv['actions']:,} actions, 20 agents, {lv['live_escalations']:,} LIVE of which "
            f"{lv['simulated_effects']:,} with an effect): pipeline {lv['us_per_action']:.0f} µs/action "
            f"({lv['actions_per_s']:,.0f} actions/s; fresh-process runs {lv.get('runs_s')} s), "
            f"{lv['events']:,} events, {lv['barrier_waits']:,} barrier waits served by "
            f"{lv['group_commits']:,} group commits. Floor in the same run {floor['us_per_action']:.0f} "
            f"µs/action ({floor['actions_per_s']:,.0f} actions/s, {floor['commits']:,} commits; runs "
            f"{floor.get('runs_s')} s); the same loop with no disk {bare['us_per_action']:.0f} µs/action, so "
            f"the disk (fsync) is ~{disk:.0f} µs of the floor's action. `--dry-run-only` "
            f"{dry['us_per_action']:.0f} µs/action. The real path costs "
            f"{lv['us_per_action'] - floor['us_per_action']:.0f} µs/action more than the floor: "
            "the controller's climb (a typed event per transition and per execution), "
            "the monitor and feedback loop, conflict bookkeeping, the JSONL/JSON outputs and the simulated "
            "executors, none of which the floor has."
        )
        if "live_no_disk" in f:
            nd = f["live_no_disk"]
            out.append(
                f"  - The same path with its run directory in memory (tmpfs): {nd['us_per_action']:.0f} µs/action, "
                f"so the disk is ~{lv['us_per_action'] - nd['us_per_action']:.0f} µs of the path's action."
            )
        if "live_no_journal" in f:
            lnj, dnj = f["live_no_journal"], f["dry_run_only_no_journal"]
            out.append(
                f"  - With the journal switched off: {lnj['us_per_action']:.0f} µs/action `--approve-all`, "
                f"{dnj['us_per_action']:.0f} `--dry-run-only`. The bars allow "
                f"{1e6 / BAR_LIVE_ACTIONS_PER_S:.0f} and {1e6 / BAR_DRY_ACTIONS_PER_S:.0f} µs/action: "
                "the pipeline without any journal is already over them, so no faster journal or event "
                "encoding alone can meet them."
            )
    out += [
        "- Group commit (`core/group_commit.py`, wired in `core/harness.py`): every durability barrier "
        "(an intent before its effect, an outcome before the action is reported done, a LIVE start) awaits "
        "one shared commit: the simulated world's lines fsynced, the output files flushed, the journal "
        "committed and fsynced, in one transaction per group with the intents' and outcomes' table changes. "
        "Agents that reach a barrier together share the fsync; the others run on meanwhile.",
        "",
    ]
    return out


def write_results(
    results: dict[str, dict[str, Any]],
    elapsed: dict[str, float],
    profiles: dict[str, dict[str, Any]],
    total_s: float,
    load_before: str,
    speed: tuple[float, float],
    machine_vs_note: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    info = machine()
    rows = [
        (b["benchmark"], b["figure"].strip(), b["value"], b["bar"], met_text(b["met"]))
        for name in BENCHMARKS
        for b in results.get(name, {}).get("bars", [])
    ]
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, {info['os']}",
        f"- Python: {info['python']} ({info['packages']}); PYTHONDONTWRITEBYTECODE={info['pythondontwritebytecode']}",
        f"- Code: commit {info['commit']} (plus uncommitted work of others, if any)",
        f"- Suite wall time: {total_s:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items())
        + "), `python -m benchmarks`",
        "- Load average at the end of each benchmark: "
        + "; ".join(f"{k} {r.get('loadavg_at_end', '?')}" for k, r in results.items()),
        "",
        f"- Load average (1/5/15 min) before the suite: {load_before}; after: {info['loadavg']}",
        f"- CPU calibration (`benchmarks.cpu_calibration`: million simple interpreter steps/s, best of 5): "
        f"{speed[0]:.1f} before the suite, {speed[1]:.1f} after. Compare it between runs before comparing "
        "their figures: on this VM it has been seen to halve from one day to the next.",
        f"- The design note's own journal workload (`benchmarks/reference.py`: hash-chained SQLite rows, WAL, "
        f"synchronous=FULL, nothing else), before the suite: {reference.describe(machine_vs_note[0])}; after: "
        f"{machine_vs_note[1]['cpu_factor']:.1f}x. The bars' absolute figures (events/s, actions/s, ms) come from "
        "that faster machine; ratios (10x the floor, 12x per 10x actions, 1.5x the headless run) do not depend on it.",
        "",
        "Everything runs headless on a shared 2-core VM where other sessions build and test at the "
        "same time, and whose speed changes from minute to minute and more from day to day: the same "
        "10k core run has been seen between ~0.85 and ~1.5 s within one hour (the bare-loop floor "
        "moving 2x with it), and at ~2.7 s on a slow afternoon (CPU calibration 4.5), more when the "
        "load average is above ~1. Peak RSS is "
        "the high-water mark of a fresh process's own memory (`VmHWM`; a child's `ru_maxrss` "
        "starts at its parent's peak) per measurement. How each figure is taken is in the "
        "docstring of its module.",
        "",
        "## Figures vs bars",
        "",
        table(rows, ("benchmark", "figure", "value", "bar", "met?")),
        "",
    ]
    errors = [f"- {name}: {r['error']}" for name, r in results.items() if r.get("error")]
    if errors:
        lines += ["## Errors", "", *errors, ""]
    lines += ["## Notes", "", *notes(results, profiles, machine_vs_note[0]["cpu_factor"])]
    lines += [
        "## Raw figures",
        "",
        "<details><summary>JSON line of each benchmark</summary>",
        "",
        "```json",
        *(json.dumps(results[name], default=str) for name in BENCHMARKS if name in results),
        "```",
        "",
        "</details>",
        "",
    ]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run the benchmark suite")
    parser.add_argument("--quick", action="store_true", help="skip the 100k / 1M parts; print only")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile runs for missed bars")
    args = parser.parse_args(argv)
    names = args.only or BENCHMARKS
    results: dict[str, dict[str, Any]] = {}
    elapsed: dict[str, float] = {}
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    speed_before = cpu_calibration()
    print(f"CPU calibration: {speed_before:.1f} million steps/s", flush=True)
    reference_before = reference.measure(repeats=2)
    print(f"Design note's journal workload: {reference.describe(reference_before)}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as shared:
        # The generated 100k plan, written once for core_throughput and console_flood.
        extra_env = {} if args.quick else {SHARED_PLAN_ENV: str(big_plan_file(Path(shared)))}
        for name in names:
            print(f"\n== {name} ==", flush=True)
            results[name], elapsed[name] = run_benchmark(name, args.quick, extra_env)
    profiles: dict[str, dict[str, Any]] = {}
    if not args.no_profile and not args.quick:
        for name in names:
            if not missed(results[name]):
                continue
            try:
                if name == "core_throughput":
                    profiles[name] = run_child(
                        "benchmarks.core_throughput", str(ROOT / "sample_plans/large.json"), "--profile"
                    )
                elif name == "console_flood":
                    profiles[name] = run_child(
                        "benchmarks.console_flood", "profile", str(ROOT / "sample_plans/large.json"), "34014"
                    )
                elif name == "approval_latency":
                    proc = subprocess.run(
                        [PYTHON, "-m", "benchmarks.approval_latency", "--profile"],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        timeout=300,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )
                    profiles[name] = json.loads(proc.stdout.splitlines()[0])
            except Exception as exc:  # a profile is a bonus; never lose the figures for it
                print(f"profile of {name} failed: {exc}", file=sys.stderr)
    total = time.perf_counter() - t0
    speed_after = cpu_calibration()
    reference_after = reference.measure(repeats=2)
    rows = [
        (b["benchmark"], b["figure"].strip(), b["value"], b["bar"], met_text(b["met"]).replace("*", ""))
        for name in names
        for b in results[name].get("bars", [])
    ]
    print("\n== summary ==")
    print(table(rows, ("benchmark", "figure", "value", "bar", "met?")))
    print(f"total {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items()) + ")")
    print(f"CPU calibration: {speed_before:.1f} million steps/s before, {speed_after:.1f} after")
    print(f"Design note's journal workload after the suite: {reference.describe(reference_after)}")
    if not args.quick and not args.only:
        write_results(
            results,
            elapsed,
            profiles,
            total,
            load_before,
            (speed_before, speed_after),
            (reference_before, reference_after),
        )
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
