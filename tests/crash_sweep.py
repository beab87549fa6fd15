"""A random crash sweep: SIGKILL a LIVE run from outside at random moments, resume, check.

    python -m tests.crash_sweep --kills 1000            # any number; prints a summary, exit 1 on a violation
    python -m tests.crash_sweep --kills 200 --seed 7    # reproducible

Each trial runs `phase24 run SWEEP_PLAN --approve-all` in a forked child (this process has
already imported everything, so a trial costs a fork, not an interpreter start-up), kills
it with SIGKILL from this process after a random delay, sometimes kills the first resume
too, then resumes to the end and checks what the issue promises:

- no effect twice: at most one `effect` and one `compensation` line per action in
  simulated_effects.jsonl (the simulated external world), whatever the kill hit;
- every uncertain effect is UNKNOWN and reported: no intent stays PENDING, an effect
  without a DONE intent has an UNKNOWN one, and every UNKNOWN intent is in the summary;
- `verify` passes;
- rollback is complete: in every plan that ended FAILED, each reversible action done LIVE
  (intent DONE, before or after the crash) was compensated exactly once, or its
  compensation is UNKNOWN and reported.

Run directories go to /dev/shm when it exists (fsync is free there; SIGKILL loses no
written data either way), else to the system's temporary directory.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.cli import main as cli_main
from core import faults
from core.journal import JOURNAL_FILE, verify_journal

# ---------------------------------------------------------------- running the CLI in a fork


def fork_cli(
    argv: Sequence[str],
    log: Path,
    *,
    crash_at: str | None = None,
    kill_after_s: float | None = None,
    timeout_s: float = 120.0,
) -> int:
    """Run `phase24 ARGV` in a forked child; its stdout and stderr go to `log`.

    `crash_at` arms a crash point (core.faults) in the child; `kill_after_s` makes this
    process SIGKILL the child after that many seconds if it is still running. Returns the
    exit code, or -SIGKILL when it was killed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
            name, _, count = (crash_at or "").partition(":")
            faults._NAME, faults._TARGET = name, int(count) if count.isdigit() else 1
            faults._seen.clear()
            code = cli_main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            traceback.print_exc()
            code = 99
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = time.monotonic() + timeout_s
    killed_at = None if kill_after_s is None else time.monotonic() + kill_after_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        if killed_at is not None and now >= killed_at:
            os.kill(pid, signal.SIGKILL)
            killed_at = None
        elif now >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"phase24 {' '.join(argv)} did not finish in {timeout_s:g}s")
        time.sleep(0.0005 if killed_at is not None else 0.002)


# ---------------------------------------------------------------- the sweep's plan


