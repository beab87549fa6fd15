"""Benchmarks: measure the core and the console against the project's performance bars.

Each module is importable (`run(quick=False) -> dict`) and runnable
(`python -m benchmarks.<name>`), printing its figures as one JSON line and then a table.
`python -m benchmarks` runs them all and writes `benchmarks/results.md`.

Nothing here changes the project: the benchmarks only wrap methods on their own instances
(or, in their own subprocess, on a class) to take timestamps.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# The lock is system-wide (core/lock_state.py): a benchmark that presses `l` must not lock the
# machine's real state, nor leave the benchmarks after it running locked. Every benchmark
# process, and every process it starts, shares one private state directory per suite run.
if "PHASE24_STATE_DIR" not in os.environ:
    _STATE = tempfile.TemporaryDirectory(prefix="bench-state-")
    os.environ["PHASE24_STATE_DIR"] = _STATE.name


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory (VmHWM from /proc/self/status).

    Not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's peak (it is carried
    over the fork and the exec), so a child started by a benchmark that had just built the
    100k plan reported that plan's memory as its own. ru_maxrss (KiB) where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size now (VmRSS from /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def generator() -> ModuleType:
    """scripts/generate_large_plan.py, imported by path (scripts/ is not a package)."""
    path = ROOT / "scripts" / "generate_large_plan.py"
    spec = importlib.util.spec_from_file_location("generate_large_plan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def run_child(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run `python -m <module> --child ...` in a fresh process; return its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [PYTHON, "-m", module, "--child", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"{module} {' '.join(args)} printed no JSON line:\n{proc.stdout[-2000:]}")


def start_server(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m <module> ARGS` in a subprocess whose first line on stdout says
    "listening on URL"; the process and the URL."""
    proc = subprocess.Popen(
        [PYTHON, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    url = re.search(r"listening on (http://\S+)", first)
    if not url:
        proc.kill()
        raise RuntimeError(f"{module} did not start: {first}{proc.stderr.read() if proc.stderr else ''}")
    return proc, url.group(1)


def bar(benchmark: str, figure: str, value: str, target: str, met: bool | None) -> dict[str, Any]:
    """One row of the results table (met=None: reported, no bar)."""
    return {"benchmark": benchmark, "figure": figure, "value": value, "bar": target, "met": met}


def met_text(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**NO**")


def table(rows: Iterable[Sequence[object]], header: Sequence[str]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def loadavg() -> str:
    """The 1/5/15-minute load averages (other sessions share this machine)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_calibration(loops: int = 1_000_000, repeats: int = 5) -> float:
    """Millions of simple interpreter steps per second (best of `repeats`): a dict lookup, a
    comparison, a tuple and a list append per step, like the bare-loop floor. The machine's
    speed changes from day to day and minute to minute; this says how fast it was."""
    table_ = {i: i & 7 for i in range(8)}
    best = float("inf")
    for _ in range(repeats):
        out: list[tuple[int, bool]] = []
        append = out.append
        t0 = time.perf_counter()
        for i in range(loops):
            risk = table_[i & 7]
            append((risk, risk > 3))
        best = min(best, time.perf_counter() - t0)
    return loops / best / 1e6


def report(result: dict[str, Any]) -> None:
    """Print a benchmark's result: one JSON line, then its bars as a table."""
    result.setdefault("loadavg_at_end", loadavg())
    print(json.dumps(result, default=str, separators=(",", ":")))
    rows = [(b["figure"], b["value"], b["bar"], met_text(b["met"]).replace("*", "")) for b in result.get("bars", [])]
    if rows:
        print(table(rows, ("figure", "value", "bar", "met?")))
    sys.stdout.flush()
