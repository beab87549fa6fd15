"""A small HTTP/1.1 keep-alive client for the SDK's few JSON requests (async and blocking).

Why not httpx for every call: on a loopback round trip of about a millisecond, httpx's
per-request machinery (its connection pool, anyio, the request and response models) cost
more CPU than the service's whole answer (measured in benchmarks/service_roundtrip.py).
This client sends one request per connection at a time, keeps idle connections for reuse
(a pool, so concurrent calls on one Gate never wait behind a long-poll), and opens a new one
when an idle connection was closed by the service (keep-alive timeout).

A request is sent again on a fresh connection only when a reused connection turns out to be
closed before any byte of the answer came back: the service reads a request whole before it
acts on it, so a closed idle connection never carried it. Anything else is an error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from phase24_sdk.errors import GateError

IDLE_REUSE_S = 4.0
"""An idle connection older than this is not reused (uvicorn closes them after 5 s)."""
MAX_IDLE = 8
MAX_HEADER_BYTES = 64 * 1024


class WireError(GateError, OSError):
    """The service could not be reached, or the connection broke mid-answer
    (exported as `phase24_sdk.GateConnectionError`)."""


class WireConnectError(WireError):
    """Nothing listens there (refused, unreachable): the request never left."""


class WireTimeout(WireError, TimeoutError):
    """No complete answer within the request's timeout."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: bool
    prefix: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: {url!r} is not an http:// or https:// URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return cls(host, port, tls, parts.path, f"{shown}:{port}")


def _head(
    target: Target, fixed: bytes, method: str, path: str, params: Mapping[str, object] | None, size: int
) -> bytes:
    query = f"?{urlencode(params)}" if params else ""
    return (
        f"{method} {target.prefix}{path}{query} HTTP/1.1\r\nHost: {target.host_header}\r\n".encode()
        + fixed
        + f"Content-Length: {size}\r\n\r\n".encode()
    )


def _fixed_headers(headers: dict[str, str]) -> bytes:
    base = {"Accept": "application/json", "User-Agent": "phase24-sdk", **headers}
    return "".join(f"{k}: {v}\r\n" for k, v in base.items()).encode("latin-1")


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise WireError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line[1]), headers


def _keeps_alive(headers: dict[str, str]) -> bool:
    return "close" not in headers.get("connection", "").lower()


# -- async ---------------------------------------------------------------------------------


class _AsyncConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        return not self.reader.at_eof() and time.monotonic() - self.idle_since < IDLE_REUSE_S

    def close(self) -> None:
        self.writer.close()

    async def body(self, headers: dict[str, str]) -> bytes:
        reader = self.reader
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            return await reader.readexactly(int(length))
        return await reader.read()  # until the service closes the connection