def _act(action_id: str, agent: str, tool: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    simulate = {"latency_ms": extra.pop("latency_ms", 2)}
    simulate.update(extra.pop("simulate", {}))
    return {"id": action_id, "agent": agent, "tool": tool, "args": args, "confidence": 0.95, "simulate": simulate}


SWEEP_PLANS: list[dict[str, Any]] = [
    {
        "plan_id": "sweep_ok",
        "description": "Irreversible (approved) and reversible LIVE actions that all succeed.",
        "actions": [
            _act("a_fill", "ui", "form_fill", {"field": "name", "value": "Ada"}),
            _act("a_write", "db", "database_write", {"table": "orders", "id": 1}),
            _act("a_calc", "calc", "math_compute", {"expr": "6*7"}),
            _act("a_update", "crm", "ghl_update_contact", {"email": "ada@example.com", "tag": "vip"}),
            _act("a_file", "db", "file_operation", {"op": "write", "path": "/srv/a.txt"}),
            _act("a_fill2", "ui", "form_fill", {"field": "city", "value": "London"}),
        ],
    },
    {
        "plan_id": "sweep_fail",
        "description": "Reversible actions, an irreversible write, then a failing click: the rest is undone.",
        "actions": [
            _act("b_fill", "ui", "form_fill", {"field": "card", "value": "**** 4242"}),
            _act("b_note", "ui", "text_extract", {"field": "total"}),
            _act("b_calc", "calc", "math_compute", {"expr": "1+1"}),
            _act("b_write", "db", "database_write", {"table": "orders", "id": 2}),
            _act("b_inspect", "ui", "vision_inspect", {"region": "checkout"}),
            _act("b_click", "ui", "button_click", {"button": "Pay"}, simulate={"fail_in": ["LIVE"]}),
        ],
    },
]

REVERSIBLE_TOOLS = {"form_fill", "text_extract", "math_compute"}


def write_sweep_plan(path: Path) -> Path:
    path.write_text(json.dumps(SWEEP_PLANS, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the checks


def _effects(run_dir: Path) -> Counter[tuple[str, str]]:
    path = run_dir / "simulated_effects.jsonl"
    counts: Counter[tuple[str, str]] = Counter()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                counts[(record["kind"], record["action_id"])] += 1
    return counts


def _intents(run_dir: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{run_dir / JOURNAL_FILE}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT action_id, status FROM intents").fetchall())
    finally:
        conn.close()


def check_run(
    run_dir: Path,
    pending_at_kill: set[str],
    plans: Sequence[dict[str, Any]] = SWEEP_PLANS,
    must_fail: Sequence[str] = ("sweep_fail",),
) -> list[str]:
    """Every broken promise of a finished (resumed) run of `plans`, as text; empty when all hold."""
    problems: list[str] = []
    report = verify_journal(run_dir)
    if not report.ok:
        problems.append(f"verify fails: {report.problem}")
    effects = _effects(run_dir)
    for (kind, action_id), count in sorted(effects.items()):
        if count > 1:
            problems.append(f"{kind} of {action_id} happened {count} times")
    intents = _intents(run_dir)
    if "PENDING" in intents.values():
        problems.append(f"intents still PENDING: {sorted(a for a, s in intents.items() if s == 'PENDING')}")
    for action_id in pending_at_kill:
        if intents.get(action_id) != "UNKNOWN":
            problems.append(f"{action_id} was PENDING at the kill but is {intents.get(action_id)} after resume")
    for kind, action_id in effects:
        key = action_id if kind == "effect" else f"{action_id}:undo"
        if intents.get(key) not in ("DONE", "UNKNOWN"):
            problems.append(f"{kind} of {action_id} happened but its intent is {intents.get(key)}")
    summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
    reported = {i["action_id"] for i in summary.get("unknown_outcomes") or []}
    unknown = {a for a, s in intents.items() if s == "UNKNOWN"}
    if unknown - reported:
        problems.append(f"UNKNOWN intents not reported: {sorted(unknown - reported)}")
    statuses = {p["plan_id"]: p["status"] for p in summary["plans"]}
    if set(statuses) != {p["plan_id"] for p in plans}:
        problems.append(f"plans not all finished: {statuses}")
    for plan in plans:
        for action in plan["actions"]:
            if action["tool"] not in REVERSIBLE_TOOLS or intents.get(action["id"]) != "DONE":
                continue
            undo = intents.get(f"{action['id']}:undo")
            compensations = effects[("compensation", action["id"])]
            if statuses.get(plan["plan_id"]) == "FAILED":
                if not ((undo == "DONE" and compensations == 1) or undo == "UNKNOWN"):
                    problems.append(
                        f"rollback incomplete: {action['id']} done LIVE, plan FAILED, compensation intent {undo}, "
                        f"{compensations} compensation(s)"
                    )
            elif undo is not None or compensations:
                problems.append(f"{action['id']} compensated although plan {plan['plan_id']} succeeded")
    for plan_id in must_fail:
        if statuses.get(plan_id) != "FAILED":
            problems.append(f"{plan_id} ended {statuses.get(plan_id)}, not FAILED")
    return problems


# ---------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    trials: int = 0
    kills: int = 0
    double_kills: int = 0
    finished_before_kill: int = 0
    unknown_reported: int = 0
    compensations: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _pending(run_dir: Path) -> set[str]:
    if not (run_dir / JOURNAL_FILE).exists():
        return set()
    return {a for a, s in _intents(run_dir).items() if s == "PENDING"}


def _resume(run_dir: Path, log: Path, kill_after_s: float | None = None) -> int:
    return fork_cli(["resume", str(run_dir), "--approve-all"], log, kill_after_s=kill_after_s)


def run_sweep(kills: int, seed: int, base: Path, double_kill_rate: float = 0.2) -> SweepResult:
    """Trials of kill, resume (sometimes kill that too), resume, check, until `kills` runs were
    killed (a run that finishes before its kill moment is checked too, but not counted)."""
    rng = random.Random(seed)
    result = SweepResult()
    started = time.monotonic()
    plan = write_sweep_plan(base / "sweep_plan.json")
    run_args = ["--approve-all", "--retry-delay", "0"]
    # How long an unkilled run takes here: kill moments are drawn from [0, 1.2 x that].
    calibration = base / "calibration"
    t0 = time.monotonic()
    code = fork_cli(["run", str(plan), "--out", str(calibration), *run_args], base / "calibration.log")
    full = time.monotonic() - t0
    if code != 1:
        raise RuntimeError(f"an unkilled sweep run should exit 1 (its second plan fails), got {code}")
    problems = check_run(calibration, set())
    if problems:
        raise RuntimeError(f"an unkilled sweep run breaks the checks: {problems}")
    shutil.rmtree(calibration)
    trial = -1
    while result.kills < kills and result.trials < 3 * kills:
        trial += 1
        run_dir = base / f"t{trial}"
        log = base / f"t{trial}.log"
        delay = rng.uniform(0.0, 1.2 * full)
        code = fork_cli(["run", str(plan), "--out", str(run_dir), *run_args], log, kill_after_s=delay)
        result.trials += 1
        where = f"trial {trial} (seed {seed}, kill after {delay * 1000:.1f} ms)"
        if code != -signal.SIGKILL:
            result.finished_before_kill += 1
            if code not in (0, 1):
                result.failures.append(f"{where}: the run exited {code}: {log.read_text(errors='replace')[-400:]}")
            shutil.rmtree(run_dir, ignore_errors=True)
            log.unlink(missing_ok=True)
            continue
        result.kills += 1
        if not (run_dir / "run.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # killed before the run began: nothing to resume
            log.unlink(missing_ok=True)
            continue
        pending = _pending(run_dir)
        if rng.random() < double_kill_rate:
            code = _resume(run_dir, log, kill_after_s=rng.uniform(0.0, full))
            if code == -signal.SIGKILL:
                result.double_kills += 1
                pending |= _pending(run_dir)
        code = _resume(run_dir, log)
        text = log.read_text(errors="replace")
        if code not in (0, 1) or "Traceback" in text:
            result.failures.append(f"{where}: resume exited {code}: {text[-600:]}")
        else:
            problems = check_run(run_dir, pending)
            if problems:
                result.failures.append(f"{where}: {'; '.join(problems)} (run directory {run_dir})")
                continue
            summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
            result.unknown_reported += len(summary.get("unknown_outcomes") or [])
            result.compensations += sum(n for (kind, _), n in _effects(run_dir).items() if kind == "compensation")
        if not result.failures or not result.failures[-1].startswith(where):
            shutil.rmtree(run_dir, ignore_errors=True)
            log.unlink(missing_ok=True)
    result.seconds = time.monotonic() - started
    return result


def sweep_base() -> Path:
    shm = Path("/dev/shm")
    root = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="phase24-sweep-", dir=root))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="number of runs to SIGKILL")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories of violating trials")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    base = sweep_base()
    try:
        result = run_sweep(args.kills, seed, base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"crash sweep, seed {seed}: {result.trials} trials in {result.seconds:.1f} s; "
        f"{result.kills} runs killed ({result.double_kills} resumes killed too), "
        f"{result.finished_before_kill} finished before the kill; "
        f"{result.unknown_reported} UNKNOWN outcomes reported, {result.compensations} compensations; "
        f"{len(result.failures)} violations"
    )
    for failure in result.failures[:20]:
        print(f"  VIOLATION {failure}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
