"""`phase24 mcp-gateway [options] -- UPSTREAM_COMMAND [ARGS...]` (or `--config FILE`)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError

if TYPE_CHECKING:
    from gateway.attached import AttachOptions

DEFAULT_OUT = Path("outputs/phase24/mcp-gateway")


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number within 0..1, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"expected a number within 0..1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 86_400):
        raise argparse.ArgumentTypeError(f"expected finite seconds, 0 < S <= 86400, got {text!r}")
    return value


def _attach(args: argparse.Namespace, agent: str) -> AttachOptions:
    """--attach URL --token-file F; the embedded gate's own options are refused with them."""
    from gateway.attached import attach_options

    if args.attach is None or args.token_file is None:
        raise ConfigError("mcp-gateway: --attach URL and --token-file F go together")
    for given, flag in (
        (args.out, "--out"),
        (args.state_dir, "--state-dir"),
        (args.approve_all or None, "--approve-all"),
    ):
        if given is not None:
            raise ConfigError(
                f"mcp-gateway: {flag} is the embedded gate's; with --attach the service journals and decides"
            )
    return attach_options(args.attach, args.token_file, agent)


def add_gateway_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser(
        "mcp-gateway",
        help="an MCP server (stdio) that puts an upstream MCP server's tools behind the gate",
        description="Re-expose an upstream MCP server's tools; every call goes MOCK -> DRY_RUN -> LIVE through "
        "the embedded gate (deny by default) or, with --attach, through a running gate service whose operator "
        "decides. Stdout is the MCP channel; logs go to stderr.",
    )
    gw.add_argument(
        "--attach",
        metavar="URL",
        help="join a running `phase24 serve` at URL as one of its agents (its operator approves) instead of "
        "the embedded gate",
    )
    gw.add_argument(
        "--token-file", type=Path, metavar="F", help="with --attach: a file holding the agent token (`token add`)"
    )
    gw.add_argument("--config", type=Path, metavar="FILE", help="TOML file naming the upstreams (see README)")
    gw.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"journal and outputs (default {DEFAULT_OUT}; not with --attach)",
    )
    gw.add_argument("--approve-all", action="store_true", help="grant every approval (demos only; default denies)")
    gw.add_argument("--state-dir", type=Path, default=None, metavar="DIR", help="where the system-wide lock lives")
    gw.add_argument(
        "--agent",
        default=None,
        help="the agent name calls are recorded under (default: the config's `agent`, else mcp_agent); "
        "with --attach, the name the agent token was issued for",
    )
    gw.add_argument("--confidence", type=_unit, default=None, metavar="C", help="default confidence (0.9)")
    gw.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="per-call timeout (default 30)")
    gw.add_argument("upstream", nargs=argparse.REMAINDER, help="-- UPSTREAM_COMMAND [ARGS...]")


def event_loop_options() -> dict[str, Any]:
    """anyio's options for the gateway's event loop: uvloop's when it is installed (a project
    dependency off Windows: less CPU per call in the loop, its pipes and its tasks), else asyncio's."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def cmd_gateway(args: argparse.Namespace) -> int:
    import anyio

    from core.mcp_contracts import DEFAULT_CONFIDENCE, DEFAULT_TIMEOUT_S
    from gateway.config import GatewayConfig, command_line_upstream, load_config
    from gateway.embedded import GatewayOptions
    from gateway.server import serve, serve_attached

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    command = list(args.upstream)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.config is not None and command:
        raise ConfigError("mcp-gateway: give either --config FILE or `-- UPSTREAM_COMMAND`, not both")
    if args.config is not None:
        cfg = load_config(args.config)
        if args.confidence is not None or args.timeout is not None:
            raise ConfigError("mcp-gateway: with --config, set confidence and timeout_s in the file")
    else:
        upstream = command_line_upstream(
            command,
            DEFAULT_CONFIDENCE if args.confidence is None else args.confidence,
            DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout,
        )
        cfg = GatewayConfig(upstreams=(upstream,))
    if args.agent is not None:
        if not 1 <= len(args.agent) <= 128:
            raise ConfigError("mcp-gateway: --agent: expected a name of 1-128 characters")
        cfg = replace(cfg, agent=args.agent)
    try:
        if args.attach is not None or args.token_file is not None:
            return anyio.run(serve_attached, cfg, _attach(args, cfg.agent), backend_options=event_loop_options())
        out = DEFAULT_OUT if args.out is None else args.out
        options = GatewayOptions(out=out, approve_all=args.approve_all, state_dir=args.state_dir)
        return anyio.run(serve, cfg, options, backend_options=event_loop_options())
    except BaseExceptionGroup as group:
        # A failure inside the gateway's task group: report its first cause like any other
        # (one line, the documented exit code), not as a group traceback.
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]
        raise first from None
