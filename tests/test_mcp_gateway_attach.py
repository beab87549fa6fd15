"""`phase24 mcp-gateway --attach URL --token-file F`: end to end, with a real `phase24 serve` on a
free loopback port, a real gateway process driven by the `mcp` SDK's own client over stdio,
the real MCP server of tests/mcp_upstream.py behind it (every call it receives is logged with
its exact arguments), and an operator answering through the service's API or an attached
console (Pilot)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from console.approval_prompt import ApprovalModal
from console.remote import attached_app
from tests.service_fixtures import ROOT, Service, add_token, env, phase24, running_service
from tests.test_console_attach import wait_until

UPSTREAM = [sys.executable, str(ROOT / "tests" / "mcp_upstream.py")]


class Setup:
    def __init__(self, tmp: Path, service: Service, agent: str = "mcp_agent") -> None:
        self.tmp = tmp
        self.service = service
        self.effects = tmp / "effects.txt"
        self.calls = tmp / "calls.jsonl"
        self.token_file = tmp / "agent.token"
        self.token = add_token(service.out, "agent", agent)
        self.token_file.write_text(self.token + "\n")

    def child_env(self) -> dict[str, str]:
        return {**env(), "MCP_UPSTREAM_EFFECTS": str(self.effects), "MCP_UPSTREAM_CALLS": str(self.calls)}

    def argv(self, *options: str) -> list[str]:
        return [
            "-m",
            "console.cli",
            "mcp-gateway",
            "--attach",
            self.service.url,
            "--token-file",
            str(self.token_file),
            *options,
            "--",
            *UPSTREAM,
        ]

    def upstream_calls(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def effect_lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def operator(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.service.client(self.service.operator) as http:
            response = http.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def decide(self, tool: str, decision: str, **extra: Any) -> dict[str, Any]:
        request = self.service.wait_for_request(self.service.operator, tool)
        body = {"decision": decision, "reason": f"test: {decision}", **extra}
        return self.operator("POST", f"/v1/approvals/{request['request_id']}", body)

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        with self.service.client(self.token) as http:
            return dict(http.get(f"/v1/proposals/{proposal_id}").json())


@asynccontextmanager
async def gateway(setup: Setup, *options: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=setup.argv(*options), env=setup.child_env(), cwd=str(ROOT)
    )
    with (setup.tmp / "gateway.stderr").open("a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text(result: Any) -> str:
    assert isinstance(result, types.CallToolResult)
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def phase24_of(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content["phase24"])


async def test_attached_calls_are_decided_by_the_service_and_run_with_exactly_the_approved_arguments(
    tmp_path: Path,
) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        setup = Setup(tmp_path, service)
        with anyio.fail_after(120):
            async with gateway(setup) as s:
                tools = {t.name: t for t in (await s.list_tools()).tools}
                read = await s.call_tool("lookup", {"key": "k1"})
                async with anyio.create_task_group() as tg:
                    answers: dict[str, types.CallToolResult] = {}

                    async def call(key: str, name: str, args: dict[str, Any]) -> None:
                        answers[key] = await s.call_tool(name, args)

                    tg.start_soon(call, "approved", "append_line", {"line": "one", "_phase24_confidence": 0.95})
                    await anyio.to_thread.run_sync(setup.decide, "append_line", "approve")
                while "approved" not in answers:
                    await anyio.sleep(0.05)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, "edited", "append_line", {"line": "as proposed"})
                    await anyio.to_thread.run_sync(
                        lambda: setup.decide("append_line", "approve", edited_args={"line": "as edited"})
                    )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, "denied", "delete_record", {"key": "a"})
                    await anyio.to_thread.run_sync(setup.decide, "delete_record", "deny")
                mock = await s.call_tool("append_line", {"line": "unsure", "_phase24_confidence": 0.2})
                await anyio.to_thread.run_sync(setup.operator, "POST", "/v1/lock", {"reason": "incident"})
                locked = await s.call_tool("append_line", {"line": "while locked"})
                await anyio.to_thread.run_sync(setup.operator, "POST", "/v1/unlock", {"reason": "over"})
        code, _ = service.stop()
    assert code == 0
    assert tools["append_line"].description is not None and "HIGH risk" in tools["append_line"].description
    assert text(read) == "value of k1" and not read.is_error
    assert text(answers["approved"]) == "appended" and not answers["approved"].is_error
    assert text(answers["edited"]) == "appended"
    assert (
        answers["denied"].is_error
        and "denied" in text(answers["denied"])
        and "will not help" in text(answers["denied"])
    )
    assert not mock.is_error and text(mock).startswith("[phase24 MOCK] NOT SENT to upstream")
    assert locked.is_error and "LOCKED" in text(locked)
    # Upstream received exactly the approved arguments: the confidence argument stripped, the
    # operator's edit applied, nothing for the denied, MOCK and locked calls.
    assert setup.upstream_calls() == [
        {"tool": "lookup", "arguments": {"key": "k1"}},
        {"tool": "append_line", "arguments": {"line": "one"}},
        {"tool": "append_line", "arguments": {"line": "as edited"}},
    ]
    assert setup.effect_lines() == ["one", "as edited"]
    # The service's journal and outputs hold the calls, under the gateway's agent name.
    log = (out / "tool_execution_log.jsonl").read_text()
    assert '"agent":"mcp_agent"' in log and '"tool":"append_line"' in log and '"tool":"delete_record"' in log
    decisions = (out / "operator_decisions.jsonl").read_text()
    assert decisions.count('"APPROVE"') == 2 and '"DENY"' in decisions and '"LOCK"' in decisions
    assert "as edited" in decisions
    assert phase24("verify", str(out)).returncode == 0


async def test_an_attached_console_approves_a_gateway_call_by_keypress(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        setup = Setup(tmp_path, service)
        app = attached_app(service.url, service.operator, read_only=False)
        async with gateway(setup) as s, app.run_test(size=(160, 48)) as pilot:
            call = asyncio.ensure_future(s.call_tool("delete_record", {"key": "by console"}))
            await wait_until(pilot, lambda: isinstance(app.screen, ApprovalModal), "the approval prompt", 60)
            modal = app.screen
            assert isinstance(modal, ApprovalModal) and modal.request is not None
            assert modal.request.tool == "delete_record" and modal.request.agent == "mcp_agent"
            await wait_until(pilot, lambda: modal.armed, "the prompt to arm")
            await pilot.press("y")
            result = await asyncio.wait_for(call, 60)
            await pilot.press("q")
        service.stop()
    assert not result.is_error and text(result) == "deleted by console"
    assert setup.upstream_calls() == [{"tool": "delete_record", "arguments": {"key": "by console"}}]


async def test_a_lease_that_runs_out_during_the_upstream_call_is_unknown_and_never_resent(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out, "--lease", "1") as service:
        setup = Setup(tmp_path, service)
        with anyio.fail_after(120):
            async with gateway(setup) as s:
                async with anyio.create_task_group() as tg:
                    answers: list[types.CallToolResult] = []

                    async def call() -> None:
                        answers.append(await s.call_tool("slow_delete", {"key": "k", "seconds": 3}))

                    tg.start_soon(call)
                    await anyio.to_thread.run_sync(setup.decide, "slow_delete", "approve")
                result = answers[0]
                status = await anyio.to_thread.run_sync(setup.proposal, phase24_of(result)["proposal_id"])
        service.stop()
    assert result.is_error and "DID run upstream" in text(result) and "UNKNOWN" in text(result)
    assert (status["state"], status["decision"]) == ("ABORTED", "unknown")
    assert setup.effect_lines() == ["delete k"]  # sent once, never again
    assert len(setup.upstream_calls()) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_wrong_token_or_an_unreachable_service_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "gate"

    def run(setup: Setup) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *setup.argv()],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=setup.child_env(),
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    with running_service(out) as service:
        setup = Setup(tmp_path, service)
        setup.token_file.write_text("p24_not_a_token\n")
        wrong = run(setup)
        setup.token_file.write_text(add_token(out, "viewer", "wall") + "\n")
        viewer = run(setup)
        setup.token_file.write_text("")
        empty = run(setup)
        service.stop()
    setup.token_file.write_text(setup.token)
    service.url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    unreachable = run(setup)
    for done, says in (
        (wrong, "refused the token (401)"),
        (viewer, "needs an agent token"),
        (empty, "--token-file"),
        (unreachable, "cannot reach the gate service"),
    ):
        assert done.returncode == 2 and done.stdout == "", done
        assert says in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
    assert setup.upstream_calls() == []


async def test_a_service_that_stops_during_the_upstream_call_leaves_unknown_and_the_call_fails_cleanly(
    tmp_path: Path,
) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        setup = Setup(tmp_path, service)
        with anyio.fail_after(120):
            async with gateway(setup) as s:
                async with anyio.create_task_group() as tg:
                    answers: list[types.CallToolResult] = []

                    async def call() -> None:
                        answers.append(await s.call_tool("slow_delete", {"key": "k", "seconds": 4}))

                    tg.start_soon(call)
                    await anyio.to_thread.run_sync(setup.decide, "slow_delete", "approve")
                    while setup.effect_lines() == []:
                        await anyio.sleep(0.05)
                    code, _ = await anyio.to_thread.run_sync(service.stop)
                after = await s.call_tool("lookup", {"key": "k"})
    assert code == 0
    result = answers[0]
    assert result.is_error and "DID run upstream" in text(result) and "UNKNOWN" in text(result)
    assert after.is_error and "cannot reach the gate service" in text(after) and "NOT sent" in text(after)
    conn = sqlite3.connect(out / "journal.sqlite3")
    try:
        intents = [(r[0], r[1]) for r in conn.execute("SELECT tool, status FROM intents ORDER BY rowid")]
    finally:
        conn.close()
    assert intents == [("slow_delete", "UNKNOWN")]
    assert setup.effect_lines() == ["delete k"]  # never sent again
    assert setup.upstream_calls() == [{"tool": "slow_delete", "arguments": {"key": "k", "seconds": 4}}]


def test_attach_options_are_checked_before_anything_starts(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("p24_x")
    url = "http://127.0.0.1:9"

    def gateway_cli(*options: str) -> subprocess.CompletedProcess[str]:
        return phase24("mcp-gateway", *options, "--", *UPSTREAM)

    for options, says in (
        (("--attach", url), "--attach URL and --token-file F go together"),
        (("--attach", url, "--token-file", str(token), "--approve-all"), "--approve-all is the embedded gate's"),
        (("--attach", url, "--token-file", str(token), "--out", str(tmp_path)), "--out is the embedded gate's"),
        (("--attach", "ftp://x", "--token-file", str(token)), "--attach: expected the service's http:// URL"),
        (("--attach", url, "--token-file", str(tmp_path / "missing")), "--token-file"),
        (("--attach", url, "--token-file", str(token), "--agent", "bad name"), "--agent"),
    ):
        done = gateway_cli(*options)
        assert done.returncode == 2 and done.stdout == "", (options, done)
        assert says in done.stderr and done.stderr.strip().count("\n") == 0, (options, done.stderr)
