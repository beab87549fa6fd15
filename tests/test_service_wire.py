"""The service's and the SDK's wire-level details: HEAD, errors and streamed responses answer
over a real socket; the SDK retries only a refused connection, never one that broke after the
request was sent, and uses the proxy the environment names as httpx's client would."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import httpx
import pytest

from phase24_sdk import GateConnectionError, connect, connect_sync
from phase24_sdk.calls import environment_proxy
from tests.service_fixtures import add_token, running_service


def raw_exchange(url: str, line: str) -> bytes:
    """One request (`line`: method and target) on its own connection; everything the service sent."""
    authority = url.removeprefix("http://")
    host, port = authority.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"{line} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_head_get_errors_and_the_event_stream_still_answer_over_a_real_socket(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        head = raw_exchange(service.url, "HEAD /v1/health")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # a head, no body
        got = raw_exchange(service.url, "GET /v1/health")
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b'{"ok":true,"accepting":true}')
        missing = raw_exchange(service.url, "GET /v1/nope")
        assert missing.startswith(b"HTTP/1.1 404 ") and b'"error":"no route /v1/nope"' in missing
        agent = add_token(out, "agent", "bot")
        body = {"agent": "bot", "tool": "memory_search", "args": {"q": 1}, "confidence": 0.9, "action_id": "a1"}
        with service.client(agent) as http:
            decided = http.post("/v1/proposals?wait=10", json=body)
            assert decided.status_code == 201 and decided.json()["decision"] == "allowed"
        # A streamed response (its head, then its events) still reaches the reader.
        with (
            httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {service.operator}"}) as http,
            http.stream("GET", "/v1/events?since=0", timeout=10) as events,
        ):
            assert events.status_code == 200
            lines = events.iter_lines()
            seen = [next(lines) for _ in range(4)]
            assert any(line.startswith("event: ") for line in seen), seen
        assert service.stop()[0] == 0


def test_the_sdk_uses_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert environment_proxy("http://127.0.0.1:8724") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert environment_proxy("http://gate.example:8724") == "http://proxy.example:3128"
    assert environment_proxy("https://gate.example") is None  # no proxy named for https
    monkeypatch.setenv("ALL_PROXY", "http://all.example:1")
    assert environment_proxy("https://gate.example") == "http://all.example:1"
    monkeypatch.setenv("NO_PROXY", "gate.example,127.0.0.1")
    assert environment_proxy("http://gate.example:8724") is None
    assert environment_proxy("http://127.0.0.1:8724") is None
    assert environment_proxy("http://other.example") == "http://proxy.example:3128"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_retried_and_a_broken_one_never_resent() -> None:
    """Through the SDK's httpx transport: refused -> 3 attempts, then
    GateConnectionError; the connection closed after the request arrived -> one request,
    GateConnectionError at once (the service may have acted)."""
    nobody = f"http://127.0.0.1:{free_port()}"
    with connect_sync(nobody, "p24_x", agent="bot") as gate, pytest.raises(GateConnectionError, match="cannot reach"):
        gate.propose("memory_search", {}, 0.9)

    async def refused() -> None:
        async with connect(nobody, "p24_x", agent="bot") as gate:
            await gate.propose("memory_search", {}, 0.9)

    with pytest.raises(GateConnectionError, match="cannot reach"):
        asyncio.run(refused())

    server = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    requests: list[bytes] = []

    def hang_up() -> None:  # read each request whole, then close without answering
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                requests.append(data)

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with connect_sync(url, "p24_x", agent="bot") as gate, pytest.raises(GateConnectionError, match="broke"):
            gate.propose("memory_search", {"q": 1}, 0.9)
        assert len(requests) == 1 and requests[0].startswith(b"POST /v1/proposals HTTP/1.1\r\n")
        assert b"\r\nauthorization: bearer p24_x\r\n" in requests[0].lower()

        async def broken() -> None:
            async with connect(url, "p24_x", agent="bot") as gate:
                await gate.propose("memory_search", {"q": 2}, 0.9)

        with pytest.raises(GateConnectionError, match="broke"):
            asyncio.run(broken())
        assert len(requests) == 2 and b'"args":{"q":2}' in requests[1]
    finally:
        server.close()
