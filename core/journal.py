"""The durable audit journal: every event of a run in a hash-chained SQLite table (WAL, fsynced).

Ordinary events are group-committed in batches. Intents, outcomes and run state (ledger
events) are committed and fsynced with their chained record: at once by default, or, with
`group_ledger` on (a running harness), staged for the next group commit that the waiting
caller awaits through the bus barrier, so concurrent agents share one fsync. Any storage
failure fails closed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn

from core.clock import Clock, SystemClock
from core.errors import JournalError
from core.events import (
    EVENT_ADAPTER,
    Event,
    EventBus,
    IntentRecorded,
    IntentStatusChanged,
    RunStateChanged,
    event_json,
)

JOURNAL_FILE: Final = "journal.sqlite3"
# 2: intents and run state are chained events too (IntentRecorded, IntentStatusChanged,
# RunStateChanged), so verify proves the tables resume trusts.
FORMAT_VERSION: Final = "2"
GENESIS_HASH: Final = "0" * 64
DEFAULT_BATCH_SIZE: Final = 512

INTENT_STATUSES: Final = ("PENDING", "DONE", "FAILED", "UNKNOWN")

#: The run state key under which the SHA-256 of run.json is recorded (through the chain).
RUN_RECORD_DIGEST: Final = "run_record_sha256"
RUN_RECORD_FILE: Final = "run.json"

_LEDGER_KINDS: Final = frozenset({"intent_recorded", "intent_status", "run_state"})
_INTENT_COLUMNS: Final = (
    "action_hash",
    "plan_id",
    "action_id",
    "agent",
    "tool",
    "approval_id",
    "status",
    "created",
    "updated",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    run_id TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    action_hash TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    approval_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'DONE', 'FAILED', 'UNKNOWN')),
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_INSERT_RECORD = "INSERT INTO records (seq, kind, ts, run_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"

# One pending row, in the column order of _INSERT_RECORD.
_Row = tuple[int, str, str, str, str, str, str]


def chain_hash(prev_hash: str, seq: int, kind: str, body: str) -> str:
    """The hash of one record: it covers the previous hash, so editing any record breaks every later link."""
    return hashlib.sha256(f"{prev_hash}\n{seq}\n{kind}\n{body}".encode()).hexdigest()


class DuplicateIntent(JournalError):
    """An intent for this action hash already exists: the irreversible action must not run again."""


@dataclass(frozen=True)
class VerifyReport:
    """The result of `verify_journal`.

    `records` counts the records verified good (all of them when ok, those before the first
    bad one otherwise); `first_bad_seq` is None when ok or when no record can be blamed.
    """

    ok: bool
    records: int
    first_bad_seq: int | None
    problem: str


def _journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL_FILE


class Journal:
    """The single writer of a run's journal. Not thread-safe by design: only the core's thread uses it.

    Open with `Journal.open(run_dir, run_id)` and connect with `attach(bus)` (or subscribe
    `observe` and register `barrier` yourself). `last_seq` is the newest record appended
    (committed or pending); `committed_seq` is the newest one on disk.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        run_id: str,
        last_seq: int,
        last_hash: str,
        clock: Clock,
        batch_size: int,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._conn = conn
        self.path = path
        self.run_id = run_id
        self.batch_size = batch_size
        self._clock = clock
        self._last_seq = last_seq
        self._last_hash = last_hash
        self._committed_seq = last_seq
        self._pending: list[_Row] = []
        # Set after a commit with durable=False: the next durable commit must write (and so
        # fsync) even with nothing pending, or those earlier commits would stay unsynced.
        self._unsynced = False
        #: The connection's synchronous setting: FULL (every commit fsynced) unless the last
        #: commit was durable=False (NORMAL); `_transaction` sets it for each commit.
        self._sync_full = True
        self._failure: str | None = None
        self._closed = False
        self._bus: EventBus | None = None
        #: On: ledger events wait for the next commit (the caller awaits the bus barrier)
        #: instead of committing at once. `on_stage` is told, to make sure a commit comes.
        self.group_ledger = False
        self.on_stage: Callable[[], None] | None = None
        self._staged: list[Event] = []
        self._staged_intents: dict[str, str] = {}
        self._staged_state: dict[str, str] = {}
        #: Every intent's committed status, as the intents table holds it: read from the table
        #: once, then kept by this, its only writer, after each commit that changes it. An
        #: intent's status is asked for three times per LIVE effect (before it, when its
        #: intent is recorded, when its outcome is): a dict lookup, not a query.
        self._intent_statuses: dict[str, str] | None = None

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        run_dir: Path,
        run_id: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        clock: Clock | None = None,
    ) -> Journal:
        """Create the journal in `run_dir`, or reopen it and continue its chain.

        Reopening checks that the journal belongs to `run_id` and that its last record is the
        head the journal recorded (a cheap tail check; `verify_journal` checks everything).
        """
        run_dir = Path(run_dir)
        path = _journal_path(run_dir)
        conn: sqlite3.Connection | None = None
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is exactly one
            # transaction. check_same_thread=False because the harness may create the journal
            # on one thread and run the core on another; one-writer is this class's contract.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                raise JournalError(f"{path}: cannot switch the journal to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            # Statement by statement: executescript would commit the open transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            last = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
            if not meta:
                if last is not None:
                    raise JournalError(f"{path}: records without journal metadata; not a journal this program wrote")
                created = (clock or SystemClock()).now().isoformat()
                conn.executemany(
                    _SET_META,
                    [
                        ("format", FORMAT_VERSION),
                        ("run_id", run_id),
                        ("created", created),
                        ("head_seq", "0"),
                        ("head_hash", GENESIS_HASH),
                    ],
                )
                last_seq, last_hash = 0, GENESIS_HASH
            else:
                last_seq, last_hash = _check_reopen(path, meta, last, run_id)
            conn.execute("COMMIT")
        except JournalError:
            _close_quietly(conn)
            raise
        except (sqlite3.Error, OSError) as exc:
            _close_quietly(conn)
            raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
        return cls(conn, path, run_id, last_seq, last_hash, clock or SystemClock(), batch_size)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to `bus`, register the durability barrier, continue the bus's numbering
        after the journal's last record. Returns the unsubscribe function."""
        bus.start_after(self._last_seq)
        bus.add_barrier(self.barrier)
        self._bus = bus
        unsubscribe = bus.subscribe(self.observe)

        def detach() -> None:
            unsubscribe()
            self._bus = None

        return detach

    # --------------------------------------------------------------- properties

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def committed_seq(self) -> int:
        return self._committed_seq

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> str | None:
        return self._failure

    # ------------------------------------------------------------------ events

    def observe(self, event: Event) -> None:
        """Bus subscriber: chain the event and add it to the batch; commit when the batch is full."""
        if self._failure is not None or self._closed:
            self._check_usable()
        seq = event.seq
        last = self._last_seq
        if (seq != last + 1 and (last or seq < 1)) or event.run_id != self.run_id:
            self._refuse_out_of_order(event)
        body = event_json(event)
        kind = event.kind
        prev = self._last_hash
        digest = chain_hash(prev, seq, kind, body)
        # The ts column is the body's own timestamp text (kind and seq come before it).
        start = body.index('"ts":"') + 6
        self._pending.append((seq, kind, body[start : body.index('"', start)], event.run_id, body, prev, digest))
        self._last_seq = seq
        self._last_hash = digest
        if kind in _LEDGER_KINDS:
            # The table change commits, fsynced, in the same transaction as its chained record:
            # this one now, or (grouped) the next one, which its caller awaits.
            if self.group_ledger:
                self._stage(event)
                return
            self._transaction(event, durable=True)
            return
        if len(self._pending) >= self.batch_size:
            # A full batch is one transaction. fsynced like every commit (one fsync per
            # batch_size events costs little, and the pragma never switches).
            self._transaction(None, durable=True)

    def _stage(self, event: Event) -> None:
        """Hold a ledger event's table change for the next transaction; reads see it at once."""
        self._staged.append(event)
        if isinstance(event, IntentRecorded):
            self._staged_intents[event.action_hash] = "PENDING"
        elif isinstance(event, IntentStatusChanged):
            for action_hash in event.action_hashes:
                self._staged_intents[action_hash] = event.status
        elif isinstance(event, RunStateChanged):
            self._staged_state[event.key] = event.value
        if self.on_stage is not None:
            self.on_stage()

    def _refuse_out_of_order(self, event: Event) -> None:
        seq = event.seq
        if self._last_seq and seq != self._last_seq + 1:
            # A gap or a step back would be a hole or a fork in the audit trail: stop here.
            self._refuse(f"event seq {seq} does not follow the journal's last record {self._last_seq}")
        if seq < 1:
            self._refuse(f"event seq {seq} is not a positive sequence number")
        if event.run_id != self.run_id:
            self._refuse(f"event seq {seq} belongs to run {event.run_id!r}, not this journal's run {self.run_id!r}")

    def commit(self, durable: bool = True) -> None:
        """Commit every pending record in one transaction.

        durable=True (the default) returns only after the commit is fsynced
        (synchronous=FULL); durable=False skips the fsync for this commit: the data survives
        a process crash but not a power loss, until the next durable commit syncs it too.
        """
        self._check_usable()
        if not self._pending and not (durable and self._unsynced):
            return
        self._transaction(None, durable=durable)

    async def barrier(self) -> None:
        """Durability barrier for `EventBus.add_barrier`: everything published so far is on disk.

        Synchronous inside: the caller is about to do something irreversible and must wait
        for the fsync anyway, and the connection belongs to this (the core's) thread.
        """
        self.commit(durable=True)

    # ------------------------------------------------------- intents and state

    def record_intent(
        self,
        action_hash: str,
        plan_id: str,
        action_id: str,
        agent: str,
        tool: str,
        approval_id: str | None,
    ) -> None:
        """Durably record that an irreversible action is about to run (with every pending event).

        The intent is a chained event (IntentRecorded) committed and fsynced with its row.
        Raises DuplicateIntent if any intent exists for `action_hash`: at most once, across restarts.
        """
        self._check_usable()
        existing = self.intent_status(action_hash)
        if existing is not None:
            raise DuplicateIntent(
                f"action {action_id!r} ({tool}) already has an intent with status {existing}: "
                "a repeated irreversible action is blocked"
            )
        self._publish(
            IntentRecorded,
            action_hash=action_hash,
            plan_id=plan_id,
            action_id=action_id,
            agent=agent,
            tool=tool,
            approval_id=approval_id,
        )
        self._confirm(self.intent_status(action_hash) == "PENDING", f"the intent for {action_id!r}")

    def record_outcome(self, action_hash: str, success: bool) -> None:
        """Durably set a PENDING (or UNKNOWN, once the operator knows) intent to DONE or FAILED."""
        self._check_usable()
        status = self.intent_status(action_hash)
        if status is None:
            raise JournalError(f"no intent recorded for action hash {action_hash}: cannot record its outcome")
        if status not in ("PENDING", "UNKNOWN"):
            raise JournalError(f"the intent for action hash {action_hash} is already {status}: an outcome is final")
        new_status = "DONE" if success else "FAILED"
        self._publish(IntentStatusChanged, action_hashes=[action_hash], status=new_status)
        self._confirm(self.intent_status(action_hash) == new_status, f"the outcome of intent {action_hash}")

    def record_unknown(self, action_hash: str) -> None:
        """Durably set a PENDING intent to UNKNOWN: the LIVE run may have had its effect but did
        not report success (it raised, hung or answered nonsense, or a grant's lease ran out).
        It is never retried. Chained like every intent change, so `verify` covers it."""
        self._check_usable()
        status = self.intent_status(action_hash)
        if status != "PENDING":
            raise JournalError(
                f"the intent for action hash {action_hash} is {status}, not PENDING: cannot mark it UNKNOWN"
            )
        self._publish(IntentStatusChanged, action_hashes=[action_hash], status="UNKNOWN")
        self._confirm(self.intent_status(action_hash) == "UNKNOWN", f"the UNKNOWN outcome of intent {action_hash}")

    def intent_status(self, action_hash: str) -> str | None:
        self._check_usable()
        staged = self._staged_intents.get(action_hash)
        if staged is not None:
            return staged
        statuses = self._intent_statuses
        if statuses is None:
            rows = self._read("SELECT action_hash, status FROM intents", ()).fetchall()
            statuses = self._intent_statuses = {str(h): str(status) for h, status in rows}
        return statuses.get(action_hash)

    def is_blocked(self, action_hash: str) -> bool:
        """True if any intent exists for `action_hash` (whatever its status): running it again is not allowed."""
        return self.intent_status(action_hash) is not None

    def mark_unknown_intents(self) -> list[dict[str, Any]]:
        """After a restart: every PENDING intent becomes UNKNOWN (its outcome was never recorded).

        Returns every UNKNOWN intent (newly marked and those still unresolved from an earlier
        restart), oldest first, for the operator to resolve.
        """
        self._check_usable()
        pending = [row["action_hash"] for row in self.intents("PENDING")]
        if pending:
            self._publish(IntentStatusChanged, action_hashes=pending, status="UNKNOWN")
            self._confirm(not self.intents("PENDING"), "the UNKNOWN intents")
        return self.intents("UNKNOWN")

    def mark_intent_unknown(self, action_hash: str) -> None:
        """Durably set one PENDING intent to UNKNOWN (a grant whose outcome never came back)."""
        self.record_unknown(action_hash)

    def intents(self, status: str | None = None) -> list[dict[str, Any]]:
        """Intents as dicts (all, or those with `status`), oldest first."""
        if status is not None and status not in INTENT_STATUSES:
            raise ValueError(f"unknown intent status {status!r}")
        if self._staged:
            self.commit(durable=True)  # a listing reads the table: staged changes first
        sql = (
            "SELECT action_hash, plan_id, action_id, agent, tool, approval_id, status, created, updated FROM intents"
            + (" WHERE status = ?" if status else "")
            + " ORDER BY created, rowid"
        )
        cursor = self._read(sql, (status,) if status else ())
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def set_state(self, key: str, value: str) -> None:
        """Durably set a piece of run state (e.g. "locked" -> reason, "" when unlocked).

        A chained event (RunStateChanged) committed with the row. Published by a subscriber
        while the bus delivers another event (a lock or unlock taken there), it is committed
        right after that event, in the same synchronous call, so before anything can go LIVE;
        if that commit fails, the journal fails closed and the system locks.
        """
        self._check_usable()
        bus = self._bus
        deferred = bus is not None and bus.dispatching
        self._publish(RunStateChanged, key=key, value=value)
        if not deferred:
            self._confirm(self.get_state(key) == value, f"run state {key!r}")

    def get_state(self, key: str) -> str | None:
        staged = self._staged_state.get(key)
        if staged is not None:
            self._check_usable()
            return staged
        row = self._read("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _publish(self, cls: type[Event], **fields: Any) -> None:
        """Chain a ledger event: through the bus when attached (every subscriber sees it, in
        sequence), else numbered here. `observe` applies its table change durably."""
        if self._bus is not None:
            self._bus.emit(cls, **fields)
            return
        event = cls(seq=self._last_seq + 1, ts=self._clock.now(), run_id=self.run_id, **fields)
        self.observe(event)

    def _confirm(self, applied: bool, what: str) -> None:
        self._check_usable()
        if not applied:
            raise JournalError(f"{self.path}: {what} is not durably recorded yet")

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Commit what is pending (durably, unless the journal failed) and close the connection."""
        if self._closed:
            return
        try:
            if self._failure is None:
                self.commit(durable=True)
        finally:
            self._closed = True
            _close_quietly(self._conn)

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise JournalError(f"{self.path}: the journal failed earlier ({self._failure}); nothing more is written")
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")

    def _fail(self, reason: str, cause: BaseException | None = None) -> NoReturn:
        self._failure = reason
        # The batch can never be committed now (no retry after a failed commit), so drop it.
        self._pending.clear()
        self._drop_staged()
        raise JournalError(f"{self.path}: {reason}; the journal is stopped (fail closed)") from cause

    def _refuse(self, reason: str) -> NoReturn:
        """Stop on an event that cannot be chained, keeping the valid records already batched."""
        if self._pending:
            self._transaction(None, durable=True)
        self._fail(reason)

    def _read(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        self._check_usable()
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            self._fail(f"cannot read the journal: {exc}", exc)

    def _transaction(self, ledger: Event | None, durable: bool) -> None:
        """One transaction: the pending records, the new head, the staged table changes, then
        `ledger`'s; fsynced if durable."""
        conn = self._conn
        rows = self._pending
        staged = self._staged
        try:
            if durable != self._sync_full:
                # Switched only when it changes: a run of unsynced commits (the gateway's
                # read-only calls) pays for no pragma, and a durable one always has FULL.
                conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                self._sync_full = durable
            conn.execute("BEGIN IMMEDIATE")
            if rows:
                conn.executemany(_INSERT_RECORD, rows)
            # Written in every transaction: it lets verify detect a truncated tail, and it makes
            # a durable commit with nothing pending still write, and so fsync, the WAL.
            conn.executemany(_SET_META, [("head_seq", str(self._last_seq)), ("head_hash", self._last_hash)])
            for event in staged:
                _apply_ledger(conn, event)
            if ledger is not None:
                _apply_ledger(conn, ledger)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except (sqlite3.Error, OSError):
                pass  # the commit already failed; the journal is stopped whatever rollback says
            self._fail(f"commit failed: {exc}", exc)
        statuses = self._intent_statuses
        if statuses is not None:
            for event in staged if ledger is None else [*staged, ledger]:
                _apply_status(statuses, event)
        self._pending = []
        self._drop_staged()
        self._committed_seq = self._last_seq
        self._unsynced = not durable

    def _drop_staged(self) -> None:
        if self._staged:
            self._staged = []
            self._staged_intents.clear()
            self._staged_state.clear()


def _apply_ledger(conn: sqlite3.Connection, event: Event) -> None:
    """The table change a ledger event stands for (the same code builds and verifies the tables)."""
    stamp = event.ts.isoformat()
    if isinstance(event, IntentRecorded):
        conn.execute(
            "INSERT INTO intents (action_hash, plan_id, action_id, agent, tool, approval_id, status,"
            " created, updated) VALUES (?, ?, ?, ?, ?, ?, 'PENDING', ?, ?)",
            (
                event.action_hash,
                event.plan_id,
                event.action_id,
                event.agent,
                event.tool,
                event.approval_id,
                stamp,
                stamp,
            ),
        )
    elif isinstance(event, IntentStatusChanged):
        conn.executemany(
            "UPDATE intents SET status = ?, updated = ? WHERE action_hash = ?",
            [(event.status, stamp, h) for h in event.action_hashes],
        )
    elif isinstance(event, RunStateChanged):
        conn.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (event.key, event.value),
        )


