"""`phase24 serve`: the gate service and its HTTP API on one event loop, stopped cleanly by a signal.

SIGTERM or SIGINT: the service stops accepting proposals, denies the approvals that wait,
settles outstanding grants as UNKNOWN, finishes the run's outputs and closes the journal;
the HTTP server lets the requests in flight finish, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from core.clock import SystemClock
from core.errors import ConfigError
from core.gate_service import DEFAULT_LEASE_S, GateService
from core.harness import RUN_RECORD, Phase24ExecutionConfig, make_run_id
from core.journal import JOURNAL_FILE
from service.app import create_app
from service.seat import DEFAULT_SEAT_TIMEOUT_S, OperatorSeat
from service.tokens import TOKENS_FILE, TokenStore, add_token

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8724


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    out: Path | None = None
    allow_remote: bool = False
    lease_s: float = DEFAULT_LEASE_S
    approval_timeout_s: float | None = None
    dry_run_only: bool = False
    live_floor: float | None = None
    seat_timeout_s: float = DEFAULT_SEAT_TIMEOUT_S


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn's server, with signals that stop the gate first and are not re-raised afterwards."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None], signals: bool = True) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._signals = signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self._signals:  # embedded in the console: its own keys stop it
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self._on_exit()


def prepare_out(options: ServeOptions, run_id: str) -> Path:
    out = options.out or Path("outputs/phase24") / run_id
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out names a file, not a directory")
    for name in (JOURNAL_FILE, RUN_RECORD):
        if (out / name).exists():
            raise ConfigError(
                f"{out}: --out already holds a run ({name}); choose another directory "
                "(`phase24 resume` settles an interrupted one)"
            )
    return out


@dataclass
class Listening:
    """A service about to start: its output directory, tokens and bound socket."""

    run_id: str
    out: Path
    tokens: TokenStore
    tokens_path: Path
    first_token: str | None
    sock: socket.socket
    url: str
    seat: OperatorSeat


def prepare(options: ServeOptions, clock: SystemClock, *, first_operator_token: bool = True) -> Listening:
    """Check the options, make the output directory and the token file, bind the socket."""
    if not is_loopback(options.host) and not options.allow_remote:
        raise ConfigError(f"--host: {options.host!r} is not a loopback address; add --allow-remote to bind it")
    if not options.seat_timeout_s > 0:
        raise ConfigError(f"--seat-timeout: must be a positive number of seconds, got {options.seat_timeout_s:g}")
    run_id = make_run_id(clock)
    out = prepare_out(options, run_id)
    out.mkdir(parents=True, exist_ok=True)
    tokens_path = out / TOKENS_FILE
    first_token = None
    if first_operator_token and not tokens_path.exists():
        first_token = add_token(tokens_path, "operator", "operator")
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # so, and with Nagle on, a keep-alive response in two writes waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port: cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{sock.getsockname()[1]}"
    seat = OperatorSeat(options.seat_timeout_s)
    return Listening(run_id, out, TokenStore(tokens_path), tokens_path, first_token, sock, url, seat)


def make_config(options: ServeOptions, out: Path) -> Phase24ExecutionConfig:
    return Phase24ExecutionConfig(
        output_dir=out,
        dry_run_only=options.dry_run_only,
        confidence_threshold_for_live=options.live_floor,
        **({"approval_timeout_s": options.approval_timeout_s} if options.approval_timeout_s is not None else {}),
    )


async def run_http(
    service: GateService,
    listening: Listening,
    pipeline: Coroutine[Any, Any, dict[str, Any]],
    announce: TextIO,
    *,
    signals: bool = True,
    on_server: Callable[[uvicorn.Server], None] = lambda server: None,
) -> dict[str, Any]:
    """Run the gate's pipeline and its HTTP API on this loop until the service stops."""
    server = _Server(
        uvicorn.Config(
            create_app(service, listening.tokens, listening.seat),
            log_level="warning",
            lifespan="off",
            access_log=False,
            # Nothing here reads the client's address; X-Forwarded-* from a local process is
            # not trusted either way, and the middleware is one more layer per request.
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        ),
        on_exit=lambda: service.request_stop("service stopped by a signal"),
        signals=signals,
    )
    on_server(server)
    task = asyncio.get_running_loop().create_task(pipeline)
    await service.started.wait()
    announce.write(f"phase24 serve: listening on {listening.url}  run {listening.run_id}  out {listening.out}\n")
    if listening.first_token is not None:
        announce.write(
            f"phase24 serve: operator token (shown once, stored hashed in {listening.tokens_path}): "
            f"{listening.first_token}\n"
        )
    announce.flush()
    try:
        await server.serve(sockets=[listening.sock])
    finally:
        service.request_stop("service stopped")
        summary = await task
        listening.sock.close()
    announce.write(
        f"phase24 serve: stopped; {service.counts['proposals']} proposals; journal {listening.out / JOURNAL_FILE}; "
        f"group commit: commits={service.group.commits} waiters={service.group.waiters}\n"
    )
    announce.flush()
    return summary


async def serve(options: ServeOptions, announce: TextIO = sys.stdout) -> dict[str, Any]:
    clock = SystemClock()
    listening = prepare(options, clock)
    service = GateService(
        make_config(options, listening.out), clock=clock, run_id=listening.run_id, lease_s=options.lease_s
    )
    return await run_http(service, listening, service.serve(), announce)
