"""One upstream MCP server: its connection (stdio or streamable HTTP), its tools, its calls.

The connection lives in its own task (the SDK's context managers must be entered and left
by one task). If the upstream dies, the task ends, the upstream is marked down with the
reason, and every later call fails at once with that reason; the gateway stays up.
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

from core.errors import Phase24Error
from gateway.config import UpstreamSpec


class UpstreamDown(Phase24Error):
    """The upstream is not connected (it exited, or never started)."""


class Upstream:
    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.tools: list[types.Tool] = []
        self.session: ClientSession | None = None
        self.down_reason: str | None = None
        self._stop = anyio.Event()

    async def start(self, tg: TaskGroup, connect_timeout_s: float = 30.0) -> None:
        """Connect, initialize and list the tools; a failure is a Phase24Error naming the upstream."""
        try:
            with anyio.fail_after(connect_timeout_s):
                await tg.start(self._run)
        except TimeoutError:
            raise Phase24Error(
                f"upstream {self.spec.name!r} ({self.spec.where}): did not start within {connect_timeout_s:g}s"
            ) from None
        except Exception as exc:
            raise Phase24Error(
                f"upstream {self.spec.name!r} ({self.spec.where}): could not start: {_describe(exc)}"
            ) from None
        if self.down_reason is not None:
            raise Phase24Error(f"upstream {self.spec.name!r} ({self.spec.where}): {self.down_reason}")

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
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
                self.tools = await self._list_all(session)
                self.session = session
                started = True
                task_status.started()
                await self._stop.wait()
        except Exception as exc:
            self.down_reason = f"upstream {self.spec.name!r} is down: {_describe(exc)}"
            print(f"phase24 mcp-gateway: {self.down_reason}", file=sys.stderr)
            if not started:
                raise
        finally:
            self.session = None
            if self.down_reason is None and not self._stop.is_set():
                self.down_reason = f"upstream {self.spec.name!r} is down: its connection ended"
        if not started:
            task_status.started()

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

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> types.CallToolResult:
        session = self.session
        if session is None:
            raise UpstreamDown(self.down_reason or f"upstream {self.spec.name!r} is not connected")
        result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
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