def _apply_status(statuses: dict[str, str], event: Event) -> None:
    """What a committed ledger event changed in the intents table, applied to its statuses."""
    if isinstance(event, IntentRecorded):
        statuses[event.action_hash] = "PENDING"
    elif isinstance(event, IntentStatusChanged):
        for action_hash in event.action_hashes:
            if action_hash in statuses:  # as the UPDATE: an unknown hash changes no row
                statuses[action_hash] = event.status


def _check_reopen(path: Path, meta: dict[str, str], last: tuple[int, str] | None, run_id: str) -> tuple[int, str]:
    if meta.get("format") != FORMAT_VERSION:
        raise JournalError(
            f"{path}: journal format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})"
        )
    if meta.get("run_id") != run_id:
        raise JournalError(f"{path}: the journal belongs to run {meta.get('run_id')!r}, not {run_id!r}")
    last_seq, last_hash = (0, GENESIS_HASH) if last is None else (int(last[0]), str(last[1]))
    if (str(last_seq), last_hash) != (meta.get("head_seq"), meta.get("head_hash")):
        raise JournalError(
            f"{path}: the last record (seq {last_seq}) is not the journal's recorded head "
            f"(seq {meta.get('head_seq')}); run `phase24 verify` on the run directory"
        )
    return last_seq, last_hash


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except sqlite3.Error:
        pass  # closing after a storage failure may fail too; nothing more can be lost


