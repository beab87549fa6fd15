"""How the SDK's requests reach the service: httpcore's connection pool (the transport layer
httpx itself is built on), or the httpx transport the caller gives.

Without a `transport=` (and without a proxy named by the environment) a client sends each
request through its own `httpcore` connection pool: one keep-alive connection, the request's
URL and headers built once, no httpx client layer (URL merging, cookies, redirects, auth
flows, event hooks) that a gate call never needs. The network streams it opens are
httpcore's own (`AnyIOBackend` / `SyncBackend`) with one change: a request's writes leave
together. h11 writes a request's head and its body separately, and two segments wake the
service twice and cost it a second pass through its HTTP parser (about 0.2-0.3 ms of the
service's CPU per request on the benchmark machine); `_OneWrite` holds the writes until the
response is first read, then sends them in one write. Nothing else changes: HTTP/1.1
framing, keep-alive, timeouts and errors are httpcore's and h11's.

With a `transport=` (an in-process ASGI app in tests, say) or an environment proxy, the
request goes to that httpx transport instead. Either way, `CONNECT_ERRORS` are the failures
before anything was sent (the SDK retries them) and `SENT_ERRORS` the ones after (the
service may have acted: never resent).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

TIMEOUT_S = 10.0
"""Connect, write, read and pool timeout of a request that does not wait (a long-poll adds its wait)."""

CONNECT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpcore.ConnectError)
SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TransportError,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


class _OneWrite(httpcore.AsyncNetworkStream):
    """An httpcore network stream whose writes are sent together at the first read."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._stream.write(data, timeout)
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _OneWrite(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _SyncOneWrite(httpcore.NetworkStream):
    """`_OneWrite` for the sync client."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._stream.write(data, timeout)
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._pending.clear()
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _SyncOneWrite(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class OneWriteBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, its streams wrapped in `_OneWrite`."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return _OneWrite(await self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return _OneWrite(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class SyncOneWriteBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, its streams wrapped in `_SyncOneWrite`."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _SyncOneWrite(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _SyncOneWrite(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY / ALL_PROXY, unless NO_PROXY
    covers its host), as httpx's client would use it."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    bypass: Callable[[str, dict[str, str]], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if not proxy or bypass(parsed.host, proxies):
        return None
    return proxy


def pool_options(url: str) -> dict[str, Any]:
    """What httpx's client would give its pool: its default limits (100 connections, 20 kept
    alive, idle ones dropped after 5 s, as the service drops them) and, for https, its TLS
    context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    return {
        "max_connections": 100,
        "max_keepalive_connections": 20,
        "keepalive_expiry": 5.0,
        "ssl_context": httpx.create_ssl_context() if url.startswith("https:") else None,
    }


class _Requests:
    """What every request of one client carries, built once: the base URL, the headers, the
    parsed URLs of the paths it asks (a few), the timeouts."""

    __slots__ = ("_headers", "_httpx_headers", "_timeouts", "_urls", "base")

    def __init__(self, url: str, token: str) -> None:
        self.base = url.rstrip("/")
        auth = f"Bearer {token}"
        self._httpx_headers = httpx.Headers(
            {"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"}
        )
        self._headers = [
            (b"Host", httpx.URL(self.base).netloc),
            (b"Authorization", auth.encode("ascii")),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"application/json"),
        ]
        self._timeouts: dict[float, dict[str, float | None]] = {}
        self._urls: dict[str, Any] = {}

    def _url(self, kind: type[Any], path: str, params: dict[str, float] | None) -> Any:
        target = self.base + path
        if params:
            target += "?" + "&".join(f"{key}={value!r}" for key, value in params.items())
        url = self._urls.get(target)
        if url is None or type(url) is not kind:
            url = kind(target)
            if len(self._urls) >= 64:  # a proposal's own URL (GET /v1/proposals/{id}) is asked a few times
                self._urls.clear()
            self._urls[target] = url
        return url

    def timeouts(self, timeout: float | None) -> dict[str, float | None]:
        seconds = timeout or TIMEOUT_S
        timeouts = self._timeouts.get(seconds)
        if timeouts is None:
            timeouts = self._timeouts[seconds] = httpx.Timeout(seconds).as_dict()
        return timeouts

    def core(
        self, path: str, params: dict[str, float] | None, content: bytes | None
    ) -> tuple[httpcore.URL, list[tuple[bytes, bytes]]]:
        headers = self._headers
        if content is not None:
            headers = [*headers, (b"Content-Length", str(len(content)).encode())]
        return self._url(httpcore.URL, path, params), headers

    def httpx(
        self, method: str, path: str, params: dict[str, float] | None, content: bytes | None, timeout: float | None
    ) -> httpx.Request:
        url = self._url(httpx.URL, path, params)
        extensions = {"timeout": self.timeouts(timeout)}
        return httpx.Request(method, url, headers=self._httpx_headers, content=content, extensions=extensions)


class AsyncWire:
    """One async client's way to the service: `exchange` sends a request, returns (status, body)."""

    def __init__(self, url: str, token: str, transport: httpx.AsyncBaseTransport | None) -> None:
        self._requests = _Requests(url, token)
        proxy = environment_proxy(self._requests.base) if transport is None else None
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._transport: httpx.AsyncBaseTransport | None = None
        if transport is None and proxy is None:
            self._pool = httpcore.AsyncConnectionPool(
                **pool_options(self._requests.base), network_backend=OneWriteBackend()
            )
        else:
            self._transport = transport or httpx.AsyncHTTPTransport(proxy=proxy)

    async def exchange(
        self, method: str, path: str, content: bytes | None, params: dict[str, float] | None, timeout: float | None
    ) -> tuple[int, bytes]:
        if self._pool is not None:
            url, headers = self._requests.core(path, params, content)
            extensions = {"timeout": self._requests.timeouts(timeout)}
            answer = await self._pool.request(method, url, headers=headers, content=content, extensions=extensions)
            return answer.status, answer.content
        assert self._transport is not None
        response = await self._transport.handle_async_request(
            self._requests.httpx(method, path, params, content, timeout)
        )
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, body

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._transport is not None:
            await self._transport.aclose()


class SyncWire:
    """`AsyncWire` for the sync client."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None) -> None:
        self._requests = _Requests(url, token)
        proxy = environment_proxy(self._requests.base) if transport is None else None
        self._pool: httpcore.ConnectionPool | None = None
        self._transport: httpx.BaseTransport | None = None
        if transport is None and proxy is None:
            self._pool = httpcore.ConnectionPool(
                **pool_options(self._requests.base), network_backend=SyncOneWriteBackend()
            )
        else:
            self._transport = transport or httpx.HTTPTransport(proxy=proxy)

    def exchange(
        self, method: str, path: str, content: bytes | None, params: dict[str, float] | None, timeout: float | None
    ) -> tuple[int, bytes]:
        if self._pool is not None:
            url, headers = self._requests.core(path, params, content)
            extensions = {"timeout": self._requests.timeouts(timeout)}
            answer = self._pool.request(method, url, headers=headers, content=content, extensions=extensions)
            return answer.status, answer.content
        assert self._transport is not None
        response = self._transport.handle_request(self._requests.httpx(method, path, params, content, timeout))
        try:
            body = response.read()
        finally:
            response.close()
        return response.status_code, body

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._transport is not None:
            self._transport.close()
