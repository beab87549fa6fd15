"""`phase24 console --web`: the console in a real browser (Debian's headless Chromium driven by
Playwright's Python client), in front of a real gate service process on free loopback ports.

Not skipped when Chromium is missing: `.ci/run` installs it, and a machine without it fails
here with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from playwright.sync_api import Page, WebSocket, sync_playwright

from core.events import ApprovalDecided
from core.journal import read_events
from service.tokens import TOKENS_FILE, add_token
from tests.service_fixtures import ROOT, _reader, env, phase24

CHROMIUM = Path(os.environ.get("PHASE24_CHROMIUM", "/usr/bin/chromium"))
ANSI = re.compile(r"\x1b\[[0-9;?<>]*[A-Za-z~]|\x1b\][^\x07]*\x07")
CURSOR = re.compile(r"\x1b\[(\d+);(\d+)H")


@dataclass
class WebGate:
    proc: subprocess.Popen[str]
    web: str  # http://127.0.0.1:PORT/
    api: str  # http://127.0.0.1:PORT
    out: Path
    lines: queue.Queue[str]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@contextmanager
def running_web(out: Path, *options: str) -> Iterator[WebGate]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console.cli",
            "console",
            "--web",
            *("--port", "0", "--api-port", "0"),
            "--out",
            str(out),
            *options,
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _reader(proc)
        said = ""
        deadline = time.monotonic() + 60
        while "listening on" not in said:
            try:
                said += lines.get(timeout=0.2)
            except queue.Empty:
                assert proc.poll() is None and time.monotonic() < deadline, f"--web did not start: {said}"
        web = re.search(r"the console on (http://\S+/)", said)
        api = re.search(r"listening on (http://\S+)", said)
        assert web and api, said
        yield WebGate(proc, web.group(1), api.group(1), out, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (the console processes of a web gate)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 60, pause: Callable[[], None] = lambda: time.sleep(0.1)
) -> None:
    """`pause`: with a page, `page.wait_for_timeout` (Playwright delivers its events only while it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        pause()
    raise AssertionError(f"timed out waiting for {what}")


def tokens(out: Path) -> dict[str, str]:
    return {
        "operator": add_token(out / TOKENS_FILE, "operator", "web-op"),
        "viewer": add_token(out / TOKENS_FILE, "viewer", "wall"),
        "agent": add_token(out / TOKENS_FILE, "agent", "data_agent"),
    }


def propose(api: str, agent_token: str, row: int) -> str:
    body = {"agent": "data_agent", "tool": "database_write", "confidence": 0.9, "args": {"row": row}}
    response = httpx.post(f"{api}/v1/proposals", json=body, headers={"Authorization": f"Bearer {agent_token}"})
    assert response.status_code == 201, response.text
    return str(response.json()["proposal_id"])


def proposal(api: str, agent_token: str, proposal_id: str, wait: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {agent_token}"}
    response = httpx.get(f"{api}/v1/proposals/{proposal_id}?wait={wait}", headers=headers, timeout=wait + 30)
    return dict(response.json())


class Screen:
    """What the browser was sent: the console processes' output, escapes stripped."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.chunks: list[bytes] = []
        self.size = (0, 0)  # columns, rows: the last size the page sent
        page.on("websocket", self._watch)

    def pause(self) -> None:
        self.page.wait_for_timeout(100)

    def _watch(self, websocket: WebSocket) -> None:
        websocket.on("framereceived", lambda data: self.chunks.append(data if isinstance(data, bytes) else b""))
        websocket.on("framesent", self._sent)

    def _sent(self, data: str | bytes) -> None:
        message = json.loads(data)
        if message[0] == "resize":
            self.size = (message[1]["width"], message[1]["height"])

    def click_text(self, needle: str, since: int) -> None:
        """Click the middle of the last place `needle` was drawn (from the cursor move before it)."""
        raw = b"".join(self.chunks[since:]).decode("utf-8", "replace")
        at = raw.rindex(needle)
        move = list(CURSOR.finditer(raw, max(0, at - 20_000), at))[-1]
        row = int(move[1]) - 1
        column = int(move[2]) - 1 + len(ANSI.sub("", raw[move.end() : at])) + len(needle) // 2
        box = self.page.locator(".xterm-screen").bounding_box()
        assert box is not None and self.size[0] > 0
        cell_w, cell_h = box["width"] / self.size[0], box["height"] / self.size[1]
        self.page.mouse.click(box["x"] + (column + 0.5) * cell_w, box["y"] + (row + 0.5) * cell_h)

    def text(self, since: int = 0) -> str:
        return ANSI.sub("", b"".join(self.chunks[since:]).decode("utf-8", "replace"))


def launch(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y chromium` (as .ci/run does)")
    # No WebGL: in a headless Chromium without a GPU, xterm.js's WebGL renderer drops the first paint.
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--disable-3d-apis"])


def test_a_browser_console_approves_and_the_journal_records_it(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    token = tokens(out)
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nlock = "ctrl+k"\n')
    with running_web(out, "--keys", str(keys)) as gate, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(gate.web) else route.abort())
        screen = Screen(page)

        # The page asks for an operator token; a wrong one is refused, and no console runs.
        first = page.goto(gate.web)
        assert first is not None and first.status == 401
        page.fill("#token", "p24_not_a_token")
        with page.expect_navigation() as refused:
            page.click("button[type=submit]")
        assert refused.value is not None and refused.value.status == 401
        assert "Unknown token" in page.inner_text("body")
        assert children_of(gate.proc.pid) == []

        # The operator's token logs in: the page loads and its console draws the gate's header.
        page.fill("#token", token["operator"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == gate.web
        page.wait_for_selector("#terminal.-connected", timeout=60_000)
        wait_until(lambda: "pending approvals 0" in screen.text(), "the console in the page", pause=screen.pause)
        assert children_of(gate.proc.pid), "no console process for the logged-in browser"

        # `?` in the page opens the help, with the keys in force (the gate's --keys file).
        page.focus(".xterm-helper-textarea")
        seen = len(screen.chunks)
        page.keyboard.press("?")
        wait_until(lambda: "LOCK the whole system" in screen.text(seen), "the help in the page", pause=screen.pause)
        assert "ctrl+k" in screen.text(seen) and "phase24 console --web" in screen.text(seen)
        page.keyboard.press("Escape")

        # An agent proposes a HIGH-risk call: the approval appears in the browser.
        seen = len(screen.chunks)
        proposal_id = propose(gate.api, token["agent"], 7)
        wait_until(
            lambda: "APPROVAL NEEDED" in screen.text(seen), "the approval prompt in the page", pause=screen.pause
        )
        assert "database_write" in screen.text(seen) and "data_agent" in screen.text(seen)
        page.screenshot(path=str(tmp_path / "approval.png"))

        # `y` in the page approves it (the prompt takes keys once armed: press again until it has).
        status = proposal(gate.api, token["agent"], proposal_id, 0)
        for _ in range(20):
            page.keyboard.press("y")
            status = proposal(gate.api, token["agent"], proposal_id, 3)
            if status["decided"]:
                break
        assert (status["state"], status["decision"]) == ("COMPLETED", "approved"), status
        page.screenshot(path=str(tmp_path / "approved.png"))

        # The next one is approved by a click on the prompt's `y approve`.
        seen = len(screen.chunks)
        second = propose(gate.api, token["agent"], 8)
        wait_until(lambda: '"row": 8' in screen.text(seen), "the second prompt in the page", pause=screen.pause)
        status = proposal(gate.api, token["agent"], second, 0)
        for _ in range(20):
            screen.click_text("y approve", seen)
            status = proposal(gate.api, token["agent"], second, 3)
            if status["decided"]:
                break
        assert (status["state"], status["decision"]) == ("COMPLETED", "approved"), status

        # SIGTERM with the browser still connected: the gate stops cleanly and its console goes too.
        consoles = children_of(gate.proc.pid)
        assert gate.stop() == 0
        assert not [pid for pid in consoles if alive(pid)], "a console process outlived the web gate"
        browser.close()
    decided = [event for event in read_events(out) if isinstance(event, ApprovalDecided)]
    assert [(d.approved, d.outcome, d.tool, d.decided_by) for d in decided] == 2 * [
        (True, "APPROVE", "database_write", "operator:web-op")
    ]
    assert phase24("verify", str(out)).returncode == 0


async def test_only_an_operator_token_opens_a_console(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    token = tokens(out)
    with running_web(out) as gate:
        await asyncio.to_thread(_check_the_page, gate, token)
        await _check_the_websocket(gate, token)
        assert await asyncio.to_thread(gate.stop) == 0


def _check_the_page(gate: WebGate, token: dict[str, str]) -> None:
    with httpx.Client(base_url=gate.web, follow_redirects=False) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", params={"token": "p24_wrong"}).status_code == 401
        assert http.get("/", params={"token": token["viewer"]}).status_code == 403
        assert http.get("/", params={"token": token["agent"]}).status_code == 403
        assert http.post("/login", data={"token": "p24_wrong"}).status_code == 401
        assert http.post("/login", data={"token": token["viewer"]}).status_code == 403
        assert not http.cookies
        logged_in = http.get("/", params={"token": token["operator"]})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/"
        cookie = logged_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token["operator"] not in cookie
        page = http.get("/")
        assert page.status_code == 200
        assert f'data-session-websocket-url="ws://{page.url.netloc.decode()}/ws"' in page.text
        # Behind an HTTPS proxy (X-Forwarded-Proto), the page's websocket is wss:// and the cookie Secure.
        proxied = http.get("/", headers={"X-Forwarded-Proto": "https"})
        assert 'data-session-websocket-url="wss://' in proxied.text
        proxied_login = http.get("/", params={"token": token["operator"]}, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in proxied_login.headers["set-cookie"] and "Secure" not in cookie
        # A host name other than loopback (DNS rebinding) is refused while bound to loopback.
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 403


async def _check_the_websocket(gate: WebGate, token: dict[str, str]) -> None:
    ws_url = gate.web + "ws"
    origin = gate.web.rstrip("/")
    async with aiohttp.ClientSession() as anonymous:
        await _refused(anonymous, ws_url, origin, 401)
    port = gate.web.rstrip("/").rpartition(":")[2]
    async with aiohttp.ClientSession(cookies={f"phase24_console_{port}": "forged"}) as forged:
        await _refused(forged, ws_url, origin, 401)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # unsafe: IP hosts
        async with session.get(gate.web, params={"token": token["operator"]}, allow_redirects=False) as login:
            assert login.status == 303
        await _refused(session, ws_url, "http://evil.example", 403)
        assert children_of(gate.proc.pid) == [], "a console process started for a refused connection"
        async with session.ws_connect(ws_url, headers={"Origin": origin}) as websocket:
            await asyncio.to_thread(wait_until, lambda: bool(children_of(gate.proc.pid)), "the console process")
            await websocket.close()
        await asyncio.to_thread(wait_until, lambda: not children_of(gate.proc.pid), "the console process to end")


async def _refused(session: aiohttp.ClientSession, url: str, origin: str, status: int) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with session.ws_connect(url, headers={"Origin": origin}):
            pass
    assert refused.value.status == status


def test_web_refuses_a_remote_host_a_plan_a_bad_keys_file_and_a_busy_port(tmp_path: Path) -> None:
    remote = phase24("console", "--web", "--host", "0.0.0.0", "--port", "0", "--out", str(tmp_path / "a"))
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr and "Traceback" not in remote.stderr
    assert len(remote.stderr.strip().splitlines()) == 1
    plan = phase24("console", "--web", str(ROOT / "sample_plans" / "approvals.json"), "--out", str(tmp_path / "b"))
    assert plan.returncode == 2 and "--web" in plan.stderr and "Traceback" not in plan.stderr
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\nno_such_action = "k"\n')
    bad_keys = phase24("console", "--web", "--keys", str(keys), "--port", "0", "--out", str(tmp_path / "e"))
    assert bad_keys.returncode == 2 and "no_such_action" in bad_keys.stderr and "Traceback" not in bad_keys.stderr
    assert not (tmp_path / "e").exists()
    with running_web(tmp_path / "c") as gate:
        port = gate.web.rstrip("/").rpartition(":")[2]
        busy = phase24("console", "--web", "--port", port, "--api-port", "0", "--out", str(tmp_path / "d"))
        assert gate.stop() == 0
    assert busy.returncode == 2 and "--port" in busy.stderr and "Traceback" not in busy.stderr


def test_each_browser_console_takes_the_gates_arm_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """`console --web --arm-delay S` hands S to every browser's console process, whose parser
    checks it like the terminal console's (0.3 to 10 s)."""
    import shlex

    from console.web import WebOptions, browser_console, console_command

    command = shlex.split(console_command("http://127.0.0.1:9", WebOptions(arm_delay=1.5, no_bell=True)))
    assert command[command.index("--arm-delay") + 1] == "1.5" and "--no-bell" in command
    assert "--arm-delay" not in console_command("http://127.0.0.1:9", WebOptions())
    with pytest.raises(SystemExit) as refused:
        browser_console(["--attach", "http://127.0.0.1:9", "--arm-delay", "0.1"])
    assert refused.value.code == 2
    monkeypatch.delenv("PHASE24_TOKEN", raising=False)
    # Parsed and accepted; the console then stops at the missing token (exit 2, one line).
    assert browser_console(["--attach", "http://127.0.0.1:9", "--arm-delay", "1.5"]) == 2