def _connect_existing(run_dir: Path) -> sqlite3.Connection:
    """A query-only connection to an existing journal; a missing one is a JournalError naming it."""
    path = _journal_path(run_dir)
    if not path.is_file():
        raise JournalError(f"{path}: no journal here (missing {JOURNAL_FILE})")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
    return conn


def verify_journal(run_dir: Path) -> VerifyReport:
    """Recompute the hash chain of the journal in `run_dir` and report the first bad record.

    Detects edited bodies or kinds, tampered hashes, reordering (prev_hash mismatch), deleted
    records (a seq gap, blamed on the first missing seq; a missing tail, via the recorded
    head) and denormalised columns (ts, run_id) that disagree with the body.
    """
    conn = _connect_existing(run_dir)
    try:
        return _verify(conn, Path(run_dir))
    except sqlite3.Error as exc:
        return VerifyReport(False, 0, None, f"the journal cannot be read: {exc}")
    finally:
        _close_quietly(conn)


def _verify(conn: sqlite3.Connection, run_dir: Path) -> VerifyReport:
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        return VerifyReport(False, 0, None, f"not a journal (no metadata: {exc})")
    if meta.get("format") != FORMAT_VERSION:
        return VerifyReport(False, 0, None, f"unsupported journal format {meta.get('format')!r}")
    run_id = meta.get("run_id")
    count = 0
    prev_seq: int | None = None
    prev_hash = GENESIS_HASH
    replay = _LedgerReplay()
    rows = conn.execute("SELECT seq, kind, ts, run_id, body, prev_hash, hash FROM records ORDER BY seq")
    for seq, kind, ts, row_run_id, body, row_prev, row_hash in rows:
        bad = _check_record(seq, kind, ts, row_run_id, body, row_prev, row_hash, prev_seq, prev_hash, run_id)
        if bad is not None:
            return VerifyReport(False, count, bad[0], bad[1])
        if kind in _LEDGER_KINDS or kind == "run_started":
            problem = replay.apply(kind, body)
            if problem is not None:
                return VerifyReport(False, count, seq, problem)
        count += 1
        prev_seq, prev_hash = seq, row_hash
    head_seq, head_hash = meta.get("head_seq"), meta.get("head_hash")
    last_seq = prev_seq or 0
    if head_seq is None or not head_seq.isdigit():
        return VerifyReport(False, count, None, "the journal's head is missing from its metadata")
    if int(head_seq) > last_seq:
        return VerifyReport(
            False,
            count,
            last_seq + 1,
            f"records {last_seq + 1}..{head_seq} are missing (the journal head is {head_seq})",
        )
    if int(head_seq) < last_seq or head_hash != prev_hash:
        return VerifyReport(
            False, count, last_seq, f"the last record is not the journal's recorded head (seq {head_seq})"
        )
    problem = replay.compare(conn, run_dir)
    if problem is not None:
        return VerifyReport(False, count, None, problem)
    return VerifyReport(True, count, None, "")


