"""`phase24 lock` and `phase24 unlock`: the system-wide lock from a shell (core/lock_state.py).

Locking needs no confirmation (the safe direction). Unlocking asks on the terminal unless
`--yes` is given; with no terminal to ask on and no `--yes`, it refuses (exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TextIO

from console import exit_codes
from core.inert import inert
from core.lock_state import SystemLockState


def add_state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the system-wide lock lives (default: $PHASE24_STATE_DIR, else ~/.local/state/phase24)",
    )


def add_lock_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lock = sub.add_parser("lock", help="lock the whole system to MOCK (every run, now and later)")
    lock.add_argument("--reason", required=True, help="why (recorded with who and when)")
    add_state_dir_option(lock)
    unlock = sub.add_parser("unlock", help="lift the system-wide lock (asks to confirm unless --yes)")
    unlock.add_argument("--reason", required=True, help="why (recorded with who and when)")
    unlock.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_state_dir_option(unlock)
    status = sub.add_parser("lock-status", help="print whether the system is locked, and why")
    add_state_dir_option(status)


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def cmd_lock(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    state = SystemLockState(args.state_dir)
    record = state.lock(args.reason, _who())
    out.write(f"System LOCKED (MOCK only) by {inert(record.by)}: {inert(record.reason, 500)}. State in {state.path}\n")
    return exit_codes.OK


def cmd_unlock(args: argparse.Namespace, out: TextIO = sys.stdout, stdin: TextIO = sys.stdin) -> int:
    state = SystemLockState(args.state_dir)
    current = state.read()
    if not current.locked:
        out.write("The system is not locked; nothing to do.\n")
        return exit_codes.OK
    if not args.yes:
        if not stdin.isatty():
            sys.stderr.write("phase24: error: unlock needs a confirmation: run it on a terminal, or pass --yes\n")
            return exit_codes.BAD_INPUT
        out.write(
            f"The system is locked: {inert(current.reason, 500)} (by {inert(current.by)}).\n"
            "Unlock? Actions may escalate above MOCK again (approvals still apply). Type 'unlock' to confirm: "
        )
        out.flush()
        if stdin.readline().strip() != "unlock":
            out.write("Not unlocked.\n")
            return exit_codes.BAD_INPUT
    record = state.unlock(args.reason, _who())
    out.write(f"System unlocked by {inert(record.by)}: {inert(record.reason, 500)}.\n")
    return exit_codes.OK


def cmd_lock_status(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    record = SystemLockState(args.state_dir).read()
    if record.locked:
        out.write(f"LOCKED since {record.at or '?'} by {inert(record.by)}: {inert(record.reason, 500)}\n")
        return exit_codes.LOCKED
    out.write("unlocked\n")
    return exit_codes.OK
