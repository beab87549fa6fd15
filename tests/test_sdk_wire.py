"""The SDK's own HTTP client (`phase24_sdk.wire`) against scripted loopback servers: a
keep-alive connection the server closed is replaced without sending a request twice, a
connection that breaks after the request arrived is an error (never a resend), chunked
answers are read whole."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from phase24_sdk import GateConnectionError, GateHttpError
from phase24_sdk import wire as wire_module
from phase24_sdk.calls import checked
from phase24_sdk.wire import AsyncWire, SyncWire, WireConnectError

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
CHUNKED = b'HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\n6\r\n[1,2]}\r\n0\r\n\r\n'

# A script per connection: for each request on it, the bytes to answer, or None to close the
# connection after reading the request (without answering).
Script = list[list[bytes | None]]


@contextmanager
def scripted_server(script: Script) -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server answering connection i with script[i]; yields its URL and the
    request heads it received (in order)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen: list[bytes] = []

    def read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(rest) < length:
            rest += conn.recv(65536)
        return head

    def serve() -> None:
        for answers in script:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the test is over (its listener closed) before this connection came
            with conn:
                for answer in answers:
                    head = read_request(conn)
                    if head is None:
                        break
                    seen.append(head)
                    if answer is None:
                        conn.shutdown(socket.SHUT_RDWR)
                        break
                    conn.sendall(answer)
                else:
                    # Keep-alive, then the server closes the idle connection.
                    conn.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        listener.close()


def wait_for(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        threading.Event().wait(0.01)


@pytest.mark.parametrize("seen_closed", [True, False], ids=["seen-closed", "closed-unseen"])
def test_sync_wire_replaces_a_closed_keep_alive_connection_without_a_second_request(
    seen_closed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not seen_closed:  # the close races the reuse: found out only when the request is sent
        monkeypatch.setattr(wire_module._SyncConn, "usable", lambda self: True)
    with scripted_server([[OK], [OK]]) as (url, seen):
        wire = SyncWire(url, {"Authorization": "Bearer t"}, 5.0)
        first = wire.request("POST", "/v1/proposals", params={"wait": 1.5}, body=b"{}")
        assert (first.status, first.body) == (200, b'{"ok":true}')
        wait_for(lambda: len(seen) == 1)
        threading.Event().wait(0.1)  # the server has closed the idle connection by now
        second = wire.request("GET", "/v1/state")
        assert second.status == 200
        wire.close()
    assert len(seen) == 2  # each request reached the server exactly once
    assert seen[0].startswith(b"POST /v1/proposals?wait=1.5 HTTP/1.1") and b"Authorization: Bearer t" in seen[0]
    assert seen[1].startswith(b"GET /v1/state HTTP/1.1")


@pytest.mark.parametrize("seen_closed", [True, False], ids=["seen-closed", "closed-unseen"])
def test_async_wire_replaces_a_closed_keep_alive_connection_and_reads_chunked_answers(
    seen_closed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not seen_closed:
        monkeypatch.setattr(wire_module._AsyncConn, "usable", lambda self: True)

    async def run(url: str) -> tuple[int, bytes, int]:
        wire = AsyncWire(url, {}, 5.0)
        first = await wire.request("GET", "/a")
        await asyncio.sleep(0.1)
        second = await wire.request("GET", "/b")
        await wire.aclose()
        return first.status, second.body, second.status

    with scripted_server([[OK], [CHUNKED]]) as (url, seen):
        status, body, second_status = asyncio.run(run(url))
    assert status == 200 and second_status == 201
    assert checked(second_status, body) == {"a": [1, 2]}
    assert [h.split(b" ")[1] for h in seen] == [b"/a", b"/b"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_connection_that_breaks_after_the_request_arrived_is_an_error_not_a_resend(kind: str) -> None:
    with scripted_server([[None], [OK]]) as (url, seen):
        with pytest.raises(GateConnectionError):
            if kind == "sync":
                SyncWire(url, {}, 5.0).request("POST", "/v1/grants/g/outcome", body=b"{}")
            else:
                asyncio.run(AsyncWire(url, {}, 5.0).request("POST", "/v1/grants/g/outcome", body=b"{}"))
    assert len(seen) == 1  # a fresh connection that broke is never retried: the server may have acted


def test_nothing_listening_is_a_connect_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(WireConnectError):
        SyncWire(f"http://127.0.0.1:{port}", {}, 2.0).request("GET", "/")
    with pytest.raises(WireConnectError):
        asyncio.run(AsyncWire(f"http://127.0.0.1:{port}", {}, 2.0).request("GET", "/"))


def test_error_answers_name_the_field_and_garbage_is_not_a_traceback() -> None:
    with pytest.raises(GateHttpError) as refused:
        checked(422, b'{"error":"field confidence: too big","field":"confidence"}')
    assert (refused.value.http_status, refused.value.field) == (422, "confidence")
    with pytest.raises(GateHttpError, match="not JSON"):
        checked(200, b"<html>")
    with pytest.raises(ValueError, match="url"):
        SyncWire("ftp://x", {}, 1.0)