class _LedgerReplay:
    """The intents, run state and run.json digest as the chain says they must be."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.state: dict[str, str] = {}
        self.run_started = False

    def apply(self, kind: str, body: str) -> str | None:
        """Fold one chained record in; a problem if it contradicts the chain so far."""
        if kind == "run_started":
            self.run_started = True
            return None
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValueError as exc:
            return f"a {kind} record is not a valid event ({type(exc).__name__})"
        stamp = event.ts.isoformat()
        if isinstance(event, IntentRecorded):
            if event.action_hash in self.intents:
                return f"intent {event.action_hash} is recorded twice"
            self.intents[event.action_hash] = {
                "action_hash": event.action_hash,
                "plan_id": event.plan_id,
                "action_id": event.action_id,
                "agent": event.agent,
                "tool": event.tool,
                "approval_id": event.approval_id,
                "status": "PENDING",
                "created": stamp,
                "updated": stamp,
            }
        elif isinstance(event, IntentStatusChanged):
            for action_hash in event.action_hashes:
                intent = self.intents.get(action_hash)
                if intent is None:
                    return f"intent {action_hash} changes status before it is recorded"
                intent["status"], intent["updated"] = event.status, stamp
        elif isinstance(event, RunStateChanged):
            self.state[event.key] = event.value
        return None

    def compare(self, conn: sqlite3.Connection, run_dir: Path) -> str | None:
        """The first way the tables (or run.json) differ from the chain, or None."""
        cursor = conn.execute(f"SELECT {', '.join(_INTENT_COLUMNS)} FROM intents")
        table = {row[0]: dict(zip(_INTENT_COLUMNS, row, strict=True)) for row in cursor.fetchall()}
        for action_hash, intent in self.intents.items():
            row = table.get(action_hash)
            if row is None:
                return (
                    f"the intents table lost the intent of action {intent['action_id']!r} ({intent['tool']}, "
                    f"{intent['status']} in the chain): intents were deleted"
                )
            if row != intent:
                changed = sorted(k for k in _INTENT_COLUMNS if row[k] != intent[k])
                return (
                    f"the intents table disagrees with the chain for action {intent['action_id']!r} "
                    f"({', '.join(changed)} edited; the chain says {intent['status']})"
                )
        extra = sorted(set(table) - set(self.intents))
        if extra:
            return f"the intents table holds {len(extra)} intent(s) the chain never recorded (e.g. {extra[0]})"
        state = dict(conn.execute("SELECT key, value FROM state").fetchall())
        if state != self.state:
            keys = sorted(k for k in set(state) | set(self.state) if state.get(k) != self.state.get(k))
            return f"the run state table disagrees with the chain (key {', '.join(map(repr, keys))} edited or deleted)"
        return self._check_run_record(run_dir)

    def _check_run_record(self, run_dir: Path) -> str | None:
        digest = self.state.get(RUN_RECORD_DIGEST)
        path = run_dir / RUN_RECORD_FILE
        if digest is None:
            if self.run_started and path.exists():
                return f"{RUN_RECORD_FILE} is not covered by the chain (no digest recorded before the run started)"
            return None
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            return f"{RUN_RECORD_FILE} is missing; the chain recorded its digest"
        except OSError as exc:
            return f"{RUN_RECORD_FILE} cannot be read: {exc.strerror or exc}"
        if actual != digest:
            return f"{RUN_RECORD_FILE} was changed after the run recorded it (its SHA-256 does not match the chain)"
        return None


def _check_record(
    seq: int,
    kind: str,
    ts: str,
    run_id: str,
    body: str,
    row_prev: str,
    row_hash: str,
    prev_seq: int | None,
    prev_hash: str,
    journal_run: str | None,
) -> tuple[int, str] | None:
    """(seq to blame, problem) for the first thing wrong with one record, or None."""
    if prev_seq is not None and seq != prev_seq + 1:
        missing = prev_seq + 1
        return missing, f"record {missing} is missing (records jump from {prev_seq} to {seq})"
    if row_prev != prev_hash:
        if prev_seq is None:
            return seq, "the first record does not start the chain: earlier records are missing"
        return seq, f"prev_hash does not match record {prev_seq}'s hash (records reordered, replaced or removed)"
    if chain_hash(row_prev, seq, kind, body) != row_hash:
        return seq, "the record's hash does not match its content (body, kind or hash edited)"
    try:
        data = json.loads(body)
        same = (
            isinstance(data, dict)
            and data.get("seq") == seq
            and data.get("kind") == kind
            and data.get("run_id") == run_id == journal_run
            and datetime.fromisoformat(str(data.get("ts"))) == datetime.fromisoformat(ts)
        )
    except ValueError:
        same = False
    if not same:
        return seq, "the record's seq, kind, ts or run_id columns disagree with its body (or the run)"
    return None


def read_events(run_dir: Path, after: int = 0) -> Iterator[Event]:
    """The committed events of the journal in `run_dir` after seq `after`, in sequence order
    (validated, not verified)."""
    conn = _connect_existing(run_dir)
    try:
        for (body,) in conn.execute("SELECT body FROM records WHERE seq > ? ORDER BY seq", (after,)):
            yield EVENT_ADAPTER.validate_json(body)
    except sqlite3.Error as exc:
        raise JournalError(f"{_journal_path(run_dir)}: cannot read the journal: {exc}") from exc
    finally:
        _close_quietly(conn)
