"""The HTTP floor under the gate service: the same stack answering without a gate.

A bare Starlette app on uvicorn, configured as `phase24 serve` configures it (httptools,
uvloop when installed, no access log, no proxy headers, no lifespan), whose
`POST /v1/proposals` reads and parses the JSON body and answers at once with a decided
proposal's status, as the gate answers an auto-approved call: no token check, no journal, no
fsync, no core. `service_roundtrip` drives it with the same clients, agents and pacing as
the gate, in the same run, so each of the gate's figures stands beside what HTTP on loopback
costs on this machine by itself, and what the VM charges a call that finds both processes
asleep (paced) shows up in the floor too.

    python -m benchmarks.echo_floor   # serves on a free loopback port; prints its URL
"""

from __future__ import annotations

import json
import subprocess

from benchmarks import start_server

#: A decided proposal's status as the gate answers `POST /v1/proposals?wait=S` for an
#: auto-approved LOW call the service runs (the same fields the SDK reads).
DECIDED = {
    "proposal_id": "prop-1",
    "agent": "agent0",
    "tool": "memory_search",
    "state": "COMPLETED",
    "mode": "LIVE",
    "decision": "allowed",
    "decided": True,
    "executed_by": "service",
    "grant_id": None,
    "grant_args": None,
    "request_id": None,
    "reason": "LIVE succeeded",
    "result": {
        "final_state": "COMPLETED",
        "executions": [
            {"mode": mode, "success": True, "duration_ms": 0.0, "simulated": True}
            for mode in ("MOCK", "DRY_RUN", "LIVE")
        ],
    },
    "duplicate": False,
}


def serve() -> None:
    """Serve the echo on a free loopback port; the first line on stdout names its URL."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def propose(request: Request) -> Response:
        body = json.loads(await request.body())
        return JSONResponse({**DECIDED, "agent": body["agent"], "tool": body["tool"]}, status_code=201)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/v1/proposals", propose, methods=["POST"]), Route("/v1/health", health, methods=["GET"])]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    print(f"echo floor: listening on http://{host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])


def start() -> tuple[subprocess.Popen[str], str]:
    """The echo in a subprocess, and its URL."""
    return start_server("benchmarks.echo_floor")


if __name__ == "__main__":
    serve()
