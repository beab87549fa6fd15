"""`phase24 console --web`: the operator console in a browser, through textual-serve.

One process holds the gate: the same `GateService` and HTTP API as `phase24 serve` (agents
propose on `--api-port`, default 8724). Beside it, an aiohttp server on `--port` (default
8725) serves textual-serve's page. Every browser connection that carries an operator's
session runs its own console process, `python -m console.web --attach API_URL` (an attached
console, as `console --attach`, with the gate's `--keys`, `--no-bell`, `--desktop-notify`),
with that operator's token in its environment (`PHASE24_TOKEN`, never on a command line):
what the browser shows is the events of the one gate, and what its keys answer goes through
the same command API, so the gate records the decision under that operator's name
(`operator:NAME`) in the journal, as for any attached console.

Access: an operator token (`phase24 token add --out DIR --role operator NAME`, the same
hashed token file as the service's) is exchanged once, by the login form or `/?token=...`,
for a session cookie (HttpOnly, SameSite=Strict; the token itself is kept server-side only).
No valid operator session: 401 (a viewer's or agent's token: 403) and no console process is
started. The websocket also refuses a foreign `Origin`, and, bound to loopback (the
default), a `Host` that is not a loopback name (DNS rebinding). Any other `--host` needs
`--allow-remote`, as for `phase24 serve`. At most `MAX_CONSOLES` browser consoles at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import ipaddress
import json
import logging
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jinja2
import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from console import exit_codes
from core.clock import SystemClock
from core.errors import ConfigError
from core.gate_service import GateService
from service.server import ServeOptions, is_loopback, make_config, prepare, run_http
from service.tokens import TokenStore

DEFAULT_WEB_PORT = 8725
DEFAULT_API_PORT = 8724
COOKIE = "phase24_console_{port}"
"""The session cookie's name: per port, as browsers send a host's cookies to all its ports."""
MAX_CONSOLES = 8
"""Browser consoles at once (each is a Python process): more get 503."""
STOP_CONSOLE_S = 10.0
"""How long a console process has to quit when its browser leaves, before it is killed."""
MAX_SESSIONS = 1000

log = logging.getLogger("phase24.web")

_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Phase 24 operator console</title>
<style>body{{background:#0c181f;color:#eee;font-family:monospace;display:flex;justify-content:center;
margin-top:15vh}}form{{background:#12232d;padding:2em}}input{{width:32em;margin:.5em 0}}
.error{{color:#f88}}</style></head>
<body><form method="post" action="/login">
<h1>Phase 24 operator console</h1>
<p class="error">{message}</p>
<label for="token">Operator token</label><br>
<input id="token" name="token" type="password" autocomplete="off" autofocus><br>
<button type="submit">Log in</button>
<p>A token: <code>phase24 token add --out DIR --role operator NAME</code></p>
</form></body></html>
"""


@dataclass(frozen=True)
class WebOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_WEB_PORT
    api_port: int = DEFAULT_API_PORT
    out: Path | None = None
    allow_remote: bool = False
    approval_timeout_s: float | None = None
    dry_run_only: bool = False
    live_floor: float | None = None
    keys: Path | None = None
    no_bell: bool = False
    desktop_notify: bool = False
    arm_delay: float | None = None

    def serve_options(self) -> ServeOptions:
        return ServeOptions(
            host=self.host,
            port=self.api_port,
            out=self.out,
            allow_remote=self.allow_remote,
            approval_timeout_s=self.approval_timeout_s,
            dry_run_only=self.dry_run_only,
            live_floor=self.live_floor,
        )


def console_command(api_url: str, options: WebOptions) -> str:
    """The shell command each browser connection runs (textual-serve starts it with a shell)."""
    given = ["--keys", str(options.keys.resolve())] if options.keys is not None else []
    given += ["--no-bell"] if options.no_bell else []
    given += ["--desktop-notify"] if options.desktop_notify else []
    given += ["--arm-delay", repr(options.arm_delay)] if options.arm_delay is not None else []
    # exec: the shell becomes the console, so the process textual-serve stops (or kills) is the console itself.
    return "exec " + shlex.join([sys.executable, "-m", "console.web", "--attach", api_url, *given])


