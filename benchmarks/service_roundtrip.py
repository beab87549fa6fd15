"""The gate service over HTTP: propose -> decision round trip on loopback.

A real `phase24 serve --port 0` in a subprocess (journal on, WAL, synchronous=FULL, every
output file written), a fresh output directory. Agents in client processes (one keep-alive
connection each: a minimal HTTP/1.1 client, httpx, or the SDK) propose an auto-approved
LOW read-only tool the service runs (`memory_search`, confidence 0.9: MOCK -> DRY_RUN ->
LIVE, no approval) and get its decision: either `POST /v1/proposals` (answered once the
proposal is durably journaled) + `GET /v1/proposals/{id}?wait=10` (answered once decided,
here COMPLETED LIVE), or one `POST /v1/proposals?wait=10` (answered once decided) as the
SDK's `gate.call` sends it. Timed with `time.perf_counter()` around the requests, after a
warm-up of 20 calls per agent (3 for paced agents).

At 1 agent the requests run one after another in one client process, each client's in 5
batches with the clients taking turns (raw, raw1, httpx, sdk, raw, ...) so that a slow minute
falls on all of them alike; at 50 agents, 5
client processes run 10 asyncio agents each, so the service and the clients share the
machine's 2 cores. 50 agents run twice: back to back (each agent sends its next call the
moment the last one is answered: the service saturated, so the figure is queueing behind 49
other calls, i.e. 50 / throughput: a throughput figure, reported), and paced (each agent one
call per second from a random phase, 50 calls/s in all; a call is timed from when it is
sent, or from when it fell due if the agent's own previous call was still running then, so
that wait counts), with the minimal client and with the SDK. One agent paced at one call
per 100 ms is the reference for the paced figure: a call that finds the service and its
client idle pays this VM's wake-ups (both processes asleep between calls, their caches
cold), whatever the number of agents. The bar
(p50 <= 2 ms) is held by the back-to-back single-agent levels; the others are reported.

The floor, in the same run (`echo_floor`): after the gate has stopped, every level that sends
one POST per call (raw1, sdk; 1 and 50 agents; back to back and paced) runs again against a
bare Starlette + uvicorn echo that answers at once with a decided status (no token check,
journal, fsync or core). Each figure is reported beside its floor: what loopback HTTP, the
client and this VM's scheduling cost with no gate at all. At 50 agents back to back the floor
is itself 50 / the echo's throughput; paced, it shows what a sleeping VM adds to any call.
Group commit is counted from the journal: fsynced transactions per
round trip (the durable commits of proposals and LIVE barriers are grouped across agents).
The service's CPU per round trip is its process's user+system time (/proc/PID/stat) over a
level divided by the level's round trips (warm-up included in both); one event loop, so
1000 / that is the most round trips per second the service can serve on one core.

    python -m benchmarks.service_roundtrip [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import PYTHON, ROOT, bar, echo_floor, percentile, report, start_server

NAME = "service_roundtrip"
BAR_P50_MS = 2.0
PACE_MS = 1000.0  # 50 paced agents, one call each per second: 50 calls/s offered
LONE_PACE_MS = 100.0  # one agent paced alike: what an idle service and client cost by themselves
WARMUP = 20  # calls per agent before the timed ones
BATCHES = 5  # one agent: each client's round trips in this many batches, the clients taking turns
PACED_WARMUP = 3


def start_service(out: Path) -> tuple[subprocess.Popen[str], str]:
    return start_server("console.cli", "serve", "--port", "0", "--out", str(out))


def make_tokens(out: Path, count: int) -> tuple[str, list[str]]:
    """An operator token and `count` agent tokens (made before the service starts)."""
    sys.path.insert(0, str(ROOT))
    from service.tokens import TOKENS_FILE, add_token

    operator = add_token(out / TOKENS_FILE, "operator", "bench")
    return operator, [add_token(out / TOKENS_FILE, "agent", f"agent{i}") for i in range(count)]


class RawAgent:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (what a lean agent in any
    language sends), so the figure is the service's, not an HTTP client library's."""

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.token = host, int(port), token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        assert self.reader is not None and self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", headers).group(1))  # type: ignore[union-attr]
        data: dict[str, Any] = json.loads(await self.reader.readexactly(length))
        return data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxAgent:
    """The same requests through httpx (the SDK's HTTP client)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    async def open(self) -> None:
        await self.http.get("/v1/health")

    async def request(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        response = await self.http.request(method, path, content=body or None)
        data: dict[str, Any] = response.json()
        return data

    async def close(self) -> None:
        await self.http.aclose()


class SdkAgent:
    """The Python SDK: `gate.call(...)` (one `POST /v1/proposals?wait=S` handed straight to its
    httpx transport: phase24_sdk/calls.py)."""

    def __init__(self, url: str, token: str, name: str) -> None:
        from phase24_sdk import connect

        self.gate = connect(url, token, agent=name)

    async def open(self) -> None:
        pass  # the first (warm-up) call opens the connection

    async def call(self, i: int) -> dict[str, Any]:
        result = await self.gate.call("memory_search", {"q": i}, 0.9)
        return result.status

    async def close(self) -> None:
        await self.gate.aclose()


CLIENTS = {
    "raw": "minimal HTTP client, POST + GET ?wait",
    "raw1": "minimal HTTP client, one POST ?wait",
    "httpx": "httpx, POST + GET ?wait",
    "sdk": "SDK gate.call (httpx transport, one POST ?wait)",
}


async def agent(
    client: RawAgent | HttpxAgent | SdkAgent,
    name: str,
    rounds: int,
    warmup: int,
    times: list[float],
    kind: str,
    pace_ms: float = 0.0,
) -> None:
    """`warmup + rounds` calls one after another; with `pace_ms`, each call is due `pace_ms`
    after the previous one was due (from a random phase). A paced call is timed from when it
    was sent, unless the agent's own previous call was still running when it fell due: then
    from when it was due, so that wait counts (no coordinated omission); the client's own
    timer lateness (its event loop waking up after the due time) does not."""
    await client.open()
    due = time.perf_counter() + random.uniform(0.0, pace_ms / 1000.0)
    try:
        for i in range(warmup + rounds):
            body = json.dumps({"agent": name, "tool": "memory_search", "args": {"q": i}, "confidence": 0.9}).encode()
            if pace_ms:
                behind = time.perf_counter() > due  # the previous call ended after this one fell due
                if not behind:
                    await asyncio.sleep(due - time.perf_counter())
                t0 = due if behind else time.perf_counter()
                due += pace_ms / 1000.0
            else:
                t0 = time.perf_counter()
            if isinstance(client, SdkAgent):
                decided = await client.call(i)
            elif kind == "raw1":
                decided = await client.request("POST", "/v1/proposals?wait=10", body)
            else:
                proposed = await client.request("POST", "/v1/proposals", body)
                decided = await client.request("GET", f"/v1/proposals/{proposed['proposal_id']}?wait=10")
            elapsed = time.perf_counter() - t0
            if decided.get("decision") != "allowed" or decided.get("mode") != "LIVE":
                raise RuntimeError(f"unexpected decision: {decided}")
            if i >= warmup:
                times.append(elapsed * 1000.0)
    finally:
        await client.close()


async def child_run(
    url: str, tokens: list[tuple[str, str]], rounds: int, kind: str, pace_ms: float = 0.0
) -> list[float]:
    times: list[float] = []

    def make(name: str, token: str) -> RawAgent | HttpxAgent | SdkAgent:
        if kind == "sdk":
            return SdkAgent(url, token, name)
        return RawAgent(url, token) if kind.startswith("raw") else HttpxAgent(url, token)

    warmup = PACED_WARMUP if pace_ms else WARMUP
    await asyncio.gather(
        *(agent(make(name, token), name, rounds, warmup, times, kind, pace_ms) for name, token in tokens)
    )
    return times


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_level(
    url: str,
    tokens: list[str],
    agents: int,
    processes: int,
    rounds: int,
    kind: str,
    service_pid: int,
    pace_ms: float = 0.0,
) -> dict[str, Any]:
    """`agents` agents spread over `processes` client processes, `rounds` round trips in all;
    back to back, or each agent paced at one call every `pace_ms`. Raw: see `level_figures`."""
    per_agent = max(1, rounds // agents)
    named = [(f"agent{i}", tokens[i]) for i in range(agents)]
    groups = [named[p::processes] for p in range(processes)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu0 = cpu_seconds(service_pid)
    t0 = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                PYTHON,
                "-m",
                "benchmarks.service_roundtrip",
                "--child",
                url,
                json.dumps(group),
                str(per_agent),
                kind,
                str(pace_ms),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for group in groups
    ]
    times: list[float] = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"client process failed: {out[-2000:]}")
        times.extend(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - t0
    cpu1 = cpu_seconds(service_pid)
    return {
        "agents": agents,
        "client": kind,
        "client_processes": processes,
        "pace_ms": pace_ms,
        "times": times,
        "served": (per_agent + (PACED_WARMUP if pace_ms else WARMUP)) * agents,  # the warm-up is served too
        "wall_s": wall,
        "service_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
    }


def level_figures(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's figures from its batches (`measure_level` results: one, or one client's
    batches run interleaved with the other clients')."""
    times = [t for part in parts for t in part["times"]]
    cpu = [part["service_cpu_s"] for part in parts]
    served = sum(part["served"] for part in parts)
    return {
        **{k: parts[0][k] for k in ("agents", "client", "client_processes", "pace_ms")},
        "batches": len(parts),
        "round_trips": len(times),
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "max_ms": round(max(times), 3),
        "round_trips_per_s_incl_startup": round(len(times) / sum(part["wall_s"] for part in parts), 1),
        "service_cpu_ms_per_round_trip": None if None in cpu else round(sum(cpu) * 1000.0 / served, 3),
    }


