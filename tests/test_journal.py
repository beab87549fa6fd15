"""Tests for the durable journal: hash chain, tamper detection, intents, lock state, fail closed, batching."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.errors import JournalError
from core.events import Event, EventBus, StateTransition, SystemLocked
from core.journal import (
    GENESIS_HASH,
    JOURNAL_FILE,
    DuplicateIntent,
    Journal,
    chain_hash,
    read_events,
    verify_journal,
)

RUN = "run"


def emit(bus: EventBus, n: int, reason: str = "ok") -> list[Event]:
    return [
        bus.emit(
            StateTransition,
            plan_id="plan_1",
            action_id=f"a{i}",
            agent="agent_a",
            tool="form_fill",
            from_state="PENDING",
            to_state="RUNNING",
            reason=reason,
        )
        for i in range(n)
    ]


def attached(run_dir: Path, batch_size: int = 512) -> tuple[Journal, EventBus]:
    journal = Journal.open(run_dir, RUN, batch_size=batch_size, clock=ManualClock())
    bus = EventBus(ManualClock(), RUN)
    journal.attach(bus)
    return journal, bus


def rows(run_dir: Path, sql: str = "SELECT seq FROM records ORDER BY seq") -> list[Any]:
    """Read with a second, independent connection: what is on disk, not what the writer holds."""
    conn = sqlite3.connect(run_dir / JOURNAL_FILE)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def tamper(run_dir: Path, *statements: str) -> None:
    conn = sqlite3.connect(run_dir / JOURNAL_FILE, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def journal_of_10(tmp_path: Path) -> Path:
    journal, bus = attached(tmp_path)
    emit(bus, 10)
    journal.close()
    return tmp_path


# ------------------------------------------------------------------ chain


def test_append_and_verify(journal_of_10: Path) -> None:
    report = verify_journal(journal_of_10)
    assert report.ok
    assert report.records == 10
    assert report.first_bad_seq is None
    assert rows(journal_of_10) == [(s,) for s in range(1, 11)]
    first = rows(journal_of_10, "SELECT seq, kind, body, prev_hash, hash FROM records WHERE seq = 1")[0]
    assert first[3] == GENESIS_HASH
    assert first[4] == chain_hash(GENESIS_HASH, 1, "state_transition", first[2])


def test_journal_uses_wal_and_full_sync(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN)
    assert journal._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal.close()


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path)
    emit(bus, 5)
    journal.close()

    journal, bus = attached(tmp_path)
    assert journal.last_seq == 5
    more = emit(bus, 3)
    assert [e.seq for e in more] == [6, 7, 8]  # attach() continued the bus's numbering
    bus.emit(SystemLocked, reason="operator", by="op")
    journal.close()

    report = verify_journal(tmp_path)
    assert (report.ok, report.records) == (True, 9)
    events = list(read_events(tmp_path))
    assert [e.seq for e in events] == list(range(1, 10))
    assert isinstance(events[-1], SystemLocked)
    assert events[5] == more[0]


def test_reopen_for_another_run_is_refused(journal_of_10: Path) -> None:
    with pytest.raises(JournalError, match="belongs to run 'run'"):
        Journal.open(journal_of_10, "other-run")


def test_reopen_refuses_a_truncated_tail(journal_of_10: Path) -> None:
    tamper(journal_of_10, "DELETE FROM records WHERE seq = 10")
    with pytest.raises(JournalError, match="verify"):
        Journal.open(journal_of_10, RUN)


def test_event_that_does_not_follow_is_refused_and_batch_kept(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path)
    emit(bus, 3)
    stray = EventBus(ManualClock(), RUN)  # a second bus numbering from 1 again
    (event,) = emit(stray, 1)
    with pytest.raises(JournalError, match="does not follow"):
        journal.observe(event)
    assert journal.failed
    assert rows(tmp_path) == [(1,), (2,), (3,)]  # the valid batch was committed before stopping


# ---------------------------------------------------------------- tamper


@pytest.mark.parametrize(
    ("statements", "first_bad", "problem"),
    [
        (["UPDATE records SET body = replace(body, '\"ok\"', '\"OK\"') WHERE seq = 4"], 4, "hash does not match"),
        (["DELETE FROM records WHERE seq = 4"], 4, "record 4 is missing"),
        (
            [
                "UPDATE records SET body = (SELECT body FROM records WHERE seq = 6) WHERE seq = 3",
                "UPDATE records SET body = replace(body, '\"seq\":6', '\"seq\":3') WHERE seq = 3",
                "UPDATE records SET body = replace(body, '\"seq\":3', '\"seq\":6') WHERE seq = 6",
            ],
            3,
            "hash does not match",
        ),
        (["UPDATE records SET hash = replace(hash, substr(hash, 1, 1), 'f') WHERE seq = 5"], 5, "hash does not match"),
        (
            [
                "UPDATE records SET seq = -3 WHERE seq = 3",
                "UPDATE records SET seq = 3 WHERE seq = 6",
                "UPDATE records SET seq = 6 WHERE seq = -3",
            ],
            3,
            "prev_hash does not match",
        ),
        (["DELETE FROM records WHERE seq >= 9"], 9, "records 9..10 are missing"),
        (["DELETE FROM records WHERE seq = 1"], 2, "earlier records are missing"),
        (["UPDATE records SET ts = '2030-01-01T00:00:00+00:00' WHERE seq = 7"], 7, "disagree with its body"),
        (["UPDATE records SET run_id = 'x' WHERE seq = 2"], 2, "disagree with its body"),
    ],
    ids=["edit-body", "delete-middle", "swap-bodies", "edit-hash", "reorder", "cut-tail", "delete-first", "ts", "run"],
)
def test_tampering_is_reported_at_the_first_bad_record(
    journal_of_10: Path, statements: list[str], first_bad: int, problem: str
) -> None:
    tamper(journal_of_10, *statements)
    report = verify_journal(journal_of_10)
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert problem in report.problem
    # `records` counts the records that verified good before the first bad one.
    assert report.records == len(rows(journal_of_10, f"SELECT seq FROM records WHERE seq < {first_bad}"))


def test_swapped_bodies_are_caught_even_with_matching_seq_fields(journal_of_10: Path) -> None:
    # Swap bodies and hashes wholesale: each row hashes fine on its own, the links do not.
    tamper(
        journal_of_10,
        "CREATE TEMP TABLE t AS SELECT seq, body, hash FROM records WHERE seq IN (3, 6)",
        "UPDATE records SET body = (SELECT body FROM t WHERE seq = 6), hash = (SELECT hash FROM t WHERE seq = 6)"
        " WHERE seq = 3",
        "UPDATE records SET body = (SELECT body FROM t WHERE seq = 3), hash = (SELECT hash FROM t WHERE seq = 3)"
        " WHERE seq = 6",
    )
    report = verify_journal(journal_of_10)
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_verify_missing_journal_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=JOURNAL_FILE):
        verify_journal(tmp_path)
    with pytest.raises(JournalError, match=JOURNAL_FILE):
        list(read_events(tmp_path))


def test_verify_a_file_that_is_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(b"this is not sqlite" * 100)
    report = verify_journal(tmp_path)
    assert not report.ok
    assert report.first_bad_seq is None


# ---------------------------------------------------------------- intents


def test_record_intent_is_durable_before_it_returns(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path)
    emit(bus, 4)  # pending in the batch, not yet committed
    assert rows(tmp_path) == []
    journal.record_intent("h1", "plan_1", "a1", "agent_a", "payment_send", "req-1")
    # Seen from another connection right away, together with every event before it.
    assert rows(tmp_path, "SELECT action_hash, plan_id, action_id, agent, tool, approval_id, status FROM intents") == [
        ("h1", "plan_1", "a1", "agent_a", "payment_send", "req-1", "PENDING")
    ]
    # The intent is itself a chained record, committed in the same transaction.
    assert rows(tmp_path) == [(1,), (2,), (3,), (4,), (5,)]
    assert rows(tmp_path, "SELECT kind FROM records WHERE seq = 5") == [("intent_recorded",)]
    assert journal.intent_status("h1") == "PENDING"
    assert journal.is_blocked("h1")
    assert not journal.is_blocked("h2")
    journal.close()


def test_record_outcome(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN, clock=ManualClock())
    journal.record_intent("ok", "p", "a1", "agent", "tool", None)
    journal.record_intent("bad", "p", "a2", "agent", "tool", None)
    journal.record_outcome("ok", True)
    journal.record_outcome("bad", False)
    assert rows(tmp_path, "SELECT action_hash, status FROM intents ORDER BY action_hash") == [
        ("bad", "FAILED"),
        ("ok", "DONE"),
    ]
    with pytest.raises(JournalError, match="already DONE"):
        journal.record_outcome("ok", False)
    with pytest.raises(JournalError, match="no intent"):
        journal.record_outcome("never", True)
    assert not journal.failed  # a caller's mistake is not a storage failure
    journal.close()


@pytest.mark.parametrize("grouped", [False, True])
def test_intent_status_is_the_table_s_status_after_every_change(tmp_path: Path, grouped: bool) -> None:
    """The journal answers intent statuses from memory: they must be the table's, through
    immediate and grouped commits, for hashes asked before and after they exist."""
    Journal.open(tmp_path, RUN, clock=ManualClock()).close()
    seed = Journal.open(tmp_path, RUN, clock=ManualClock())
    seed.record_intent("before", "p", "a0", "agent", "tool", None)  # in the table before the reopen
    seed.close()
    journal, _bus = attached(tmp_path)
    journal.group_ledger = grouped

    def table() -> dict[str, str]:
        return dict(rows(tmp_path, "SELECT action_hash, status FROM intents"))

    def check(*hashes: str) -> None:
        if grouped:
            journal.commit()
        committed = table()
        for h in hashes:
            assert journal.intent_status(h) == committed.get(h)

    check("before", "ok", "bad", "cut", "never")
    journal.record_intent("ok", "p", "a1", "agent", "tool", None)
    journal.record_intent("bad", "p", "a2", "agent", "tool", None)
    journal.record_intent("cut", "p", "a3", "agent", "tool", None)
    check("before", "ok", "bad", "cut", "never")
    journal.record_outcome("ok", True)
    journal.record_outcome("bad", False)
    journal.record_unknown("cut")
    journal.record_outcome("before", True)
    check("before", "ok", "bad", "cut", "never")
    assert table() == {"before": "DONE", "ok": "DONE", "bad": "FAILED", "cut": "UNKNOWN"}
    with pytest.raises(DuplicateIntent):
        journal.record_intent("before", "p", "a0", "agent", "tool", None)
    journal.close()


def test_unknown_intents_and_blocking_across_restart(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN, clock=ManualClock())
    journal.record_intent("done", "p", "a1", "agent", "tool", None)
    journal.record_outcome("done", True)
    journal.record_intent("cut", "p", "a2", "agent", "tool", "req-2")
    # Crash: no close(); the intent was already durable.
    journal2 = Journal.open(tmp_path, RUN, clock=ManualClock())
    unknown = journal2.mark_unknown_intents()
    assert [(i["action_hash"], i["action_id"], i["approval_id"], i["status"]) for i in unknown] == [
        ("cut", "a2", "req-2", "UNKNOWN")
    ]
    assert rows(tmp_path, "SELECT status FROM intents WHERE action_hash = 'cut'") == [("UNKNOWN",)]
    assert journal2.is_blocked("done")
    assert journal2.is_blocked("cut")
    with pytest.raises(DuplicateIntent):
        journal2.record_intent("cut", "p", "a2", "agent", "tool", None)
    with pytest.raises(DuplicateIntent):
        journal2.record_intent("done", "p", "a1", "agent", "tool", None)
    # The operator learns the outcome: UNKNOWN may still be resolved, once.
    journal2.record_outcome("cut", False)
    assert journal2.intent_status("cut") == "FAILED"
    assert journal2.mark_unknown_intents() == []
    journal.close()
    journal2.close()


def test_lock_state_survives_reopen(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, RUN)
    assert journal.get_state("locked") is None
    journal.set_state("locked", "operator pressed L")
    assert rows(tmp_path, "SELECT key, value FROM state") == [("locked", "operator pressed L")]
    reopened = Journal.open(tmp_path, RUN)  # as after a crash: the first one was never closed
    assert reopened.get_state("locked") == "operator pressed L"
    reopened.set_state("locked", "")
    reopened.close()
    journal.close()
    assert Journal.open(tmp_path, RUN).get_state("locked") == ""


# ------------------------------------------------------------- fail closed


class BrokenDisk:
    """Stands in for the connection: COMMIT fails like a dying disk; every call is counted."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.calls = 0

    def execute(self, sql: str, *params: Any) -> Any:
        self.calls += 1
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *params)

    def executemany(self, sql: str, seq: Any) -> Any:
        self.calls += 1
        return self.real.executemany(sql, seq)

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def close(self) -> None:
        self.real.close()


