"""The gateway's stdio, read and written on the event loop instead of in worker threads.

The SDK's `stdio_server()` reads each line of stdin and writes (and flushes) each answer in a
worker thread (`anyio.wrap_file`): three thread hand-offs per call. Here stdin and stdout are
asyncio pipes on the gateway's own loop, which `stdio_server(stdin, stdout)` accepts. As the
SDK does, fds 0 and 1 are first moved to private descriptors, and 0 is pointed at the null
device and 1 at stderr, so nothing else in the process (or a child that inherits them) can
read the protocol's input or write into its channel. Where stdin or stdout is not a pipe,
socket or character device (a regular file, Windows), the SDK's own threaded streams are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

MAX_LINE_BYTES = 256 * 1024 * 1024
"""A request line longer than this is dropped (the client gets no answer to it, as for a
line that is not JSON); the next line is read normally."""

Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]


class _LoopStdin:
    """`async for line in stdin`: lines (text) from an asyncio pipe."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        reader = self.reader
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    yield exc.partial.decode("utf-8", errors="replace")
                return
            except asyncio.LimitOverrunError as exc:
                await self._skip_line(exc.consumed)
                yield ""  # not JSON: the SDK reports it as a parse error, as for any bad line
                continue
            yield line.decode("utf-8", errors="replace")

    async def _skip_line(self, consumed: int) -> None:
        reader = self.reader
        await reader.readexactly(consumed)
        while True:
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return


class _LoopStdout:
    """`await stdout.write(text)` / `await stdout.flush()` on an asyncio pipe; `on_flush` is
    called after each flush (everything written so far is in the pipe)."""

    def __init__(self, writer: asyncio.StreamWriter, on_flush: Callable[[], None] | None) -> None:
        self.writer = writer
        self.on_flush = on_flush

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()
        if self.on_flush is not None:
            self.on_flush()


def _is_stream(fd: int) -> bool:
    import stat

    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


@contextlib.asynccontextmanager
async def gateway_stdio(on_flush: Callable[[], None] | None = None) -> AsyncIterator[Streams]:
    """`stdio_server()`'s streams, with stdin and stdout served on the event loop when they can be
    (then `on_flush` is called after each message is written; never with the SDK's streams)."""
    if sys.platform == "win32" or not (_is_stream(0) and _is_stream(1)) or _is_tty(0):
        async with stdio_server() as streams:
            yield streams
        return
    import fcntl

    loop = asyncio.get_running_loop()
    in_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    out_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    devnull = os.open(os.devnull, os.O_RDONLY)
    saved_in, saved_out = os.dup(0), os.dup(1)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    read_transport: asyncio.BaseTransport | None = None
    write_transport: asyncio.WriteTransport | None = None
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
        )
        write_transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
        )
        write_transport.set_write_buffer_limits(high=0)  # drain() waits until all is written: a flush
        writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        stdin = cast(Any, _LoopStdin(reader))
        stdout = cast(Any, _LoopStdout(writer, on_flush))
        async with stdio_server(stdin, stdout) as streams:
            yield streams
    finally:
        if write_transport is not None:
            with anyio.move_on_after(5, shield=True):  # what is still buffered goes out first
                while write_transport.get_write_buffer_size() and not write_transport.is_closing():
                    await anyio.sleep(0.01)
            write_transport.close()
        if read_transport is not None:
            read_transport.close()
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
