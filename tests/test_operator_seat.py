"""The operator seat: one operator console at a time, against a real `phase24 serve`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.remote import SEAT_TAKEN, RemoteGateClient, SeatTaken, attached_app
from service.seat import OperatorSeat
from service.seat import SeatTaken as ServiceSeatTaken
from tests.service_fixtures import ROOT, add_token, env, phase24, running_service


def poll(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def apoll(pilot: Any, check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def seat_state(url: str, token: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/seat", headers={"Authorization": f"Bearer {token}"}).json())


def claim(url: str, token: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/seat", json={"console": "test"}, headers={"Authorization": f"Bearer {token}"})


def test_the_seat_is_claimed_once_and_frees_after_its_timeout_without_a_stream() -> None:
    now = [100.0]
    seat = OperatorSeat(5.0, monotonic=lambda: now[0])
    first = seat.claim("ada", "pid 1")
    with pytest.raises(ServiceSeatTaken) as taken:
        seat.claim("bob", "pid 2")
    assert "held by operator 'ada'" in str(taken.value) and "--read-only" in str(taken.value)
    assert "frees in 5s" in str(taken.value)  # claimed, no stream yet: it frees unless one connects
    held = seat.connect(first.seat_id)
    with pytest.raises(ServiceSeatTaken, match="wait until it is released"):
        seat.claim("bob", "pid 2")
    assert held is not None
    now[0] += 60  # a connected stream keeps it, however long
    assert seat.holds(first.seat_id)
    seat.disconnect(held)
    now[0] += 4.9
    assert seat.holds(first.seat_id) and seat.describe()["frees_in_s"] == pytest.approx(0.1)
    now[0] += 0.2
    assert not seat.holds(first.seat_id) and seat.describe() == {"held": False, "timeout_s": 5.0}
    second = seat.claim("bob", "pid 2")
    assert seat.connect(first.seat_id) is None  # the old console cannot take it back
    assert not seat.release(first.seat_id) and seat.release(second.seat_id)
    pinned = seat.pin("embedded")
    now[0] += 1e6
    assert seat.holds(pinned.seat_id)


async def test_a_second_operator_console_is_refused_api_calls_still_work_and_quitting_frees_the_seat(
    tmp_path: Path,
) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        url, op = service.url, service.operator
        alice = add_token(out, "operator", "alice")
        viewer = add_token(out, "viewer", "wall")
        agent = add_token(out, "agent", "data_agent")
        first = attached_app(url, op, read_only=False)
        async with first.run_test(size=(160, 48)) as pilot:
            held = await apoll(pilot, lambda: seat_state(url, viewer).get("connected"), "the seat's stream")
            assert held is True
            # A second operator console, as a person would start it: refused, one line, exit 8.
            second = await asyncio.to_thread(phase24, "console", "--attach", url, "--token", alice)
            assert second.returncode == SEAT_TAKEN == 8
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in second.stderr
            assert "operator seat is held by operator 'operator'" in lines[0] and "--read-only" in lines[0]
            with pytest.raises(SeatTaken):
                await asyncio.to_thread(attached_app, url, op, read_only=False)  # the same token too
            refused = await asyncio.to_thread(claim, url, alice)
            assert refused.status_code == 409
            assert refused.json()["holder"]["operator"] == "operator" and refused.json()["field"] is None
            # Watching needs no seat; the seat needs an operator token.
            watcher = await asyncio.to_thread(attached_app, url, alice, read_only=True)
            assert watcher.harness.seat_id is None
            assert (await asyncio.to_thread(claim, url, viewer)).status_code == 403
            assert (await asyncio.to_thread(claim, url, agent)).status_code == 403
            # An operator API call without a seat is answered; a command naming a seat not held is not.
            hdr = {"Authorization": f"Bearer {alice}"}
            paused = await asyncio.to_thread(httpx.post, f"{url}/v1/pause", headers=hdr)
            assert paused.status_code == 200 and paused.json() == {"paused": True}
            stale = await asyncio.to_thread(
                httpx.post, f"{url}/v1/resume", headers=hdr | {"X-Phase24-Seat": "seat_not_held"}
            )
            assert stale.status_code == 409 and stale.json()["field"] == "seat"
            await asyncio.to_thread(httpx.post, f"{url}/v1/resume", headers=hdr)
            # The seat holder's own command carries its seat and is answered.
            await pilot.press("p")
            await apoll(pilot, lambda: httpx.get(f"{url}/v1/state", headers=hdr).json()["paused"], "the pause")
            await pilot.press("q")
            await apoll(pilot, lambda: not seat_state(url, viewer)["held"], "the seat to be given back", 20)
        taken = await asyncio.to_thread(claim, url, alice)
        assert taken.status_code == 201 and taken.json()["operator"] == "alice"
        code, _ = service.stop()
    assert code == 0
    decisions = (out / "operator_decisions.jsonl").read_text()
    assert '"by":"operator:operator"' in decisions and '"by":"operator:alice"' in decisions


CHILD = """
import asyncio, sys
from console.remote import attached_app

