"""A real `phase24 serve` in a subprocess on a free loopback port, for the end-to-end tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    """The environment of a child process, read now: it carries the test's own
    PHASE24_STATE_DIR (tests/conftest.py), so a service's lock never reaches the user's state."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def phase24(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def add_token(out: Path, role: str, name: str) -> str:
    done = phase24("token", "add", "--out", str(out), "--role", role, name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Service:
    proc: subprocess.Popen[str]
    url: str
    out: Path
    operator: str
    lines: queue.Queue[str]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def pending(self, token: str) -> list[dict[str, Any]]:
        with self.client(token) as http:
            return list(http.get("/v1/approvals").json()["pending"])

    def wait_for_request(self, token: str, tool: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in self.pending(token):
                if request["tool"] == tool:
                    return request
            time.sleep(0.05)
        raise AssertionError(f"no approval request for {tool} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> tuple[int, str]:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # let the reader thread drain the pipe
        said: list[str] = []
        while not self.lines.empty():
            said.append(self.lines.get())
        return self.proc.returncode, "".join(said)


def _reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Lines of the service's stdout, read by a thread (a select on a buffered pipe can miss lines)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _readline(proc: subprocess.Popen[str], lines: queue.Queue[str], deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            return lines.get(timeout=0.1)
        except queue.Empty:
            if proc.poll() is not None:
                break
    raise AssertionError(
        f"phase24 serve did not start (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}"
    )


@contextmanager
def running_service(out: Path, *options: str) -> Iterator[Service]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "serve", "--port", "0", "--out", str(out), *options],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        lines = _reader(proc)
        first = _readline(proc, lines, deadline)
        match = re.search(r"listening on (http://\S+)", first)
        assert match, first
        second = _readline(proc, lines, deadline)
        token = re.search(r"(p24_\S+)", second)
        assert token, second
        yield Service(proc, match.group(1), out, token.group(1), lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
