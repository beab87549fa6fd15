"""End to end: the `mcp` SDK's own client, over stdio, against `phase24 mcp-gateway` in a real
subprocess, which proxies the real MCP server of tests/mcp_upstream.py. Effects are counted
in the upstream's effects file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = [sys.executable, str(ROOT / "tests" / "mcp_upstream.py")]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.out = tmp / "gw"
        self.state = tmp / "state"
        self.effects = tmp / "effects.txt"

    def effect_lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def env(self) -> dict[str, str]:
        return {"MCP_UPSTREAM_EFFECTS": str(self.effects), "PHASE24_STATE_DIR": str(self.state)}

    def params(self, *options: str) -> StdioServerParameters:
        args = ["-m", "console.cli", "mcp-gateway", "--out", str(self.out), *options, "--", *UPSTREAM]
        return StdioServerParameters(command=sys.executable, args=args, env=self.env(), cwd=str(ROOT))

    def intents(self) -> list[tuple[str, str]]:
        conn = sqlite3.connect(self.out / "journal.sqlite3")
        try:
            return [(r[0], r[1]) for r in conn.execute("SELECT tool, status FROM intents ORDER BY rowid")]
        finally:
            conn.close()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@asynccontextmanager
async def gateway(env: Env, *options: str, errlog: TextIO = sys.stderr) -> AsyncIterator[ClientSession]:
    async with stdio_client(env.params(*options), errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text(result: Any) -> str:
    assert isinstance(result, types.CallToolResult)
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_listing_carries_upstream_tools_and_the_confidence_argument(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
    assert {"lookup", "delete_record", "append_line"} <= set(tools)
    assert "_phase24_confidence" in tools["lookup"].input_schema["properties"]
    assert tools["lookup"].input_schema["required"] == ["key"]
    assert tools["lookup"].description == "Look a key up (read-only). [Phase 24 gate: LOW risk, reversible]"
    assert tools["append_line"].description is not None
    assert tools["append_line"].description.endswith("HIGH risk, irreversible; LIVE needs an operator's approval]")
    record = json.loads((env.out / "gateway.json").read_text())
    judged = {t["exposed"]: t for t in record["tools"]}
    assert (judged["lookup"]["risk"], judged["lookup"]["requires_approval"]) == ("LOW", False)
    assert (judged["append_line"]["risk"], judged["append_line"]["reversible"]) == ("HIGH", False)
    assert judged["append_line"]["judged_by"].startswith("no annotations")


async def test_read_only_call_is_forwarded_and_journalled(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env) as s:
            result = await s.call_tool("lookup", {"key": "k1", "_phase24_confidence": 0.95})
    assert text(result) == "value of k1"
    assert not result.is_error
    log = (env.out / "tool_execution_log.jsonl").read_text()
    assert '"mode":"LIVE"' in log
    summary = json.loads((env.out / "orchestration_summary.json").read_text())
    assert summary["plans_processed"] == 1 and summary["live_executions"] == 1


async def test_destructive_and_unannotated_calls_are_denied_by_default_with_no_effect(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env) as s:
            denied = await s.call_tool("delete_record", {"key": "a"})
            unannotated = await s.call_tool("append_line", {"line": "x"})
            again = await s.call_tool("append_line", {"line": "x"})
    assert denied.is_error and "denied" in text(denied) and "will not help" in text(denied)
    assert unannotated.is_error and "denied" in text(unannotated)
    assert again.is_error and "denied earlier" in text(again)
    assert env.effect_lines() == []
    decisions = (env.out / "operator_decisions.jsonl").read_text()
    assert "DENIED_EARLIER" in decisions


async def test_with_approval_exactly_one_effect_and_low_confidence_is_not_sent(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env, "--approve-all") as s:
            done = await s.call_tool("append_line", {"line": "one"})
            repeated = await s.call_tool("append_line", {"line": "one"})
            mock = await s.call_tool("append_line", {"line": "two", "_phase24_confidence": 0.3})
            dry = await s.call_tool("append_line", {"line": "three", "_phase24_confidence": 0.82})
            bad = await s.call_tool("append_line", {"line": "four", "_phase24_confidence": 7})
    assert not done.is_error and text(done) == "appended"
    assert repeated.is_error and "already ran LIVE" in text(repeated)  # identical irreversible: at most once
    assert "[phase24 MOCK] NOT SENT" in text(mock)
    assert "[phase24 DRY_RUN] NOT SENT" in text(dry) and '"line": "three"' in text(dry)
    assert bad.is_error and "_phase24_confidence" in text(bad)
    assert env.effect_lines() == ["one"]  # the confidence argument is never forwarded
    assert env.intents() == [("append_line", "DONE")]


def _phase24(env: Env, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        env={**os.environ, **env.env()},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


async def test_system_wide_lock_stops_calls(env: Env) -> None:
    _phase24(env, "lock", "--reason", "incident")
    with anyio.fail_after(60):
        async with gateway(env, "--approve-all") as s:
            result = await s.call_tool("append_line", {"line": "locked?"})
    assert result.is_error and "LOCKED" in text(result) and "will not help" in text(result)
    assert env.effect_lines() == []


async def test_a_lock_taken_while_the_gateway_runs_stops_the_next_calls(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env, "--approve-all") as s:
            before = await s.call_tool("append_line", {"line": "before"})
            await anyio.to_thread.run_sync(_phase24, env, "lock", "--reason", "stop now")
            await anyio.sleep(1.0)  # a running gate picks a lock up within half a second
            after = await s.call_tool("append_line", {"line": "after"})
            read = await s.call_tool("lookup", {"key": "k"})
    assert not before.is_error and after.is_error and "LOCKED" in text(after)
    assert read.is_error and "LOCKED" in text(read)  # everything stays at MOCK
    assert env.effect_lines() == ["before"]


async def test_gateway_killed_mid_call_leaves_unknown_and_never_resends(env: Env) -> None:
    with anyio.fail_after(90):
        async with gateway(env, "--approve-all") as s:
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    try:
                        await s.call_tool("slow_delete", {"key": "k", "seconds": 30})
                    except Exception:
                        pass  # the gateway dies under this call

                tg.start_soon(call)
                while env.effect_lines() == []:
                    await anyio.sleep(0.05)
                pid = int((env.out / "run.lock").read_text().strip())
                os.kill(pid, signal.SIGKILL)
                tg.cancel_scope.cancel()
    assert env.intents() == [("slow_delete", "PENDING")]
    errlog = env.tmp / "restart.stderr"
    with anyio.fail_after(60), errlog.open("w") as err:
        async with gateway(env, "--approve-all", errlog=err) as s:
            again = await s.call_tool("slow_delete", {"key": "k", "seconds": 30})
    assert "1 earlier LIVE call(s) have an UNKNOWN outcome" in errlog.read_text()
    assert again.is_error and "UNKNOWN" in text(again)
    assert env.effect_lines() == ["delete k"]  # not sent again
    assert env.intents() == [("slow_delete", "UNKNOWN")]
    summary = json.loads((env.out / "orchestration_summary.json").read_text())
    assert [u["tool"] for u in summary["unknown_outcomes"]] == ["slow_delete"]
    log = [json.loads(line) for line in (env.out / "tool_execution_log.jsonl").read_text().splitlines()]
    resent = [r["action_id"] for line in log for r in line["result"]["tool_results"]]
    # The refused re-send has its own action id, not the killed call's.
    assert len(resent) == 1 and resent[0] != summary["unknown_outcomes"][0]["action_id"]


async def test_bad_upstreams_end_the_call_with_a_clear_error_and_the_gateway_stays_up(env: Env) -> None:
    down: list[str] = []
    with anyio.fail_after(90):
        async with gateway(env, "--approve-all", "--timeout", "1") as s:
            hung = await s.call_tool("slow", {"seconds": 20})
            big = await s.call_tool("huge", {"size": 1_100_000})
            started = time.monotonic()
            crashed = await s.call_tool("crash", {})
            assert time.monotonic() - started < 30
            while True:  # the next calls: refused unsent while it is down, then it is started again
                after = await s.call_tool("delete_record", {"key": "k"})
                if not after.is_error:
                    break
                down.append(text(after))
                await anyio.sleep(0.5)
    assert hung.is_error and "did not answer within 1s" in text(hung)
    assert big.is_error and "DID run upstream" in text(big) and "over the gateway's limit" in text(big)
    assert crashed.is_error and "UNKNOWN" in text(crashed)
    assert all(d.startswith("phase24 gateway: NOT sent: upstream unavailable") and "is down" in d for d in down)
    assert text(after) == "deleted k"
    # Refused while down at DRY_RUN, before any intent: the same call could run once it was back.
    assert env.intents() == [("crash", "UNKNOWN"), ("delete_record", "DONE")]
    assert env.effect_lines() == ["crash called", "delete k"]  # the crashing call was never re-sent


def test_malformed_requests_get_protocol_errors_and_stdout_stays_protocol_only(env: Env) -> None:
    args = [sys.executable, "-m", "console.cli", "mcp-gateway", "--out", str(env.out), "--", *UPSTREAM]
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    lines = [
        json.dumps(init),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "this is not json {",
        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 5}}),
        json.dumps({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"}),
        json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}),
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env.env()},
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    answers: dict[Any, Any] = {}
    raw: list[str] = []
    deadline = time.monotonic() + 60
    while len(answers) < 4 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        raw.append(line)
        answer = json.loads(line)  # every stdout line is JSON-RPC
        answers[answer.get("id")] = answer
    proc.stdin.close()
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    assert all(json.loads(line) for line in rest.splitlines())
    assert "error" in answers[2] and "error" in answers[3]
    assert answers[4]["result"]["isError"] is True and "unknown tool" in json.dumps(answers[4])
    assert "Traceback" not in "".join(raw) + rest


def test_bad_setup_is_one_line_and_exit_2(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "gw.toml"
    bad.write_text('[upstreams.a]\ncommand = "x"\nconfidence = 3\n')
    proc = subprocess.run(
        [sys.executable, "-m", "console.cli", "mcp-gateway", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "upstreams.a.confidence" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "console.cli", "mcp-gateway", "--out", str(env.out), "--", "/no/such/server"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert missing.returncode == 2 and missing.stdout == "" and "could not start" in missing.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_two_upstreams_from_a_config_stdio_and_streamable_http_with_prefixes(env: Env, tmp_path: Path) -> None:
    port = _free_port()
    http = subprocess.Popen(
        [*UPSTREAM, "--http", str(port)], env={**os.environ, **env.env()}, stderr=subprocess.DEVNULL
    )
    try:
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        config = tmp_path / "gw.toml"
        config.write_text(
            f"""agent = "two_upstreams"
