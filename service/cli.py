"""`phase24 serve` and `phase24 token add`: the command-line side of the gate service."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.server import DEFAULT_HOST, DEFAULT_PORT, ServeOptions, serve
from service.tokens import ROLES, TOKENS_FILE, add_token

SERVICE_COMMANDS = ("serve", "token")


def add_service_commands(sub: Any) -> None:
    """Add `serve` and `token` to the `phase24` sub-command parser."""
    run = sub.add_parser("serve", help="run the gate as a service for live agents (HTTP API)")
    run.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}, loopback)")
    run.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    run.add_argument("--out", type=Path, help="output directory (default outputs/phase24/<run id>); holds tokens.json")
    run.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    run.add_argument(
        "--lease", type=float, default=None, metavar="S", help="seconds an agent has to report a grant's outcome"
    )
    run.add_argument("--approval-timeout", type=float, default=None, metavar="S", help="seconds an approval may wait")
    run.add_argument(
        "--seat-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds the operator seat stays held after its console's event stream is gone (default 10)",
    )
    run.add_argument("--dry-run-only", action="store_true", help="never escalate past DRY_RUN")
    run.add_argument("--live-floor", type=float, metavar="C", help="raise every LIVE confidence threshold to C")
    token = sub.add_parser("token", help="manage the service's API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    add = token_sub.add_parser("add", help="create a token and print it (stored hashed)")
    add.add_argument("--out", type=Path, required=True, help="the service's output directory")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("name", metavar="NAME", help="the agent's name (agent tokens) or the person's")


def run_service_command(args: argparse.Namespace) -> int:
    if args.command == "token":
        token = add_token(args.out / TOKENS_FILE, args.role, args.name)
        sys.stdout.write(token + "\n")
        return 0
    options = ServeOptions(
        host=args.host,
        port=args.port,
        out=args.out,
        allow_remote=args.allow_remote,
        approval_timeout_s=args.approval_timeout,
        dry_run_only=args.dry_run_only,
        live_floor=args.live_floor,
        **({"lease_s": args.lease} if args.lease is not None else {}),
        **({"seat_timeout_s": args.seat_timeout} if args.seat_timeout is not None else {}),
    )
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(options))
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (faster sockets), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
