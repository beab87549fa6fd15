"""`phase24`: run plans headless, watch them in the console, verify or resume a run.

Exit codes: 0 success, 1 a plan failed, 2 bad input (a clear one-paragraph error, never a
traceback) or a run directory already being resumed, 3 a journal failed verification,
4 a storage failure (the run failed closed; a report on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from console import exit_codes
from console.console_options import add_arm_delay_option, add_console_options
from console.lock_cli import add_lock_commands, add_state_dir_option

DESCRIPTION = "Phase 24 operator console: multi-agent tool orchestration with MOCK -> DRY_RUN -> LIVE escalation."


def _delay_range(text: str) -> tuple[float, float]:
    from core.harness import MAX_RETRY_DELAY_S

    try:
        low, _, high = text.partition("-")
        value = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LOW-HIGH, got {text!r}") from None
    if not (math.isfinite(value[0]) and math.isfinite(value[1]) and 0 <= value[0] <= value[1] <= MAX_RETRY_DELAY_S):
        raise argparse.ArgumentTypeError(
            f"expected finite seconds with 0 <= LOW <= HIGH <= {MAX_RETRY_DELAY_S:g}, got {text!r}"
        )
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _add_run_options(parser: argparse.ArgumentParser, plans_required: bool = True) -> None:
    parser.add_argument(
        "plans",
        nargs="+" if plans_required else "*",
        type=Path,
        metavar="PLAN_OR_DIR",
        help="plan files, or directories of *.json plans",
    )
    parser.add_argument("--validations", type=Path, help="Phase 22 validations file")
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: outputs/phase24/<run id>); must not hold a run",
    )
    parser.add_argument("--dry-run-only", action="store_true", help="never escalate past DRY_RUN")
    parser.add_argument("--max-live", type=int, metavar="N", help="at most N LIVE escalations in the run")
    parser.add_argument(
        "--live-floor",
        type=_finite,
        metavar="C",
        help="raise every LIVE confidence threshold to at least C",
    )
    parser.add_argument(
        "--approval-timeout",
        type=_finite,
        default=None,
        metavar="S",
        help="seconds an approval may wait before it is denied",
    )
    parser.add_argument(
        "--retry-delay",
        type=_delay_range,
        default=(5.0, 15.0),
        metavar="LOW-HIGH",
        help="seconds to wait before retrying a timed-out tool (default 5-15)",
    )
    parser.add_argument("--seed", type=int, default=24, help="seed for the run's randomness (retry delays)")
    add_state_dir_option(parser)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="executor config (TOML): plugins to load and their settings; their effects go under OUT/world",
    )
    parser.add_argument(
        "--executors",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="executor plugins to load: files, sqlite, outbox, a phase24.executors entry point, or module:attribute",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phase24", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run plans headless and print a summary")
    _add_run_options(run)
    run.add_argument(
        "--approve-all",
        action="store_true",
        help="grant every approval (demos only; the default denies)",
    )
    watch = sub.add_parser("console", help="run plans in the live operator console")
    _add_run_options(watch, plans_required=False)
    add_arm_delay_option(watch)
    watch.add_argument("--attach", metavar="URL", help="attach to a running `phase24 serve` instead of running plans")
    watch.add_argument("--token", help="the token for --attach (default: $PHASE24_TOKEN)")
    watch.add_argument("--read-only", action="store_true", help="with --attach: watch only ([RO], no command keys)")
    watch.add_argument(
        "--port",
        type=int,
        default=None,
        help="without a plan: the port the embedded service listens on (loopback; default 8724);"
        " with --web: the browser page's port (default 8725)",
    )
    watch.add_argument(
        "--web",
        action="store_true",
        help="serve the console to browsers (textual-serve) beside a gate service; an operator token logs in",
    )
    watch.add_argument(
        "--api-port", type=int, default=None, help="with --web: the gate service's API port for agents (default 8724)"
    )
    watch.add_argument("--host", default=None, help="with --web: the address to bind (default 127.0.0.1)")
    watch.add_argument("--allow-remote", action="store_true", help="with --web: allow a non-loopback --host")
    add_console_options(watch)
    verify = sub.add_parser("verify", help="check a run's journal hash chain")
    verify.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    resume = sub.add_parser("resume", help="resume an interrupted run from its journal")
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    resume.add_argument(
        "--console",
        action="store_true",
        help="resume in the console (UNKNOWN outcomes go to the operator)",
    )
    resume.add_argument(
        "--approve-all", action="store_true", help="grant every new approval (demos only; the default denies)"
    )
    replay = sub.add_parser("replay", help="play a finished or crashed run's journal in the console (read-only)")
    replay.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    replay.add_argument(
        "--speed", type=_speed, default=1.0, metavar="X", help="times real time (default 1; quiet stretches cut to 2 s)"
    )
    replay.add_argument("--paused", action="store_true", help="start paused (p plays, . steps one event)")
    add_console_options(replay)
    add_lock_commands(sub)
    from service.cli import add_service_commands

    add_service_commands(sub)
    from gateway.cli import add_gateway_command

    add_gateway_command(sub)
    return parser


def _speed(text: str) -> float:
    from console.replay import speed_value

    return speed_value(text)


class BadInput(Exception):
    """A problem with what the operator gave us; printed as one paragraph, exit 2."""


def _fail(message: str) -> int:
    from core.inert import inert

    sys.stderr.write(f"phase24: error: {inert(message, 4000)}\n")
    return exit_codes.BAD_INPUT


def prepare(args: argparse.Namespace, approve_all: bool = False, gate: Any = None) -> Any:
    """Load the inputs and build a harness; raises BadInput or PlanError."""
    from pydantic import ValidationError

    from core.approval import PolicyGate
    from core.clock import SystemClock
    from core.contracts import standard_registry
    from core.executor_config import combined_spec, load_setup
    from core.harness import Phase24ExecutionConfig, Phase24Harness, make_run_id
    from core.plans import load_plans, load_validations

    spec = combined_spec(getattr(args, "config", None), getattr(args, "executors", []))
    setup = load_setup(spec) if spec is not None else None  # plugins and contracts, checked before the plans
    registry = setup.registry if setup is not None else standard_registry()
    plans = load_plans(args.plans, registry)
    validations = load_validations(args.validations) if args.validations else []
    clock = SystemClock()
    run_id = make_run_id(clock)
    out = args.out or Path("outputs/phase24") / run_id
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out names a file, not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"{parent}: Not a directory; --out {out} cannot be created below it")
            break
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out}: output directory is not empty; choose another --out (a run's outputs are never mixed)")
    try:
        config = Phase24ExecutionConfig(
            output_dir=out,
            dry_run_only=args.dry_run_only,
            max_live_escalations=args.max_live,
            confidence_threshold_for_live=args.live_floor,
            retry_delay_range_s=args.retry_delay,
            seed=args.seed,
            state_dir=args.state_dir,
            **({"approval_timeout_s": args.approval_timeout} if args.approval_timeout is not None else {}),
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BadInput(f"option {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    harness = Phase24Harness(
        config,
        gate=gate or PolicyGate(approve_all=approve_all),
        clock=clock,
        registry=registry,
        run_id=run_id,
    )
    if setup is not None:
        harness.use_executors(setup)
    harness.load_phase21_plans(plans)
    harness.load_phase22_validations(validations)
    return harness


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from console.report import print_summary
    from console.run_progress import RunProgress
    from console.safe_stdout import SafeStdout
    from console.storage_failure import report_storage_failure
    from core.errors import JournalError

    harness = prepare(args, approve_all=args.approve_all)
    progress = RunProgress.for_output(sys.stdout)  # None unless stdout is a terminal
    unsubscribe = harness.bus.subscribe(progress) if progress is not None else None
    try:
        if progress is not None:
            with progress:
                summary = harness.execute_orchestration_pipeline()
        else:
            summary = harness.execute_orchestration_pipeline()
    except (OSError, JournalError) as exc:
        return report_storage_failure(harness, exc)
    finally:
        if unsubscribe is not None:
            unsubscribe()
    out = harness.config.output_dir
    try:
        conflicts = json.loads((out / "tool_conflicts.json").read_text(encoding="utf-8"))
        health = json.loads((out / "system_health.json").read_text(encoding="utf-8"))
        print_summary(Console(file=SafeStdout()), summary, conflicts, health, out)  # type: ignore[arg-type]
    except (OSError, ValueError):
        if not summary.get("storage_error"):
            raise
    if summary.get("storage_error"):
        return report_storage_failure(harness, None)
    return exit_codes.for_summary(summary)


def cmd_console(args: argparse.Namespace) -> int:
    if args.web:
        from console.web import run_web

        return run_web(args)
    for given, name in ((args.api_port, "--api-port"), (args.host, "--host"), (args.allow_remote, "--allow-remote")):
        if given not in (None, False):
            raise BadInput(f"{name}: only with --web")
    if args.port is None:
        args.port = 8724
    if args.attach:
        from console.remote import run_attached

        return run_attached(args)
    if not args.plans:
        from console.embedded import run_embedded

        return run_embedded(args)
    from console.app import run_console

    return run_console(args)


def main(argv: Sequence[str] | None = None) -> int:
    from core.errors import Phase24Error, VerificationFailed

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "console":
            return cmd_console(args)
        if args.command == "verify":
            from console.journal_cli import cmd_verify

            return cmd_verify(args)
        if args.command == "replay":
            from console.replay import cmd_replay

            return cmd_replay(args)
        if args.command == "resume":
            from console.journal_cli import cmd_resume

            return cmd_resume(args)
        if args.command == "mcp-gateway":
            from gateway.cli import cmd_gateway

            return cmd_gateway(args)
        if args.command in ("lock", "unlock", "lock-status"):
            from console.lock_cli import cmd_lock, cmd_lock_status, cmd_unlock

            return {"lock": cmd_lock, "unlock": cmd_unlock, "lock-status": cmd_lock_status}[args.command](args)
        if args.command in ("serve", "token"):
            from service.cli import run_service_command

            return run_service_command(args)
    except BadInput as exc:
        return _fail(str(exc))
    except VerificationFailed as exc:
        _fail(str(exc))
        return exit_codes.VERIFY_FAILED
    except Phase24Error as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return exit_codes.BAD_INPUT


if __name__ == "__main__":
    # Through the importable module, not this `__main__` copy: errors other modules raise
    # (KeymapError subclasses console.cli.BadInput) must be the classes `main` catches.
    from console.cli import main as _main

    raise SystemExit(_main())
