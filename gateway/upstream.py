"""One upstream MCP server: its connection (stdio or streamable HTTP), its tools, its calls.

The connection lives in its own task (the SDK's context managers must be entered and left
by one task). If the upstream dies (its process exits, its connection closes), it is marked
down with the reason and the gateway stays up; the next call starts it again (at most every
RESTART_INTERVAL_S), or fails at once, unsent, with the reason. A restarted upstream keeps
the tools of the first start: their contracts were fixed then.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import CONNECTION_CLOSED

from core.errors import Phase24Error
from gateway.config import UpstreamSpec


class UpstreamDown(Phase24Error):
    """The upstream is not connected (it exited, or never started)."""


RESTART_INTERVAL_S = 5.0
"""An upstream that went down is started again on the next call, at most this often."""


class Upstream:
    def __init__(self, spec: UpstreamSpec, connect_timeout_s: float = 30.0) -> None:
        self.spec = spec
        self.connect_timeout_s = connect_timeout_s
        self.tools: list[types.Tool] = []
        self.session: ClientSession | None = None
        self.down_reason: str | None = None
        self.restarts = 0
        self._stop = anyio.Event()
        self._tg: TaskGroup | None = None
        self._starting: anyio.Event | None = None
        self._restart_error = ""
        self._down_since: str | None = None
        self._last_start = float("-inf")

    def _where(self) -> str:
        return f"upstream {self.spec.name!r} ({self.spec.where})"

    async def start(self, tg: TaskGroup) -> None:
        """Connect, initialize and list the tools; a failure is a Phase24Error naming the upstream."""
        self._tg = tg
        self._stop = anyio.Event()
        self.down_reason = None
        self._last_start = anyio.current_time()
        try:
            with anyio.fail_after(self.connect_timeout_s):
                await tg.start(self._run, self._stop)
        except TimeoutError:
            raise Phase24Error(f"{self._where()}: did not start within {self.connect_timeout_s:g}s") from None
        except Exception as exc:
            raise Phase24Error(f"{self._where()}: could not start: {_describe(exc)}") from None

    async def _run(self, stop: anyio.Event, *, task_status: TaskStatus[None]) -> None:
        started = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.spec.url is not None:
                    read, write = await stack.enter_async_context(streamable_http_client(self.spec.url))
                else:
                    params = StdioServerParameters(
                        command=self.spec.command or "",
                        args=list(self.spec.args),
                        # The upstream gets the gateway's environment (as the MCP client set it), plus `env`.
                        env={**os.environ, **self.spec.env},
                        cwd=self.spec.cwd,
                    )
                    read, write = await stack.enter_async_context(stdio_client(params, errlog=sys.stderr))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                tools = await self._list_all(session)
                if not self.tools:
                    self.tools = tools  # a restart keeps the tools (and contracts) of the first start
                self.session = session
                started = True
                task_status.started()
                await stop.wait()
        except Exception as exc:
            if not started:
                raise
            self._went_down(f"{_describe(exc)}")
        finally:
            if started and not stop.is_set():
                self._went_down("its connection ended")

    def _went_down(self, why: str) -> None:
        if self.session is None and self.down_reason is not None:
            return
        self.session = None
        self._stop.set()
        self.down_reason = f"upstream {self.spec.name!r} is down: {why}"
        print(f"phase24 mcp-gateway: {self.down_reason}", file=sys.stderr, flush=True)

    async def connected(self, wait_s: float | None = None) -> ClientSession:
        """The session, starting the upstream again if it went down (at most every RESTART_INTERVAL_S).

        The start runs in the gateway's task group, not in the caller: a caller that gives up
        (`wait_s`, or its own timeout) leaves it running, so a slow upstream still comes back
        for the next call. Raises UpstreamDown when there is no session yet: nothing was sent."""
        if self.session is not None:
            return self.session
        starting = self._starting
        if starting is None:
            waited = anyio.current_time() - self._last_start
            if self._tg is None or waited < RESTART_INTERVAL_S:
                raise UpstreamDown(
                    f"{self.down_reason or self._where() + ' is not connected'}; "
                    f"it is started again at most every {RESTART_INTERVAL_S:g}s"
                )
            starting = self._starting = anyio.Event()
            self._tg.start_soon(self._restart, starting, self.down_reason)
        with anyio.move_on_after(wait_s):
            await starting.wait()
        if self.session is None:
            why = self._restart_error if starting.is_set() else "it is being started again"
            raise UpstreamDown(f"{self._down_since or self._where() + ' is not connected'}; {why}")
        return self.session

    async def _restart(self, done: anyio.Event, reason: str | None) -> None:
        self._down_since = reason
        try:
            assert self._tg is not None
            await self.start(self._tg)
        except Phase24Error as exc:
            self.down_reason = str(exc)
            self._restart_error = f"starting it again failed: {exc}"
        else:
            self.restarts += 1
            print(f"phase24 mcp-gateway: upstream {self.spec.name!r} started again", file=sys.stderr, flush=True)
        finally:
            self._starting = None
            done.set()

    @staticmethod
    async def _list_all(session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(1000):
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float | None) -> types.CallToolResult:
        """Forward one call. UpstreamDown: it was not sent. Anything else: it may have been.

        `timeout_s`: the SDK's read timeout, or None when the caller times the call itself."""
        session = self.session or await self.connected()
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                self._went_down("its connection closed")
            raise
        if not isinstance(result, types.CallToolResult):
            raise TypeError(f"upstream answered {type(result).__name__}, not a tool result")
        return result

    def close(self) -> None:
        self._stop.set()


def _describe(exc: BaseException) -> str:
    """One line for an error, looking inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
