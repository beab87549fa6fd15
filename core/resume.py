"""Picking a run up after a crash: what finished, what the journal says, what remains.

Finished plans are never run again. The unfinished ones run again from the start: MOCK
and DRY_RUN have no external effects, and every LIVE action with an effect consults the
journal's intents first (DONE is not repeated, PENDING/UNKNOWN is never retried).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.canonical import loads_strict
from core.errors import JournalError, VerificationFailed
from core.events import ConflictDetected, ConflictResolved, PlanFinished
from core.journal import JOURNAL_FILE, read_events, verify_journal
from core.jsonl import read_jsonl, repair_torn_tail
from core.orchestrator import OrchestrationResult
from core.outputs import JSONL_FILES, TOOL_EXECUTION_LOG
from core.plans import ToolExecutionPlan
from core.run_status import read_last_run


@dataclass
class PriorRun:
    """What the interrupted run had already finished."""

    statuses: list[PlanFinished] = field(default_factory=list)
    results: list[OrchestrationResult] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    by_strategy: Counter[str] = field(default_factory=Counter)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    torn_tails: dict[str, int] = field(default_factory=dict)

    def merge_conflicts(self, summary: dict[str, Any]) -> dict[str, Any]:
        by_type = {k: v + self.by_type.get(k, 0) for k, v in summary["by_type"].items()}
        by_strategy = {k: v + self.by_strategy.get(k, 0) for k, v in summary["by_resolution_strategy"].items()}
        return {
            **summary,
            "total_conflicts": sum(by_type.values()),
            "by_type": by_type,
            "by_resolution_strategy": by_strategy,
            "conflicts": [*self.conflicts, *summary["conflicts"]][-1000:],
        }


@dataclass
class ResumeInput:
    run_id: str
    config: dict[str, Any]
    validations: list[dict[str, Any]]
    remaining: list[ToolExecutionPlan]
    prior: PriorRun
    locked: str = ""


def parse_run_record(
    text: str,
) -> tuple[str, dict[str, Any], list[dict[str, Any]], list[ToolExecutionPlan]]:
    """(run id, config, validations, plans) from the text of run.json, as a resume reads it.

    Strict JSON (no NaN or Infinity) and the same validation as a plan file, so an action
    reloaded here hashes exactly as it did when the run recorded its intents.
    """
    record = loads_strict(text)
    plans = [ToolExecutionPlan.model_validate(p) for p in record["plans"]]
    return str(record["run_id"]), dict(record["config"]), list(record["validations"]), plans


def load_run(run_dir: Path) -> ResumeInput:
    """Verify the journal, repair torn JSONL tails, and work out what is left to do."""
    from core.harness import RUN_RECORD

    report = verify_journal(run_dir)
    if not report.ok:
        where = f" at record {report.first_bad_seq}" if report.first_bad_seq is not None else ""
        raise VerificationFailed(
            f"{run_dir}: the journal fails verification{where}: {report.problem}; not resuming (nothing was run)"
        )
    record_path = run_dir / RUN_RECORD
    try:
        run_id, config, validations, plans = parse_run_record(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JournalError(f"{record_path}: missing; this directory does not hold a resumable run") from None
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        raise JournalError(f"{record_path}: unreadable run record ({type(exc).__name__}: {exc})") from None

    prior = PriorRun()
    for name in JSONL_FILES:
        path = run_dir / name
        if path.exists():
            removed = repair_torn_tail(path)
            if removed:
                prior.torn_tails[name] = removed

    finished: dict[str, PlanFinished] = {}
    detected: dict[str, ConflictDetected] = {}
    resolved: dict[str, ConflictResolved] = {}
    for event in read_events(run_dir):
        if isinstance(event, PlanFinished):
            finished[event.plan_id] = event
        elif isinstance(event, ConflictDetected):
            detected[event.conflict_id] = event
        elif isinstance(event, ConflictResolved):
            resolved[event.conflict_id] = event
    prior.statuses = sorted(finished.values(), key=lambda e: e.seq)
    for conflict_id, d in detected.items():
        if d.plan_id not in finished:
            continue
        prior.by_type[d.conflict_type] += 1
        r = resolved.get(conflict_id)
        if r is not None:
            prior.by_strategy[r.strategy] += 1
        prior.conflicts.append(
            {
                **d.model_dump(
                    mode="json",
                    include={
                        "conflict_id",
                        "conflict_type",
                        "plan_id",
                        "agents",
                        "tool",
                        "resource",
                        "action_ids",
                        "detail",
                    },
                ),
                "strategy": r.strategy if r else None,
                "outcome": r.outcome if r else None,
            }
        )
    log = run_dir / TOOL_EXECUTION_LOG
    if log.exists():
        seen: set[str] = set()
        for line in read_jsonl(log):
            plan_id = line.get("plan_id")
            if plan_id in finished and plan_id not in seen:
                seen.add(plan_id)
                prior.results.append(OrchestrationResult.model_validate(line["result"]))
    remaining = [p for p in plans if p.plan_id not in finished]
    # The journal's lock, else the lock a storage failure could only leave in run_status
    # (or the lock an unprovable ending calls for): never start unlocked on a guess.
    locked = _persisted_lock(run_dir) or read_last_run(run_dir).lock_reason
    return ResumeInput(run_id, config, validations, remaining, prior, locked)


def _persisted_lock(run_dir: Path) -> str:
    """The lock reason the journal holds ("" when unlocked), read without opening it for writing."""
    path = run_dir / JOURNAL_FILE
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM state WHERE key = 'locked'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: cannot read the lock state: {exc}") from None
    return str(row[0]) if row else ""