def journal_counts(out: Path) -> dict[str, int]:
    conn = sqlite3.connect(out / "journal.sqlite3")
    try:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM records GROUP BY kind").fetchall())
    finally:
        conn.close()
    return {k: int(v) for k, v in kinds.items()}


def paced_levels(url: str, tokens: list[str], paced: int, pid: int) -> list[dict[str, Any]]:
    """50 agents at one call per PACE_MS each, then one agent at one per LONE_PACE_MS; the
    minimal client, then the SDK; `paced` timed calls per agent (5x that for the lone one)."""
    return [
        measure_level(url, tokens, agents, processes, calls, kind, pid, pace_ms=pace)
        for agents, processes, calls, pace in ((50, 5, 50 * paced, PACE_MS), (1, 1, 5 * paced, LONE_PACE_MS))
        for kind in ("raw1", "sdk")
    ]


def measure_floor(tokens: list[str], rounds: int, paced: int) -> list[dict[str, Any]]:
    """The levels that use one POST per call, against the bare HTTP echo (`echo_floor`):
    the same clients, agents, processes and pacing, after the gate has stopped."""
    proc, url = echo_floor.start()
    try:
        parts = [
            measure_level(url, tokens, 1, 1, rounds, "raw1", proc.pid),
            measure_level(url, tokens, 1, 1, rounds, "sdk", proc.pid),
            measure_level(url, tokens, 50, 5, rounds * 5, "raw1", proc.pid),
            measure_level(url, tokens, 50, 5, rounds * 5, "sdk", proc.pid),
            *paced_levels(url, tokens, paced, proc.pid),
        ]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    return [level_figures([part]) for part in parts]


