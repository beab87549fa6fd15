"""`phase24 verify RUN_DIR`: check a run's journal hash chain and the integrity of its JSONL files."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from console import exit_codes
from core.errors import JournalError
from core.inert import inert
from core.journal import verify_journal
from core.jsonl import CorruptJsonl, read_jsonl


def cmd_verify(args: argparse.Namespace, console: Console | None = None) -> int:
    """Exit 0 when the journal chain is intact and no JSONL file has a corrupt line, else 3.

    A torn last line in a JSONL file is reported but does not fail verification: it is what
    an interrupted write leaves, the journal (not the JSONL files) is the audit record, and a
    resume repairs it. A missing run directory or journal raises JournalError (exit 2).
    """
    out = console or Console(highlight=False, soft_wrap=True)
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
