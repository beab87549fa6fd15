"""Start-up: `phase24 console` to its first frame under a pseudo-terminal, and `phase24 run`.

First frame: the time from just before starting `phase24 console sample_plans/happy_path.json
--out <tmp>` (stdin/stdout/stderr on a pty of 160x48, TERM=xterm-256color, COLUMNS/LINES
set) until the bytes read from the pty, with escape sequences removed, contain the status
bar's text (`plans <n>/<m>`). Then `q` is sent and the exit is timed too. `phase24 run` is
the wall time of the whole command. Best of 3 each.

Two environments: as this machine runs Python (its environment sets
PYTHONDONTWRITEBYTECODE=1, so the project's own modules are compiled from source at every
start), and with a warm bytecode cache (PYTHONPYCACHEPREFIX in a temporary directory, one
unmeasured warm-up launch first; nothing is written into the project).

    python -m benchmarks.startup [--quick]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT, bar, report

NAME = "startup"
PHASE24 = str(Path(sys.executable).parent / "phase24")
PLAN = "sample_plans/happy_path.json"
COLS, ROWS = 160, 48
REPEATS = 3
BAR_FIRST_FRAME_S = 1.0
_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=$ ]*[A-Za-z@`~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]")
_STATUS = re.compile(rb"plans \d+/\d+")


def _env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    env.pop("TEXTUAL", None)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)  # None: unset
        else:
            env[key] = value
    return env


def first_frame(extra_env: dict[str, str | None] | None = None, timeout: float = 20.0) -> dict[str, Any]:
    """One launch of the console on a pty; seconds to the first frame and to exit after `q`."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [PHASE24, "console", PLAN, "--out", str(out)],
            cwd=ROOT,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(extra_env),
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        raw = bytearray()
        first_bytes = frame = quit_sent = exited = None
        deadline = t0 + timeout
        try:
            while time.perf_counter() < deadline:
                ready, _, _ = select.select([master], [], [], 0.005)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the child closed the pty
                        chunk = b""
                    if not chunk:
                        if proc.poll() is not None:
                            exited = time.perf_counter()
                            break
                        continue
                    now = time.perf_counter()
                    first_bytes = first_bytes or now
                    raw += chunk
                    if frame is None and _STATUS.search(_ESCAPES.sub(b"", bytes(raw))):
                        frame = now
                        os.write(master, b"q")
                        quit_sent = time.perf_counter()
                if proc.poll() is not None:
                    exited = time.perf_counter()
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        ok = frame is not None and proc.returncode in (0, 1, 5)  # 5: quit mid-run = INTERRUPTED
    return {
        "ok": ok,
        "returncode": proc.returncode,
        "first_bytes_s": round(first_bytes - t0, 4) if first_bytes else None,
        "first_frame_s": round(frame - t0, 4) if frame else None,
        "quit_to_exit_s": round(exited - quit_sent, 4) if exited and quit_sent else None,
        "bytes": len(raw),
    }


def run_command(extra_env: dict[str, str | None] | None = None) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [PHASE24, "run", PLAN, "--out", str(Path(tmp) / "run")],
            cwd=ROOT,
            capture_output=True,
            env=_env(extra_env),
            timeout=120,
        )
        elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"phase24 run failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def _series(extra_env: dict[str, str | None] | None, repeats: int) -> dict[str, Any]:
    launches = [first_frame(extra_env) for _ in range(repeats)]
    frames = [r["first_frame_s"] for r in launches if r["ok"]]
    runs = [run_command(extra_env) for _ in range(repeats)]
    return {
        "launches": launches,
        "first_frame_best_s": min(frames) if frames else None,
        "first_frame_all_s": frames,
        "run_best_s": round(min(runs), 4),
        "run_all_s": [round(r, 4) for r in runs],
    }


def run(quick: bool = False) -> dict[str, Any]:
    repeats = 1 if quick else REPEATS
    as_is = _series(None, repeats)
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        warm_env: dict[str, str | None] = {"PYTHONPYCACHEPREFIX": cache, "PYTHONDONTWRITEBYTECODE": None}
        first_frame(warm_env)  # warm-up: fills the cache
        cached = _series(warm_env, repeats)
    ff = as_is["first_frame_best_s"]
    ff_cached = cached["first_frame_best_s"]
    bars = [
        bar(
            NAME,
            "phase24 console: first frame (best of 3; as configured here)",
            f"{ff:.3f} s" if ff is not None else "no frame seen",
            "<= 1.0 s",
            ff is not None and ff <= BAR_FIRST_FRAME_S,
        ),
        bar(
            NAME,
            "phase24 console: first frame with a warm bytecode cache",
            f"{ff_cached:.3f} s" if ff_cached is not None else "no frame seen",
            "<= 1.0 s",
            ff_cached is not None and ff_cached <= BAR_FIRST_FRAME_S,
        ),
        bar(
            NAME,
            "phase24 run happy_path.json: whole command (best of 3)",
            f"{as_is['run_best_s']:.3f} s (warm cache {cached['run_best_s']:.3f} s)",
            "(reported)",
            None,
        ),
    ]
    return {
        "benchmark": NAME,
        "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "as_configured": as_is,
        "warm_bytecode_cache": cached,
        "bars": bars,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="start-up time")
    parser.add_argument("--quick", action="store_true", help="one launch of each")
    args = parser.parse_args(argv)
    report(run(quick=args.quick))


if __name__ == "__main__":
    main()