async def main() -> None:
    app = attached_app(sys.argv[1], sys.argv[2], read_only=False)
    async with app.run_test(size=(120, 40)):
        print("attached", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_a_killed_consoles_seat_frees_after_the_seat_timeout(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out, "--seat-timeout", "2") as service:
        url, op = service.url, service.operator
        alice = add_token(out, "operator", "alice")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, op],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "attached"
            poll(lambda: seat_state(url, alice).get("connected"), "the child's stream")
            assert claim(url, alice).status_code == 409
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            # The kernel closes the dead console's socket: the service sees its stream gone
            # and counts the timeout down (the seat is still held meanwhile) ...
            gone = poll(
                lambda: (s := seat_state(url, alice)).get("held") is False or s.get("connected") is False,
                "the stream to close",
            )
            assert gone
            # ... then the seat is free for another console.
            taken = poll(lambda: (r := claim(url, alice)).status_code == 201 and r, "the seat to free")
            assert taken.json()["operator"] == "alice"
        finally:
            if child.poll() is None:
                child.kill()
        assert service.stop()[0] == 0


def test_serve_refuses_a_bad_seat_timeout(tmp_path: Path) -> None:
    done = phase24("serve", "--port", "0", "--out", str(tmp_path / "g"), "--seat-timeout", "0")
    assert done.returncode == 2 and "--seat-timeout" in done.stderr and "Traceback" not in done.stderr


async def test_a_console_that_lost_its_seat_claims_it_again_or_turns_read_only(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        url, op = service.url, service.operator
        alice = add_token(out, "operator", "alice")

        async def until(check: Callable[[], Any], what: str) -> None:
            deadline = time.monotonic() + 30
            while not check():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.05)

        # Its seat timed out while it was away and nobody took it: it claims a new one.
        back = RemoteGateClient(url, op, seat_id="seat_timed_out")
        task = asyncio.create_task(back.run_pipeline())
        await until(lambda: back.seat_id not in (None, "seat_timed_out"), "a new seat")
        state = await asyncio.to_thread(seat_state, url, alice)
        assert state["held"] and not back.read_only
        back.stop()
        await task
        assert not (await asyncio.to_thread(seat_state, url, alice))["held"]  # given back on detach

        # Another console has it now: this one goes on watching, read-only, and says so.
        assert (await asyncio.to_thread(claim, url, alice)).status_code == 201
        late = RemoteGateClient(url, op, seat_id="seat_timed_out")
        task = asyncio.create_task(late.run_pipeline())
        await until(lambda: late.read_only, "the console to turn read-only")
        assert late.seat_id is None and "read-only" in late.errors[-1]
        assert late.command("/v1/lock", {"reason": "x"}) is False
        late.stop()
        await task
        assert (await asyncio.to_thread(seat_state, url, alice))["operator"] == "alice"
        assert service.stop()[0] == 0
