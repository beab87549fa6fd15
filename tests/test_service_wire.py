"""The service's and the SDK's wire-level details: a response leaves in one write, a head
without a body in the same turn still leaves, HEAD and streamed responses still work, and
the SDK uses the proxy the environment names as httpx's client would."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from phase24_sdk.calls import environment_proxy
from service.server import _HeadWithBody
from tests.service_fixtures import add_token, running_service


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_a_head_and_its_body_written_in_one_turn_leave_as_one_write() -> None:
    fake = FakeTransport()
    wire = _HeadWithBody(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    wire.write(HEAD)
    assert fake.writes == []
    wire.write(b"{}")
    assert fake.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing held
    assert fake.writes == [HEAD + b"{}"]
    assert wire.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's


async def test_a_head_alone_leaves_at_the_next_turn_and_close_flushes_first() -> None:
    fake = FakeTransport()
    wire = _HeadWithBody(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
    wire.write(HEAD)  # e.g. a HEAD request's answer, or a streamed response's head
    await asyncio.sleep(0)
    assert fake.writes == [HEAD]
    wire.write(b"data: 1\n\n")  # not a head: written at once
    assert fake.writes == [HEAD, b"data: 1\n\n"]
    wire.write(HEAD)
    wire.close()
    assert fake.writes[-1] == HEAD and fake.closed
    wire.write(HEAD)
    wire.abort()  # an abort drops what is held
    await asyncio.sleep(0)
    assert fake.writes[-1] == HEAD and len(fake.writes) == 3 and fake.aborted


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
