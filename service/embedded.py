"""`phase24 console` without a plan: the console runs a gate service and waits for agents.

`EmbeddedService` is a `GateService` whose pipeline also serves the HTTP API (the same
`run_http` as `phase24 serve`, without signal handlers: the console's `q` stops it). The
console treats it as its harness, so everything it shows and every key it sends goes
through the same objects as a plan run; agents in other processes propose over HTTP.
"""

from __future__ import annotations

import io
from typing import Any

import uvicorn

from core.approval import QueueGate
from core.clock import SystemClock
from core.gate_service import GateService
from core.inert import inert
from service.server import ServeOptions, make_config, prepare, run_http


class EmbeddedService(GateService):
    def __init__(self, options: ServeOptions, gate: QueueGate) -> None:
        clock = SystemClock()
        self.listening = prepare(options, clock, first_operator_token=False)
        super().__init__(
            make_config(options, self.listening.out),
            clock=clock,
            run_id=self.listening.run_id,
            lease_s=options.lease_s,
            gate=gate,
        )
        out = inert(str(self.listening.out), 200)
        self.badge = (
            f"serving agents on {self.listening.url}  out {out}  "
            f"(agent tokens: phase24 token add --out {out} --role agent NAME)"
        )
        self.announced = io.StringIO()
        # This console is the operator: attached consoles may watch (--read-only), not command.
        self.listening.seat.pin("the console serving this gate")
        self._server: uvicorn.Server | None = None

    async def run_pipeline(self) -> dict[str, Any]:
        return await run_http(
            self,
            self.listening,
            super().run_pipeline(),
            self.announced,
            signals=False,
            on_server=self._keep_server,
        )

    def _keep_server(self, server: uvicorn.Server) -> None:
        self._server = server

    def stop(self, reason: str = "operator quit", by: str = "operator") -> None:
        """The console's quit: stop the service (deny what waits, finish the outputs) and its API."""
        self.request_stop(reason)
        if self._server is not None:
            self._server.should_exit = True