def test_failed_commit_fails_closed_and_never_touches_sqlite_again(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path, batch_size=4)
    errors: list[BaseException] = []
    bus.on_error = lambda _subscriber, exc: errors.append(exc)
    disk = BrokenDisk(journal._conn)
    journal._conn = disk  # type: ignore[assignment]

    emit(bus, 4)  # the fourth event fills the batch: its commit fails
    assert len(errors) == 1
    assert isinstance(errors[0], JournalError)
    assert "disk I/O error" in str(errors[0])
    assert journal.failed
    assert journal.failure is not None and "disk I/O error" in journal.failure
    assert rows(tmp_path) == []  # rolled back, nothing half-written

    calls = disk.calls
    for write in (
        lambda: journal.commit(),
        lambda: journal.record_intent("h", "p", "a", "agent", "tool", None),
        lambda: journal.record_outcome("h", True),
        lambda: journal.set_state("locked", "x"),
        lambda: journal.mark_unknown_intents(),
    ):
        with pytest.raises(JournalError, match="failed earlier"):
            write()
    emit(bus, 1)
    assert len(errors) == 2 and "failed earlier" in str(errors[1])
    assert disk.calls == calls  # no retry: a failed fsync is never attempted again
    journal.close()


def test_disk_full_fails_closed(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path, batch_size=100_000)
    emit(bus, 1)
    journal.commit()
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    emit(bus, 200, reason="x" * 500)
    with pytest.raises(JournalError, match="full"):
        journal.commit()
    assert journal.failed
    with pytest.raises(JournalError, match="failed earlier"):
        emit(bus, 1)  # no on_error handler: the subscriber's error reaches the emitter
    journal.close()
    assert rows(tmp_path) == [(1,)]