def measure(quick: bool) -> dict[str, Any]:
    rounds = 200 if quick else 1000
    paced = 20 if not quick else 5  # timed calls per paced agent
    with tempfile.TemporaryDirectory(prefix="p24_svc_") as tmp:
        out = Path(tmp) / "gate"
        out.mkdir()
        operator, tokens = make_tokens(out, 50)
        proc, url = start_service(out)
        try:
            # One agent: each client in BATCHES batches, the clients taking turns, so that a slow
            # minute of this shared VM falls on every client alike.
            batches: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CLIENTS}
            for _ in range(BATCHES):
                for kind in CLIENTS:
                    batches[kind].append(measure_level(url, tokens, 1, 1, rounds // BATCHES, kind, proc.pid))
            levels = [level_figures(batches[kind]) for kind in CLIENTS]
            unbatched = [measure_level(url, tokens, 50, 5, rounds * 5, kind, proc.pid) for kind in ("raw1", "sdk")]
            unbatched += paced_levels(url, tokens, paced, proc.pid)
            levels += [level_figures([part]) for part in unbatched]
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {operator}"}) as http:
                metrics = http.get("/metrics").text
        finally:
            proc.send_signal(signal.SIGTERM)
            stdout, _err = proc.communicate(timeout=60)
        floor = measure_floor(tokens, rounds, paced)
        counts = journal_counts(out)
        proposals = counts.get("proposal_received", 0)
        commits_match = re.search(r"commits=(\d+)", stdout)
        waiters_match = re.search(r"waiters=(\d+)", stdout)
    return {
        "levels": levels,
        "floor": floor,
        "proposals_journaled": proposals,
        "service_exit": proc.returncode,
        "metrics_proposals": re.search(r"^phase24_proposals_total (\S+)", metrics, re.M).group(1)  # type: ignore[union-attr]
        if "phase24_proposals_total" in metrics
        else None,
        "group_commits": int(commits_match.group(1)) if commits_match else None,
        "barrier_waits": int(waiters_match.group(1)) if waiters_match else None,
    }


def floor_of(floor: list[dict[str, Any]], level: dict[str, Any]) -> dict[str, Any] | None:
    """The echo floor's level measured like `level` (same client, agents and pacing), if any."""
    same = ("agents", "client", "client_processes", "pace_ms")
    return next((f for f in floor if all(f[k] == level[k] for k in same)), None)


def run(quick: bool = False) -> dict[str, Any]:
    result = measure(quick)
    bars = []
    for level in result["levels"]:
        n = level["agents"]
        who = f"{n} agent{'s' if n > 1 else ''} in {level['client_processes']} process(es), {CLIENTS[level['client']]}"
        saturated = n > 1 and not level["pace_ms"]
        if level["pace_ms"]:
            offered = n * 1000 / level["pace_ms"]
            who += f", each paced at one call per {level['pace_ms']:g} ms ({offered:,.0f} calls/s offered)"
        elif saturated:
            who += (
                f", back to back (the service saturated: {level['round_trips_per_s_incl_startup']:,.0f} round trips/s)"
            )
        floor = floor_of(result["floor"], level)
        bars.append(
            bar(
                NAME,
                f"propose -> decision over HTTP, {who}: p50 / p99 (n={level['round_trips']})",
                f"{level['p50_ms']} / {level['p99_ms']} ms"
                + (f" (bare HTTP echo: {floor['p50_ms']} / {floor['p99_ms']} ms)" if floor else ""),
                "p50 <= 2 ms" if not (saturated or level["pace_ms"]) else "(reported)",
                level["p50_ms"] <= BAR_P50_MS if not (saturated or level["pace_ms"]) else None,
            )
        )
    cpu = [level["service_cpu_ms_per_round_trip"] for level in result["levels"]]
    if all(ms is not None for ms in cpu):
        names = " / ".join(
            f"{level['client']}@{level['agents']}{' paced' if level['pace_ms'] else ''}" for level in result["levels"]
        )
        fastest = min(cpu)
        bars.append(
            bar(
                NAME,
                f"service CPU per round trip, {names} (one event loop: 1000 / it = round trips/s on one core)",
                " / ".join(f"{ms}" for ms in cpu) + f" ms (1000 / the lowest: {1000 / fastest:,.0f} round trips/s)",
                "(reported)",
                None,
            )
        )
    return {"benchmark": NAME, **result, "bars": bars}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gate service round trip over HTTP")
    parser.add_argument("--quick", action="store_true", help="200 round trips per level instead of 1,000")
    parser.add_argument(
        "--child", nargs=5, metavar=("URL", "TOKENS", "ROUNDS", "CLIENT", "PACE_MS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        url, tokens, rounds, kind, pace = args.child
        named = [(t[0], t[1]) for t in json.loads(tokens)]
        print(json.dumps(asyncio.run(child_run(url, named, int(rounds), kind, float(pace)))))
        return
    report(run(quick=args.quick))


if __name__ == "__main__":
    main()
