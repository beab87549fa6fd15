"""Tests for JSONL torn-tail repair and reading, and for `phase24 verify` on run directories."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from console import exit_codes
from console.cli import main
from console.journal_cli import cmd_verify
from core.clock import ManualClock
from core.errors import JournalError
from core.events import EventBus, StateTransition
from core.journal import JOURNAL_FILE, Journal
from core.jsonl import CorruptJsonl, read_jsonl, repair_torn_tail

RECORDS = [
    {"n": 1, "s": "first"},
    {"n": 2, "s": "second"},
    {"n": 3, "s": "café ✓ done"},
]
LINES = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in RECORDS]
DATA = b"".join(LINES)


def complete_lines_before(cut: int) -> list[bytes]:
    kept, end = [], 0
    for line in LINES:
        end += len(line)
        if end <= cut:
            kept.append(line)
    return kept


def test_fixture_has_multibyte_utf8_in_the_last_line() -> None:
    last = LINES[-1]
    assert len(last) > len(last.decode())  # some offsets fall inside a UTF-8 sequence


@pytest.mark.parametrize("cut", range(len(DATA) + 1))
def test_torn_tail_repair_at_every_byte(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(DATA[:cut])
    kept = complete_lines_before(cut)
    expected = b"".join(kept)

    before = read_jsonl(path)  # reading tolerates the torn tail without changing the file
    assert list(before) == RECORDS[: len(kept)]
    assert before.torn_tail_bytes == cut - len(expected)
    assert (before.torn_line is None) == (cut == len(expected))
    assert path.read_bytes() == DATA[:cut]

    assert repair_torn_tail(path) == cut - len(expected)
    assert path.read_bytes() == expected
    after = read_jsonl(path)
    assert list(after) == RECORDS[: len(kept)]
    assert (after.torn_tail_bytes, after.torn_line) == (0, None)
    assert repair_torn_tail(path) == 0


def test_torn_line_number_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(DATA[:-3])
    assert read_jsonl(path).torn_line == 3


def test_unparseable_terminated_last_line_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(LINES[0] + b'{"n": 2, "s"\n')
    assert repair_torn_tail(path) == len(b'{"n": 2, "s"\n')
    assert path.read_bytes() == LINES[0]


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(LINES[0] + b"\0" * 4096)
    assert repair_torn_tail(path) == 4096
    assert path.read_bytes() == LINES[0]


@pytest.mark.parametrize(
    ("middle", "reason"),
    [(b"GARBAGE\n", "not JSON"), (b"[1, 2]\n", "not a JSON object"), (b'{"s": "\xff"}\n', "UTF-8"), (b"\n", "JSON")],
)
def test_corrupt_middle_line_names_the_line(tmp_path: Path, middle: bytes, reason: str) -> None:
    path = tmp_path / "log.jsonl"
    data = LINES[0] + middle + LINES[2]
    path.write_bytes(data)
    with pytest.raises(CorruptJsonl, match=r"log\.jsonl: line 2 is corrupt") as caught:
        repair_torn_tail(path)
    assert caught.value.line == 2
    assert reason in caught.value.reason
    assert isinstance(caught.value, JournalError)
    assert path.read_bytes() == data  # never "repaired" away
    with pytest.raises(CorruptJsonl, match="line 2"):
        read_jsonl(path)


def test_bad_line_followed_by_a_torn_tail_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(LINES[0] + b"GARBAGE\n" + LINES[2][:5])
    with pytest.raises(CorruptJsonl, match="line 2"):
        repair_torn_tail(path)


def test_empty_and_intact_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert repair_torn_tail(empty) == 0
    assert read_jsonl(empty) == []
    intact = tmp_path / "intact.jsonl"
    intact.write_bytes(DATA)
    assert repair_torn_tail(intact) == 0
    assert intact.read_bytes() == DATA


# ------------------------------------------------------------ phase24 verify


def make_run(run_dir: Path, events: int = 5) -> None:
    journal = Journal.open(run_dir, "run")
    bus = EventBus(ManualClock(), "run")
    journal.attach(bus)
    for i in range(events):
        bus.emit(
            StateTransition,
            plan_id="p",
            action_id=f"a{i}",
            agent="agent",
            tool="form_fill",
            from_state="PENDING",
            to_state="RUNNING",
            reason="ok",
        )
    journal.close()
    (run_dir / "execution_state_transitions.jsonl").write_bytes(DATA)


def verify(run_dir: Path) -> int:
    return cmd_verify(argparse.Namespace(run_dir=run_dir))


def test_verify_good_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    assert verify(tmp_path) == exit_codes.OK
    out = capsys.readouterr().out
    assert "journal OK: 5 records, chain intact" in out
    assert "execution_state_transitions.jsonl: 3 records" in out


def test_verify_tampered_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None)
    conn.execute("UPDATE records SET body = replace(body, 'form_fill', 'payment_send') WHERE seq = 3")
    conn.close()
    assert verify(tmp_path) == exit_codes.VERIFY_FAILED
    assert "journal BROKEN at record 3: " in capsys.readouterr().out


def test_verify_reports_torn_and_corrupt_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    (tmp_path / "torn.jsonl").write_bytes(DATA[:-4])
    assert verify(tmp_path) == exit_codes.OK  # a torn tail is a crash artefact, not tampering
    out = capsys.readouterr().out
    assert "torn.jsonl: 2 records; torn last line 3" in out
    (tmp_path / "bad.jsonl").write_bytes(LINES[0] + b"GARBAGE\n" + LINES[2])
    assert verify(tmp_path) == exit_codes.VERIFY_FAILED
    assert "bad.jsonl: CORRUPT at line 2" in capsys.readouterr().out


def test_verify_escapes_untrusted_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    (tmp_path / "evil\x1b[2J.jsonl").write_bytes(DATA)
    assert verify(tmp_path) == exit_codes.OK
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\x1b[2J.jsonl" in out


def test_verify_missing_dir_or_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no such run directory"):
        verify(tmp_path / "nope")
    with pytest.raises(JournalError, match=JOURNAL_FILE):
        verify(tmp_path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    make_run(good)
    make_run(bad)
    conn = sqlite3.connect(bad / JOURNAL_FILE, isolation_level=None)
    conn.execute("DELETE FROM records WHERE seq = 2")
    conn.close()
    assert main(["verify", str(good)]) == exit_codes.OK
    assert main(["verify", str(bad)]) == exit_codes.VERIFY_FAILED
    assert main(["verify", str(tmp_path / "missing")]) == exit_codes.BAD_INPUT
    assert "no such run directory" in capsys.readouterr().err