[upstreams.local]
command = {json.dumps(UPSTREAM[0])}
args = [{json.dumps(UPSTREAM[1])}]
[upstreams.local.tools.append_line]
risk = "MEDIUM"
[upstreams.remote]
url = "http://127.0.0.1:{port}/mcp"
prefix = "web."
"""
        )
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "console.cli", "mcp-gateway", "--config", str(config), "--out", str(env.out)],
            env=env.env(),
            cwd=str(ROOT),
        )
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                names = {t.name for t in (await s.list_tools()).tools}
                local = await s.call_tool("local__lookup", {"key": "a"})
                remote = await s.call_tool("web.lookup", {"key": "b"})
                lowered = await s.call_tool("local__append_line", {"line": "x"})
    finally:
        http.terminate()
        http.wait(timeout=10)
    assert {"local__lookup", "web.lookup", "web.delete_record"} <= names
    assert (text(local), text(remote)) == ("value of a", "value of b")
    # risk lowered to MEDIUM, but the approval was not dropped: denied by default, no effect
    assert lowered.is_error and "denied" in text(lowered)
    assert env.effect_lines() == []


async def test_concurrent_calls_each_get_their_own_answer(env: Env) -> None:
    with anyio.fail_after(60):
        async with gateway(env, "--approve-all") as s:
            answers: dict[str, str] = {}

            async def call(name: str, args: dict[str, Any], key: str) -> None:
                answers[key] = text(await s.call_tool(name, args))

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(call, "lookup", {"key": f"k{i}"}, f"look{i}")
                for i in range(3):
                    tg.start_soon(call, "append_line", {"line": f"line{i}"}, f"append{i}")
                for i in range(3):  # three identical irreversible calls at once
                    tg.start_soon(call, "append_line", {"line": "same"}, f"same{i}")
    assert {answers[f"look{i}"] for i in range(6)} == {f"value of k{i}" for i in range(6)}
    assert [answers[f"append{i}"] for i in range(3)] == ["appended"] * 3
    same = sorted(answers[f"same{i}"] for i in range(3))
    assert same[0] == "appended" and all("NOT sent" in a for a in same[1:])
    assert sorted(env.effect_lines()) == ["line0", "line1", "line2", "same"]  # at most once


async def test_one_gateway_per_directory_and_failures_inside_are_one_line(env: Env) -> None:
    argv = [sys.executable, "-m", "console.cli", "mcp-gateway", "--out", str(env.out), "--", *UPSTREAM]
    with anyio.fail_after(60):
        async with gateway(env) as s:
            await s.list_tools()
            second = subprocess.run(
                argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env.env()}, timeout=60
            )
    assert second.returncode == 2 and second.stdout == ""
    assert "another phase24 process" in second.stderr
    record = env.out / "gateway.json"
    record.unlink()
    record.mkdir()  # writing the record now fails inside the gateway's task group
    broken = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env.env()},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert broken.returncode == 2 and broken.stdout == ""
    assert "Traceback" not in broken.stderr and "gateway.json" in broken.stderr


async def test_a_storage_failure_fails_closed_and_exits_4(env: Env) -> None:
    limit = 160 * 1024  # RLIMIT_FSIZE: the journal soon cannot grow (Python ignores SIGXFSZ)
    gateway_argv = ["-m", "console.cli", "mcp-gateway", "--approve-all", "--out", str(env.out), "--", *UPSTREAM]
    exit_file = env.tmp / "gateway.exit"
    code = (  # the gateway under a file-size limit, its stdio inherited, its exit code kept
        "import resource, subprocess, sys\n"
        "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))\n"
        f"rc = subprocess.call([sys.executable, *{gateway_argv!r}])\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))\n"
        f"open({str(exit_file)!r}, 'w').write(str(rc))\n"
    )
    errlog = env.tmp / "gateway.stderr"
    params = StdioServerParameters(command=sys.executable, args=["-c", code], env=env.env(), cwd=str(ROOT))
    answers: list[str] = []
    with anyio.fail_after(120), errlog.open("w") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            for i in range(400):
                result = await s.call_tool("append_line", {"line": f"n{i}"})
                answers.append(text(result))
                if result.is_error:
                    break
            after = await s.call_tool("append_line", {"line": "after the failure"})
    assert answers[-1] != "appended", "the journal never filled up"
    assert after.is_error and "after the failure" not in env.effect_lines()
    assert len(env.effect_lines()) == len(answers) - 1  # every effect was answered as done
    stderr = errlog.read_text()
    assert "storage failure, the run failed closed" in stderr
    deadline = time.monotonic() + 30
    while not exit_file.exists() and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    assert exit_file.read_text() == "4"
