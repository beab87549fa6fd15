"""`phase24 console` with no plan: an embedded gate service, and the console as its operator."""

from __future__ import annotations

import argparse

from console import exit_codes
from console.app import ConsoleGate, make_app
from service.embedded import EmbeddedService
from service.server import ServeOptions


def run_embedded(args: argparse.Namespace) -> int:
    gate = ConsoleGate()
    options = ServeOptions(port=args.port, out=args.out, approval_timeout_s=args.approval_timeout)
    service = EmbeddedService(options, gate)
    code = make_app(service, gate).run()
    print(f"Gate service on {service.listening.url} stopped; outputs in {service.listening.out}")
    return code if code is not None else exit_codes.OK