class AsyncWire:
    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self.target = Target.parse(url)
        self.fixed = _fixed_headers(headers)
        self.timeout_s = timeout_s
        self._idle: list[_AsyncConn] = []
        self._tls = ssl.create_default_context() if self.target.tls else None

    async def _open(self) -> _AsyncConn:
        try:
            reader, writer = await asyncio.open_connection(self.target.host, self.target.port, ssl=self._tls)
        except OSError as exc:
            raise WireConnectError(f"cannot connect to {self.target.host_header}: {exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _AsyncConn(reader, writer)

    def _take(self) -> _AsyncConn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: bytes = b"",
        timeout_s: float | None = None,
    ) -> Answer:
        message = _head(self.target, self.fixed, method, path, params, len(body)) + body
        try:
            async with asyncio.timeout(timeout_s if timeout_s is not None else self.timeout_s):
                conn = self._take()
                if conn is not None:
                    try:
                        return await self._exchange(conn, message, reused=True)
                    except _StaleConnection:
                        pass
                return await self._exchange(await self._open(), message, reused=False)
        except TimeoutError:
            raise WireTimeout(f"{method} {path}: no answer within the timeout") from None

    async def _exchange(self, conn: _AsyncConn, message: bytes, *, reused: bool) -> Answer:
        try:
            conn.writer.write(message)
            await conn.writer.drain()
            raw = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            if reused and not getattr(exc, "partial", b""):
                raise _StaleConnection from None  # closed while idle: no byte of an answer came
            raise WireError(f"the connection broke: {type(exc).__name__}: {exc}") from exc
        except (OSError, asyncio.LimitOverrunError) as exc:
            conn.close()
            raise WireError(f"the connection broke: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()  # cancelled or timed out: the connection is in an unknown state
            raise
        try:
            status, headers = _parse_head(raw[:-4])
            body = await conn.body(headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            raise WireError(f"the connection broke mid-answer: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if _keeps_alive(headers) and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return Answer(status, body)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _StaleConnection(Exception):
    """A reused connection was closed before the request reached the service."""


# -- blocking ------------------------------------------------------------------------------


class _SyncConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        if time.monotonic() - self.idle_since >= IDLE_REUSE_S:
            return False
        if isinstance(self.sock, ssl.SSLSocket):
            return True  # no peek through TLS: the age above, and a resend if it was closed
        try:  # readable while idle means closed (or garbage): not reusable
            self.sock.setblocking(False)
            try:
                return not self.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return True
            finally:
                self.sock.setblocking(True)
        except OSError:
            return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def body(self, headers: dict[str, str]) -> bytes:
        file = self.file
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(file.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    file.readline(1024)
                    return b"".join(chunks)
                chunks.append(self._exactly(size))
                self._exactly(2)
        length = headers.get("content-length")
        if length is not None:
            return self._exactly(int(length))
        return file.read()

    def _exactly(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise WireError("the connection closed mid-answer")
        return data

    def head(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = self.file.readline(MAX_HEADER_BYTES)
            if not line:
                raise EOFError
            size += len(line)
            if line in (b"\r\n", b"\n") or size > MAX_HEADER_BYTES:
                return b"".join(lines).rstrip(b"\r\n")
            lines.append(line)


class SyncWire:
    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self.target = Target.parse(url)
        self.fixed = _fixed_headers(headers)
        self.timeout_s = timeout_s
        self._idle: list[_SyncConn] = []
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context() if self.target.tls else None

    def _open(self, timeout_s: float) -> _SyncConn:
        try:
            sock = socket.create_connection((self.target.host, self.target.port), timeout=timeout_s)
        except OSError as exc:
            raise WireConnectError(f"cannot connect to {self.target.host_header}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.target.host)
        return _SyncConn(sock)

    def _take(self) -> _SyncConn | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.usable():
                    return conn
                conn.close()
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: bytes = b"",
        timeout_s: float | None = None,
    ) -> Answer:
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        message = _head(self.target, self.fixed, method, path, params, len(body)) + body
        conn = self._take()
        if conn is not None:
            try:
                return self._exchange(conn, message, timeout, reused=True)
            except _StaleConnection:
                pass
        return self._exchange(self._open(timeout), message, timeout, reused=False)

    def _exchange(self, conn: _SyncConn, message: bytes, timeout: float, *, reused: bool) -> Answer:
        try:
            conn.sock.settimeout(timeout)
            conn.sock.sendall(message)
            raw = conn.head()
        except (EOFError, ConnectionError) as exc:
            conn.close()
            if reused:
                raise _StaleConnection from None  # closed while idle: no byte of an answer came
            raise WireError(f"the service closed the connection without answering ({type(exc).__name__})") from None
        except TimeoutError:
            conn.close()
            raise WireTimeout("no answer within the timeout") from None
        except OSError as exc:
            conn.close()
            raise WireError(f"the connection broke: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        try:
            status, headers = _parse_head(raw)
            body = conn.body(headers)
        except TimeoutError:
            conn.close()
            raise WireTimeout("no complete answer within the timeout") from None
        except (OSError, ValueError) as exc:
            conn.close()
            if isinstance(exc, WireError):
                raise
            raise WireError(f"the connection broke mid-answer: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if _keeps_alive(headers) and len(self._idle) < MAX_IDLE:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
                return Answer(status, body)
        conn.close()
        return Answer(status, body)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
