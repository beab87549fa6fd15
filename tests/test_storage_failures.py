"""Storage failures never look like success; their lock outlives them; one resume per run.

Real storage failures: a file-size limit (RLIMIT_FSIZE, what `ulimit -f` sets) hit at
several points of a LIVE run, a full disk (a small tmpfs, where the machine allows
mounting one), and a failed write of the simulated world injected in process. Each ends
with exit 4 and a report on stderr naming the held actions and every LIVE effect whose
outcome was not recorded (UNKNOWN); `run_status` says STORAGE_FAILED, so a later resume
starts locked and runs nothing LIVE even though the journal could not record the lock.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from console import exit_codes
from console.cli import main
from core.executors import SimulatedEffectLedger
from core.harness import Phase24Harness
from core.journal import JOURNAL_FILE
from core.run_dir_lock import RunDirLock
from core.run_status import RUN_STATUS_FILE, RunStatus, RunStatusFile, read_last_run
from tests.test_crash_safety import PLAN, ROOT, _cli, _effects


def _run_with_file_limit(run_dir: Path, limit_bytes: int) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    # A storage failure locks the system (system-wide, for later runs too): each run its own state.
    env["PHASE24_STATE_DIR"] = str(run_dir.with_name(run_dir.name + ".state"))
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(PLAN), "--out", str(run_dir), "--approve-all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def _intents(run_dir: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{run_dir / JOURNAL_FILE}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT action_id, status FROM intents").fetchall())
    finally:
        conn.close()


def _assert_failure_reported(run_dir: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 4, (result.returncode, result.stderr)
    assert result.stderr.startswith("phase24: storage failure, the run failed closed:"), result.stderr
    assert "Traceback" not in result.stderr
    # STORAGE_FAILED, or missing when the failure came before the run started: unproven either way.
    assert read_last_run(run_dir).lock_reason
    # Every LIVE effect without a recorded outcome is named UNKNOWN on stderr.
    intents = _intents(run_dir) if (run_dir / JOURNAL_FILE).exists() else {}
    effects = _effects(run_dir)
    uncertain = {a for a, s in intents.items() if s == "PENDING"} | {a for a in effects if intents.get(a) != "DONE"}
    for action_id in uncertain:
        assert f"/{action_id} (" in result.stderr and "UNKNOWN outcome" in result.stderr, (action_id, result.stderr)


@pytest.mark.parametrize("limit_kib", [40, 72, 96, 128])
def test_file_size_limit_mid_run_exits_4_and_resume_starts_locked(tmp_path: Path, limit_kib: int) -> None:
    run_dir = tmp_path / "run"
    result = _run_with_file_limit(run_dir, limit_kib * 1024)
    _assert_failure_reported(run_dir, result)
    if not (run_dir / JOURNAL_FILE).exists() or not (run_dir / "run.json").exists():
        return  # failed before anything could run: nothing to resume
    before = _effects(run_dir)
    resumed = _cli(["resume", str(run_dir), "--approve-all"])
    assert resumed.returncode in (0, 1, 3, exit_codes.LOCKED, exit_codes.PARTIAL), resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert _effects(run_dir) == before, "the resumed run went LIVE after a storage failure"
    if resumed.returncode != 3:
        summary = json.loads((run_dir / "orchestration_summary.json").read_text(encoding="utf-8"))
        assert summary["locked"] is True
        assert summary["live_executions"] == 0


def test_storage_failure_that_leaves_a_live_outcome_unrecorded_names_it(tmp_path: Path) -> None:
    """Somewhere between these limits a LIVE effect happens and its outcome cannot be recorded."""
    named = 0
    for limit_kib in range(88, 132, 4):
        run_dir = tmp_path / f"run{limit_kib}"
        result = _run_with_file_limit(run_dir, limit_kib * 1024)
        if result.returncode == 0:
            continue
        _assert_failure_reported(run_dir, result)
        named += result.stderr.count("UNKNOWN outcome")
    assert named >= 1


def _mount_tmpfs(where: Path, size_kib: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("filled_kib", [110, 140, 170])
def test_full_disk_mid_run_exits_4_not_2(tmp_path: Path, filled_kib: int) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 256):
        pytest.skip("cannot mount a small tmpfs here (needs root); the file-size limit tests cover the same path")
    try:
        (disk / "filler").write_bytes(b"\0" * filled_kib * 1024)
        run_dir = disk / "run"
        result = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all"])
        _assert_failure_reported(run_dir, result)
        assert "No space left" in result.stderr or "disk is full" in result.stderr
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_failed_write_of_the_world_is_unknown_and_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    real = SimulatedEffectLedger.__call__

    def full_disk(self: SimulatedEffectLedger, kind: str, action: Any, mode: Any) -> None:
        calls.append(action.id)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real(self, kind, action, mode)

    monkeypatch.setattr(SimulatedEffectLedger, "__call__", full_disk)
    run_dir = tmp_path / "run"
    assert main(["run", str(PLAN), "--out", str(run_dir), "--approve-all"]) == 4
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert f"/{calls[1]} (" in err and "UNKNOWN outcome" in err
    assert read_last_run(run_dir).status is RunStatus.STORAGE_FAILED
    assert _intents(run_dir)[calls[1]] == "PENDING"


def test_run_status_proves_only_clean_endings(tmp_path: Path) -> None:
    assert "cannot be proven" in read_last_run(tmp_path).lock_reason  # missing
    status = RunStatusFile.create(tmp_path)
    assert read_last_run(tmp_path).status is RunStatus.RUNNING and not read_last_run(tmp_path).lock_reason
    size = (tmp_path / RUN_STATUS_FILE).stat().st_size
    assert status.mark(RunStatus.STORAGE_FAILED, "disk\nfull " * 500)
    assert (tmp_path / RUN_STATUS_FILE).stat().st_size == size  # rewritten in place, never grown
    assert "storage failure" in read_last_run(tmp_path).lock_reason
    status.close()
    (tmp_path / RUN_STATUS_FILE).write_text("RUNNING\n")
    assert "cannot be proven" in read_last_run(tmp_path).lock_reason


def test_second_resume_of_a_run_fails_with_a_clear_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all"], "after_outcome:2")
    assert first.returncode == -signal.SIGKILL
    before = _effects(run_dir)
    held = RunDirLock.acquire(run_dir)  # another resume is running
    try:
        loser = _cli(["resume", str(run_dir), "--approve-all"])
    finally:
        held.release()
    assert loser.returncode == 2
    assert "another phase24 process" in loser.stderr and str(os.getpid()) in loser.stderr
    assert loser.stderr.count("\n") == 1 and "Traceback" not in loser.stderr
    assert _effects(run_dir) == before  # the loser ran nothing
    # 0, or 1 when another agent's intent was on disk without its outcome at the kill (UNKNOWN).
    assert _cli(["resume", str(run_dir), "--approve-all"]).returncode in (0, 1)


def test_concurrent_resumes_one_wins(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all"], "after_outcome:2")
    assert first.returncode == -signal.SIGKILL
    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    cmd = [sys.executable, "-m", "console.cli", "resume", str(run_dir), "--approve-all"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    # Either they overlapped (one fails clearly) or one finished before the other began.
    # 1 instead of 0 when another agent's intent was on disk without its outcome at the kill
    # (it is UNKNOWN, reported by both); a loser always exits 2.
    assert codes in ([0, 0], [0, 2], [1, 1], [1, 2]), results
    for code, err in results:
        if code == 2:
            assert "another phase24 process" in err
    effects = _effects(run_dir)
    assert all(n == 1 for n in effects.values()), effects


@pytest.mark.parametrize("tamper", [False, True])
def test_closed_stdout_does_not_change_the_verdict(tmp_path: Path, tamper: bool) -> None:
    run_dir = tmp_path / "run"
    assert _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all"]).returncode == 0
    if tamper:
        conn = sqlite3.connect(run_dir / JOURNAL_FILE)
        with conn:
            conn.execute("DELETE FROM intents")
        conn.close()
    env = {k: v for k, v in os.environ.items() if k != "PHASE24_CRASH_AT"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "verify", str(run_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before the first line (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == (3 if tamper else 0), err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_resumed_harness_locked_by_run_status(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _cli(["run", str(PLAN), "--out", str(run_dir), "--approve-all"], "after_outcome:1")
    assert first.returncode == -signal.SIGKILL
    status = RunStatusFile.create(run_dir)
    status.mark(RunStatus.STORAGE_FAILED, "OSError: No space left on device")
    status.close()
    harness = Phase24Harness.from_interrupted_run(run_dir)
    assert harness.controller.locked
    assert "storage failure" in harness.controller.lock_reason
    summary = harness.execute_orchestration_pipeline()
    assert summary["locked"] is True and summary["live_executions"] == 0
    # The lock is now in the journal too: the next resume is locked even with a clean run_status.
    again = Phase24Harness.from_interrupted_run(run_dir)
    assert again.controller.locked