def browser_console(argv: list[str]) -> int:
    """One browser's console process: `phase24 console --attach URL` with the web gate's keys
    file, and the operator's token from `PHASE24_TOKEN`."""
    from console.app import OperatorConsole
    from console.console_options import (
        add_arm_delay_option,
        add_console_options,
        apply_console_options,
        arm_delay_of,
        load_console_keymap,
    )
    from console.remote import AttachError, attached_app
    from core.inert import inert

    parser = argparse.ArgumentParser(prog="phase24 console --web (one browser's console)")
    parser.add_argument("--attach", required=True, metavar="URL")
    add_console_options(parser)
    add_arm_delay_option(parser)
    args = parser.parse_args(argv)
    keymap = load_console_keymap(args, OperatorConsole)
    try:
        token = os.environ.get("PHASE24_TOKEN", "")
        app = attached_app(args.attach, token, read_only=False, arm_delay=arm_delay_of(args))
    except AttachError as exc:
        sys.stderr.write(f"phase24: error: {inert(str(exc), 2000)}\n")
        return exit_codes.BAD_INPUT
    apply_console_options(app, args, keymap)
    code = app.run()
    return code if code is not None else exit_codes.OK


class _ConsoleProcess(AppService):
    """textual-serve's per-connection app process, with the operator's token in its environment
    only, and killed if it does not quit in time."""

    def __init__(self, command: str, token: str, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self._token = token

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width=width, height=height)
        environment["PHASE24_TOKEN"] = self._token
        return environment

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(super().stop(), STOP_CONSOLE_S)
        except (TimeoutError, OSError, RuntimeError):
            pass
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), STOP_CONSOLE_S)