# ----------------------------------------------------------------- batching


def test_batch_is_committed_when_full(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path, batch_size=8)
    emit(bus, 7)
    assert rows(tmp_path) == []
    assert (journal.pending, journal.committed_seq, journal.last_seq) == (7, 0, 7)
    emit(bus, 1)
    assert rows(tmp_path) == [(s,) for s in range(1, 9)]
    assert (journal.pending, journal.committed_seq) == (0, 8)
    emit(bus, 3)
    assert len(rows(tmp_path)) == 8
    journal.close()
    assert len(rows(tmp_path)) == 11


async def test_barrier_commits_pending_records(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path)
    emit(bus, 3)
    assert rows(tmp_path) == []
    await bus.barrier()
    assert rows(tmp_path) == [(1,), (2,), (3,)]
    assert journal.pending == 0
    journal.close()


def test_non_durable_commit_then_durable(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path)
    emit(bus, 2)
    journal.commit(durable=False)
    assert rows(tmp_path) == [(1,), (2,)]
    # NORMAL stays until a durable commit needs FULL (runs of unsynced commits switch once).
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    journal.commit(durable=False)
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    journal.commit()  # nothing pending, still writes so the earlier commit gets fsynced
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # a durable commit is FULL
    journal.close()
    assert verify_journal(tmp_path).ok


def test_read_events_round_trip(tmp_path: Path) -> None:
    journal, bus = attached(tmp_path, batch_size=3)
    sent = emit(bus, 7)
    journal.close()
    received: Iterator[Event] = read_events(tmp_path)
    assert list(received) == sent
