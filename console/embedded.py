"""`phase24 console` with no plan: an embedded gate service, and the console as its operator."""

from __future__ import annotations

import argparse
from typing import Any

from console import exit_codes
from console.app import ConsoleGate, OperatorConsole, make_app
from console.console_options import apply_console_options, arm_delay_of, load_console_keymap
from service.embedded import EmbeddedService
from service.server import ServeOptions


def embedded_console(args: argparse.Namespace) -> tuple[Any, EmbeddedService]:
    """The console and its embedded gate service, with the console options (keys file, bell,
    desktop notification, arming delay) as for a console on plans. A bad keys file stops us
    before the service is built."""
    keymap = load_console_keymap(args, OperatorConsole)
    gate = ConsoleGate()
    options = ServeOptions(port=args.port, out=args.out, approval_timeout_s=args.approval_timeout)
    service = EmbeddedService(options, gate)
    app = make_app(service, gate, arm_delay=arm_delay_of(args))
    apply_console_options(app, args, keymap)
    return app, service


def run_embedded(args: argparse.Namespace) -> int:
    app, service = embedded_console(args)
    code = app.run()
    print(f"Gate service on {service.listening.url} stopped; outputs in {service.listening.out}")
    return code if code is not None else exit_codes.OK
