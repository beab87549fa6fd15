"""`phase24 verify RUN_DIR`: check a run's journal hash chain and the integrity of its JSONL files."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from console import exit_codes
from console.safe_stdout import SafeStdout
from core.errors import JournalError
from core.inert import inert
from core.journal import verify_journal
from core.jsonl import CorruptJsonl, read_jsonl
from core.run_dir_lock import RunDirLock


def cmd_verify(args: argparse.Namespace, console: Console | None = None) -> int:
    """Exit 0 when the journal chain is intact and no JSONL file has a corrupt line, else 3.

    A torn last line in a JSONL file is reported but does not fail verification: it is what
    an interrupted write leaves, the journal (not the JSONL files) is the audit record, and a
    resume repairs it. A missing run directory or journal raises JournalError (exit 2).
    """
    out = console or Console(file=SafeStdout(), highlight=False, soft_wrap=True)  # type: ignore[arg-type]
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise JournalError(f"{run_dir}: no such run directory")
    report = verify_journal(run_dir)
    ok = report.ok
    if report.ok:
        out.print(Text(f"journal OK: {report.records} records, chain intact"))
    else:
        where = f" at record {report.first_bad_seq}" if report.first_bad_seq is not None else ""
        out.print(Text(f"journal BROKEN{where}: {inert(report.problem)}", style="bold red"))
    for path in sorted(run_dir.glob("*.jsonl")):
        name = inert(path.name, 200)
        try:
            records = read_jsonl(path)
        except CorruptJsonl as exc:
            ok = False
            out.print(Text(f"{name}: CORRUPT at line {exc.line}: {inert(exc.reason)}", style="bold red"))
            continue
        except OSError as exc:
            ok = False
            out.print(Text(f"{name}: cannot be read: {inert(exc.strerror or exc)}", style="bold red"))
            continue
        if records.torn_line is not None:
            out.print(
                Text(
                    f"{name}: {len(records)} records; torn last line {records.torn_line} "
                    f"({records.torn_tail_bytes} bytes, an interrupted write) ignored, repairable",
                    style="yellow",
                )
            )
        else:
            out.print(Text(f"{name}: {len(records)} records"))
    return exit_codes.OK if ok else exit_codes.VERIFY_FAILED


def cmd_resume(args: argparse.Namespace) -> int:
    """`phase24 resume RUN_DIR [--console]`: continue an interrupted run from its journal.

    Finished plans are not run again; LIVE actions whose intent has no outcome are UNKNOWN:
    never retried. Headless, they fail closed (listed here, exit 1); in the console they are
    shown to the operator.
    """
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise JournalError(f"{run_dir}: no such run directory")
    # Held while this resume runs: a concurrent resume of the same run fails here (exit 2).
    lock = RunDirLock.acquire(run_dir)
    try:
        return _resume_locked(args, run_dir)
    finally:
        lock.release()


def _resume_locked(args: argparse.Namespace, run_dir: Path) -> int:
    import json

    from core.approval import PolicyGate
    from core.clock import SystemClock
    from core.harness import Phase24Harness

    if getattr(args, "console", False):
        from console.app import ConsoleGate, make_app

        console_gate = ConsoleGate()
        harness = Phase24Harness.from_interrupted_run(run_dir, gate=console_gate, clock=SystemClock())
        code = make_app(harness, console_gate).run()
        return code if code is not None else exit_codes.OK

    from console.report import print_summary
    from console.storage_failure import report_storage_failure

    gate = PolicyGate(approve_all=getattr(args, "approve_all", False))
    harness = Phase24Harness.from_interrupted_run(run_dir, gate=gate, clock=SystemClock())
    out = Console(file=SafeStdout(), highlight=False, soft_wrap=True)  # type: ignore[arg-type]
    if harness.prior is not None and harness.prior.torn_tails:
        for name, removed in sorted(harness.prior.torn_tails.items()):
            out.print(Text(f"repaired a torn last line in {inert(name)} ({removed} bytes removed)", style="yellow"))
    try:
        summary = harness.execute_orchestration_pipeline()
    except (OSError, JournalError) as exc:
        return report_storage_failure(harness, exc)
    try:
        conflicts = json.loads((run_dir / "tool_conflicts.json").read_text(encoding="utf-8"))
        health = json.loads((run_dir / "system_health.json").read_text(encoding="utf-8"))
        print_summary(out, summary, conflicts, health, run_dir)
    except (OSError, ValueError):
        if not summary.get("storage_error"):
            raise
    unknown = summary.get("unknown_outcomes") or []
    for intent in unknown:
        out.print(
            Text(
                f"UNKNOWN outcome, not retried: {inert(intent.get('tool'))} ({inert(intent.get('plan_id'))}/"
                f"{inert(intent.get('action_id'))}, agent {inert(intent.get('agent'))}): check the real system",
                style="bold red",
            )
        )
    if summary.get("storage_error"):
        return report_storage_failure(harness, None)
    if unknown:
        return exit_codes.PLAN_FAILED
    return exit_codes.for_summary(summary)
