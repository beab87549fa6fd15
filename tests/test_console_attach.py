"""`phase24 console --attach URL`: Pilot-driven consoles attached to a real `phase24 serve`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.app import ConsoleGate, OperatorConsole, make_app
from console.approval_prompt import ApprovalModal
from console.remote import SeatTaken, attached_app
from service.embedded import EmbeddedService
from service.server import ServeOptions
from service.tokens import TOKENS_FILE
from service.tokens import add_token as add_token_to
from tests.service_fixtures import Service, add_token, phase24, running_service


async def wait_until(pilot: Any, check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def add_token_file(out: Path, role: str, name: str) -> str:
    return add_token_to(out / TOKENS_FILE, role, name)


def propose(url: str, token: str, agent: str, tool: str) -> str:
    body = {"agent": agent, "tool": tool, "confidence": 0.9, "args": {"n": 1}}
    response = httpx.post(f"{url}/v1/proposals", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return str(response.json()["proposal_id"])


def status(url: str, token: str, proposal_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    return dict(httpx.get(f"{url}/v1/proposals/{proposal_id}", headers=headers).json())


async def test_an_attached_operator_console_approves_and_a_read_only_one_only_watches(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        agent = add_token(out, "agent", "data_agent")
        viewer = add_token(out, "viewer", "wall")
        operator_app = attached_app(service.url, service.operator, read_only=False)
        viewer_app = attached_app(service.url, viewer, read_only=True)
        async with operator_app.run_test(size=(160, 48)) as pilot, viewer_app.run_test(size=(160, 48)) as watch:
            assert str(viewer_app.query_one("#attach-badge").render()).startswith("[RO]")
            assert str(operator_app.query_one("#attach-badge").render()).startswith("[OP] operator seat")
            # The viewer attached after the operator: its badge names who holds the seat.
            assert "operator seat: operator (pid " in str(viewer_app.query_one("#attach-badge").render())
            pid = await asyncio.to_thread(propose, service.url, agent, "data_agent", "database_write")
            await wait_until(pilot, lambda: isinstance(operator_app.screen, ApprovalModal), "the approval prompt")
            modal = operator_app.screen
            assert isinstance(modal, ApprovalModal) and modal.request is not None
            assert modal.request.tool == "database_write"
            # The read-only console sees the request in its queue but gets no prompt.
            await wait_until(watch, lambda: bool(viewer_app.view.pending), "the viewer's queue")
            assert not isinstance(viewer_app.screen, ApprovalModal)
            await wait_until(pilot, lambda: modal.armed, "the prompt to arm")  # keys answer only once armed
            await pilot.press("y")
            done = await asyncio.to_thread(
                lambda: httpx.get(
                    f"{service.url}/v1/proposals/{pid}?wait=10", headers={"Authorization": f"Bearer {agent}"}
                ).json()
            )
            assert (done["state"], done["decision"]) == ("COMPLETED", "approved")

            # The viewer's lock key is hidden and does nothing; the operator's locks the service.
            await watch.press("l")
            await watch.pause(0.3)
            assert (await asyncio.to_thread(status, service.url, agent, pid))["decision"] == "approved"
            assert viewer_app.check_action("lock", ()) is False  # hidden, not only greyed out
            keys = set(viewer_app.screen.active_bindings)
            assert not {"l", "ctrl+l", "u", "p"} & keys and "q" in keys
            assert {"l", "p"} <= set(operator_app.screen.active_bindings)
            await pilot.press("l")
            await wait_until(watch, lambda: viewer_app.harness.controller.locked, "the viewer to see the lock")
            await wait_until(watch, lambda: viewer_app.view.locked, "the viewer's lock banner")
            await pilot.press("q")
            await watch.press("q")
        code, _ = service.stop()
    assert code == 0
    decisions = [line for line in (out / "operator_decisions.jsonl").read_text().splitlines() if line]
    assert '"APPROVE"' in decisions[0] and '"by":"operator:operator"' in decisions[0]
    assert '"LOCK"' in decisions[1]
    assert phase24("verify", str(out)).returncode == 0


def test_a_refused_attach_token_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        refused = phase24("console", "--attach", service.url, "--token", "p24_wrong")
        service.stop()
    assert refused.returncode == 2
    assert "refused the console (401)" in refused.stderr and "Traceback" not in refused.stderr


async def test_console_without_a_plan_serves_agents_and_its_keys_answer_them(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    agent = add_token_file(out, "agent", "data_agent")
    alice = add_token_file(out, "operator", "alice")
    gate = ConsoleGate()
    service = EmbeddedService(ServeOptions(port=0, out=out), gate)
    app = make_app(service, gate)
    url = service.listening.url
    try:
        await _drive_embedded(app, service, url, agent, alice)
    finally:
        service.stop("test teardown")  # never leave the embedded service's thread running
    assert (out / "orchestration_summary.json").exists()
    assert phase24("verify", str(out)).returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health")


async def _drive_embedded(app: Any, service: EmbeddedService, url: str, agent: str, operator: str) -> None:
    async with app.run_test(size=(160, 48)) as pilot:
        assert url in str(app.query_one("#attach-badge").render())
        await wait_until(pilot, lambda: service.accepting, "the embedded service")
        # This console is the operator: another operator console may only watch.
        with pytest.raises(SeatTaken, match="console serving this gate"):
            await asyncio.to_thread(attached_app, url, operator, read_only=False)
        watcher = await asyncio.to_thread(attached_app, url, operator, read_only=True)
        assert watcher.harness.seat_id is None
        pid = await asyncio.to_thread(propose, url, agent, "data_agent", "database_write")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalModal), "the approval prompt")
        modal = app.screen
        assert isinstance(modal, ApprovalModal)
        await wait_until(pilot, lambda: modal.armed, "the prompt to arm")  # keys answer only once armed
        await pilot.press("y")
        done = await asyncio.to_thread(
            lambda: httpx.get(f"{url}/v1/proposals/{pid}?wait=10", headers={"Authorization": f"Bearer {agent}"}).json()
        )
        assert (done["state"], done["decision"]) == ("COMPLETED", "approved")
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "the console to stop", timeout=20)


def _console_args(*argv: str) -> Any:
    from console.cli import build_parser

    return build_parser().parse_args(["console", *argv])


def test_attached_and_embedded_consoles_take_the_console_options(tmp_path: Path) -> None:
    """--keys, --no-bell, --desktop-notify and --arm-delay reach every console that shows
    prompts: attached to a service, and serving one itself (as on plans)."""
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nlock = "ctrl+k"\n', encoding="utf-8")
    options = ("--keys", str(keys), "--no-bell", "--desktop-notify", "--arm-delay", "1.5")
    from console.embedded import embedded_console
    from console.remote import attached_console

    out = tmp_path / "gate"
    with running_service(out) as service:
        app = attached_console(_console_args("--attach", service.url, "--token", service.operator, *options))
        try:
            assert app.approval_prompt.arm_delay == 1.5
            assert app.keymap == {"lock": "ctrl+k"}
            assert (app.notice.bell, app.notice.desktop) == (False, True)
        finally:
            app.harness.release_seat()
        default = attached_console(_console_args("--attach", service.url, "--token", service.operator, "--read-only"))
        assert default.approval_prompt.arm_delay == 0.6 and default.notice.bell is True
        service.stop()
    embedded, own = embedded_console(_console_args("--out", str(tmp_path / "own"), "--port", "0", *options))
    try:
        assert embedded.approval_prompt.arm_delay == 1.5
        assert embedded.keymap == {"lock": "ctrl+k"}
        assert (embedded.notice.bell, embedded.notice.desktop) == (False, True)
    finally:
        own.stop("test teardown")


def test_a_bad_keys_file_stops_an_attached_console_before_it_takes_the_seat(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nno_such_action = "x"\n', encoding="utf-8")
    out = tmp_path / "gate"
    with running_service(out) as service:
        refused = phase24("console", "--attach", service.url, "--token", service.operator, "--keys", str(keys))
        seat = httpx.get(f"{service.url}/v1/state", headers={"Authorization": f"Bearer {service.operator}"}).json()
        service.stop()
    assert refused.returncode == 2, refused.stderr
    assert "keys.toml" in refused.stderr and "Traceback" not in refused.stderr
    assert not seat.get("operator_seat", {}).get("held")


async def test_an_attached_console_counts_the_services_proposals_not_plans_of_a_total(tmp_path: Path) -> None:
    """A service has no plan total: the status bar says how many of the proposals received are
    done (it used to read "plans 2/0"), and names the current one a proposal."""
    out = tmp_path / "gate"
    with running_service(out) as service:
        agent = add_token(out, "agent", "data_agent")
        viewer = add_token(out, "viewer", "wall")
        headers = {"Authorization": f"Bearer {agent}"}
        for n in range(2):
            body = {"agent": "data_agent", "tool": "memory_search", "confidence": 0.9, "args": {"n": n}}
            answer = await asyncio.to_thread(
                lambda body=body: httpx.post(f"{service.url}/v1/proposals?wait=10", json=body, headers=headers)
            )
            assert answer.json()["state"] == "COMPLETED", answer.text
        app = attached_app(service.url, viewer, read_only=True)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: app.view.plans_done == 2, "both proposals in the view")
            await pilot.pause(0.3)
            bar = str(app.query_one("#status-bar").render())
            assert "proposals 2/2 done" in bar and "proposal prop-2" in bar, bar
            assert "plans " not in bar
            await pilot.press("q")
        code, _ = service.stop()
    assert code == 0


@contextlib.asynccontextmanager
async def watching_a_service(tmp_path: Path) -> AsyncIterator[tuple[Service, OperatorConsole, Any]]:
    """A real service, and a read-only console attached to it that has seen the run start."""
    out = tmp_path / "gate"
    with running_service(out) as service:
        viewer = add_token(out, "viewer", "wall")
        app = attached_app(service.url, viewer, read_only=True)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_until(pilot, lambda: bool(app.view.run_id), "the run to start in the view")
            yield service, app, pilot


async def test_an_attached_console_shows_the_run_finished_when_the_service_stops(tmp_path: Path) -> None:
    """The service's last events (RunFinished with its status) reach every attached console
    before their streams end: the console does not go on saying RUNNING (it did: the event
    stream was closed before the run's end was published)."""
    async with watching_a_service(tmp_path) as (service, app, pilot):
        code, _ = await asyncio.to_thread(service.stop)
        assert code == 0
        await wait_until(pilot, lambda: app.view.finished, "the run's end in the view")
        await pilot.pause(0.3)
        bar = str(app.query_one("#status-bar").render())
        # A stopped service's run ends as stopped by the operator's signal: interrupted.
        assert bar.startswith(" INTERRUPTED "), bar
        await pilot.press("q")


async def test_an_attached_console_that_loses_its_service_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    """A killed service never sends the run's end: once reconnecting fails, the console says it
    is detached (status line and a notification) instead of showing RUNNING."""
    import signal

    import console.remote

    monkeypatch.setattr(console.remote, "RECONNECT_TRIES", 3)
    monkeypatch.setattr(console.remote, "RECONNECT_DELAY_S", 0.05)
    async with watching_a_service(tmp_path) as (service, app, pilot):
        await asyncio.to_thread(service.stop, signal.SIGKILL)
        await wait_until(pilot, lambda: app.view.detached, "the console to notice")
        await pilot.pause(0.2)
        bar = str(app.query_one("#status-bar").render())
        assert bar.startswith(" DETACHED "), bar
        said = [str(n.message) for n in app._notifications]
        assert any("lost the service at " + service.url in m and "3 reconnects failed" in m for m in said), said
        await pilot.press("q")


async def test_a_serving_consoles_badge_wraps_on_a_narrow_terminal_instead_of_losing_the_token_hint(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """At 80 columns the serving console's badge (its URL, and how to make agent tokens) wraps,
    all of it on screen; it used to be cut after "(agent tokens: phase24"."""
    monkeypatch.chdir(tmp_path)
    out = Path("gate")  # as a person types it: the badge names it twice
    gate = ConsoleGate()
    service = EmbeddedService(ServeOptions(port=0, out=out), gate)
    app = make_app(service, gate)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: service.accepting, "the embedded service")
            badge = app.query_one("#attach-badge")
            assert badge.size.height == 2
            lines = [strip.text.strip() for strip in badge.render_lines(badge.region.reset_offset)]
            assert " ".join(lines).endswith("--role agent NAME)"), lines
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running, "the console to stop", timeout=20)
    finally:
        service.stop("test teardown")