def _host_name(host_header: str) -> str:
    """`127.0.0.1:8725` -> `127.0.0.1`, `[::1]:8725` -> `::1`."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def _loopback_name(host_header: str) -> bool:
    name = _host_name(host_header).lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class WebConsole:
    """The browser side: login, the page, and one console process per websocket."""

    def __init__(self, command: str, tokens: TokenStore, *, port: int, loopback_only: bool, title: str) -> None:
        self.command = command
        self.cookie = COOKIE.format(port=port)
        self.tokens = tokens
        self.loopback_only = loopback_only
        self.title = title
        self.sessions: dict[str, str] = {}  # session id -> the operator's token (server-side only)
        self.consoles: set[web.WebSocketResponse] = set()
        self.download_manager = DownloadManager()
        base = Path(textual_serve.__file__).parent
        self.static_path = base / "static"
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(base / "templates"), autoescape=jinja2.select_autoescape()
        )

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_host], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/", self.handle_index),
                web.post("/login", self.handle_login),
                web.get("/ws", self.handle_websocket),
                web.get("/download/{key}", self.handle_download),
                web.static("/static", self.static_path),
            ]
        )
        app.on_shutdown.append(self._close_consoles)
        return app

    # -- access ------------------------------------------------------------------------

    @web.middleware
    async def _check_host(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.loopback_only and not _loopback_name(request.host):
            return web.Response(status=403, text="phase24 console --web: only loopback host names (no --allow-remote)")
        return await handler(request)

    def _operator_status(self, token: str) -> int:
        """200 for an operator's token, 401 for an unknown one, 403 for another role."""
        principal = self.tokens.authenticate(token)
        if principal is None:
            return 401
        return 200 if principal.can_command else 403

    def _session_token(self, request: web.Request) -> str | None:
        """The operator token behind the request's session cookie, if it is still an operator's."""
        session = request.cookies.get(self.cookie, "")
        token = self.sessions.get(session)
        if token is None:
            return None
        if self._operator_status(token) != 200:  # the token file changed: the session ends
            self.sessions.pop(session, None)
            return None
        return token

    def _login_page(self, status: int, message: str) -> web.Response:
        return web.Response(
            status=status, text=_LOGIN_PAGE.format(message=html.escape(message)), content_type="text/html"
        )

    def _logged_in(self, request: web.Request, token: str) -> web.Response:
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        session = secrets.token_urlsafe(32)
        self.sessions[session] = token
        response = web.HTTPSeeOther("/")
        response.set_cookie(self.cookie, session, httponly=True, samesite="Strict", path="/", secure=_https(request))
        return response

    async def handle_login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        status = self._operator_status(token) if token else 401
        if status == 401:
            return self._login_page(401, "Unknown token.")
        if status == 403:
            return self._login_page(403, "Not an operator token (the web console needs one).")
        return self._logged_in(request, token)

    # -- the page ----------------------------------------------------------------------

    async def handle_index(self, request: web.Request) -> web.Response:
        token = request.query.get("token", "").strip()
        if token:  # exchanged for a cookie at once; the redirect drops it from the address bar
            status = self._operator_status(token)
            if status != 200:
                message = "Unknown token." if status == 401 else "Not an operator token (the web console needs one)."
                return self._login_page(status, message)
            return self._logged_in(request, token)
        if self._session_token(request) is None:
            return self._login_page(401, "")
        scheme = "wss" if _https(request) else "ws"
        try:
            font_size = max(6, min(48, int(request.query.get("fontsize", "16"))))
        except ValueError:
            font_size = 16
        page = self.templates.get_template("app_index.html").render(
            font_size=font_size,
            app_websocket_url=f"{scheme}://{request.host}/ws",
            config={"static": {"url": "/static/"}},
            application={"name": self.title},
        )
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        if self._session_token(request) is None:
            raise web.HTTPUnauthorized(text="log in first")
        key = request.match_info["key"]
        try:
            meta = await self.download_manager.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound(text="no such download") from None
        response = web.StreamResponse()
        response.headers["Content-Type"] = meta.mime_type + (f"; charset={meta.encoding}" if meta.encoding else "")
        response.headers["Content-Disposition"] = f'attachment; filename="{Path(meta.file_name).name}"'
        await response.prepare(request)
        async for chunk in self.download_manager.download(key):
            await response.write(chunk)
        await response.write_eof()
        return response

    # -- one console per connection ----------------------------------------------------

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        token = self._session_token(request)
        if token is None:
            raise web.HTTPUnauthorized(text="log in first")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {
            f"{scheme}://{request.host}".lower() for scheme in ("http", "https")
        }:
            raise web.HTTPForbidden(text="foreign Origin")
        if len(self.consoles) >= MAX_CONSOLES:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_CONSOLES} browser consoles at once")
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        self.consoles.add(websocket)
        process = _ConsoleProcess(
            self.command,
            token,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        try:
            await process.start(_size(request, "width", 80), _size(request, "height", 24))
            await _relay(websocket, process)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("browser console")
        finally:
            self.consoles.discard(websocket)
            await process.stop()
            await websocket.close()
        return websocket

    async def _close_consoles(self, app: web.Application) -> None:
        for websocket in list(self.consoles):
            await websocket.close()


def _https(request: web.Request) -> bool:
    """Served over HTTPS, here or by a proxy in front (which says so in X-Forwarded-Proto)."""
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _size(request: web.Request, name: str, default: int) -> int:
    try:
        return max(10, min(1000, int(request.query.get(name, default))))
    except ValueError:
        return default


async def _relay(websocket: web.WebSocketResponse, process: AppService) -> None:
    """The browser's keys, resizes and focus to the console process (a malformed message is ignored)."""
    async for message in websocket:
        if message.type != WSMsgType.TEXT:
            continue
        try:
            envelope = json.loads(message.data)
            kind, data = envelope[0], envelope[1]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        if kind == "stdin" and isinstance(data, str):
            await process.send_bytes(data.encode("utf-8"))
        elif kind == "resize" and isinstance(data, dict):
            width, height = data.get("width"), data.get("height")
            if isinstance(width, int) and isinstance(height, int) and 0 < width <= 1000 and 0 < height <= 1000:
                await process.set_terminal_size(width, height)
        elif kind == "ping":
            await websocket.send_json(["pong", data])
        elif kind == "blur":
            await process.blur()
        elif kind == "focus":
            await process.focus()


def _connect_host(host: str) -> str:
    """Where this machine's console processes reach a service bound to `host`."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_web(options: WebOptions, announce: TextIO = sys.stdout) -> dict[str, Any]:
    """The gate service and the web console on one loop, until SIGINT or SIGTERM."""
    clock = SystemClock()
    serve_options = options.serve_options()
    if not is_loopback(options.host) and not options.allow_remote:
        raise ConfigError(f"--host: {options.host!r} is not a loopback address; add --allow-remote to bind it")
    web_sock = _bind(options.host, options.port)  # before prepare: a busy port leaves no directory behind
    try:
        listening = prepare(serve_options, clock)
    except BaseException:
        web_sock.close()
        raise
    api_url = f"http://{_connect_host(options.host)}:{listening.sock.getsockname()[1]}"
    service = GateService(
        make_config(serve_options, listening.out), clock=clock, run_id=listening.run_id, lease_s=serve_options.lease_s
    )
    console = WebConsole(
        console_command(api_url, options),
        listening.tokens,
        port=web_sock.getsockname()[1],
        loopback_only=not options.allow_remote,
        title=f"Phase 24 operator console ({listening.run_id})",
    )
    runner = web.AppRunner(console.make_app(), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.SockSite(runner, web_sock)
    await site.start()
    host = f"[{options.host}]" if ":" in options.host else options.host
    announce.write(
        f"phase24 console --web: the console on http://{host}:{web_sock.getsockname()[1]}/ "
        f"(log in with an operator token of {listening.tokens_path})\n"
    )
    announce.flush()
    try:
        return await run_http(service, listening, service.serve(), announce)
    finally:
        await runner.cleanup()
        web_sock.close()


def run_web(args: argparse.Namespace) -> int:
    if args.plans:
        raise ConfigError(
            "--web: serves the gate service's console (agents propose over HTTP) and takes no PLAN; "
            "run plans with `phase24 console PLAN` in a terminal"
        )
    for given, name in ((args.attach, "--attach"), (args.token, "--token"), (args.read_only, "--read-only")):
        if given:
            raise ConfigError(f"--web: not with {name} (it serves its own gate; each browser logs in with its token)")
    from console.app import OperatorConsole
    from console.console_options import load_console_keymap
    from console.keymap import KeymapError

    try:
        load_console_keymap(args, OperatorConsole)  # a bad keys file stops us before anything is served
    except KeymapError as exc:  # a ConfigError too: exit 2 also under `python -m console.cli`
        raise ConfigError(str(exc)) from None
    options = WebOptions(
        host=args.host or "127.0.0.1",
        port=DEFAULT_WEB_PORT if args.port is None else args.port,
        api_port=DEFAULT_API_PORT if args.api_port is None else args.api_port,
        out=args.out,
        allow_remote=args.allow_remote,
        approval_timeout_s=args.approval_timeout,
        dry_run_only=args.dry_run_only,
        live_floor=args.live_floor,
        keys=args.keys,
        no_bell=args.no_bell,
        desktop_notify=args.desktop_notify,
        arm_delay=args.arm_delay,
    )
    from service.cli import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_web(options))
    return exit_codes.OK


if __name__ == "__main__":
    raise SystemExit(browser_console(sys.argv[1:]))
