"""The SQLite backend: `database_write` runs parameterized statements in one transaction.

Arguments: `{"sql": "...", "params": [...]}` or `{"statements": [{"sql": ..., "params": ...}, ...]}`
(params a list for `?` or an object for `:name`). Only INSERT, UPDATE, DELETE (and the
reads they need) are allowed: an authorizer denies DDL, PRAGMA, ATTACH and transaction
control. While the statements run, temporary triggers record the previous state of every
row they change; the compensating step restores exactly those rows, in reverse order.
A statement that fails rolls the whole transaction back: nothing happened (FAILED).

DRY_RUN runs the statements inside a transaction that is always rolled back and reports
how many rows they would change. Blob columns cannot be restored and are refused.

Settings (`[executors.sqlite]`): `database` (default "db.sqlite3", relative to the run's
world directory), `init_sql` (a script run once when the backend opens the database, e.g.
CREATE TABLE IF NOT EXISTS ...), `tools` (default ["database_write"]).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from core.bindings import EffectNotApplied, ToolBinding, ToolCall
from core.contracts import RiskLevel, ToolContract
from core.errors import ConfigError
from core.function_binding import function_binding
from core.plugins import ExecutorPlugin, PluginContext

BACKEND = "sqlite"
MAX_STATEMENTS = 1000

#: With this backend a database write can be undone (the changed rows are kept).
DATABASE_WRITE = ToolContract(
    name="database_write",
    description="Run parameterized INSERT/UPDATE/DELETE statements in one transaction (restorable)",
    risk_level=RiskLevel.HIGH,
    reversible=True,
    requires_approval=True,
    required_permissions=("db.write",),
    max_concurrency=1,
)

_ALLOWED = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_INSERT,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
_UNDO_TABLE = "phase24_undo"

Statement = tuple[str, list[Any] | dict[str, Any]]


def parse_statements(args: dict[str, Any]) -> list[Statement]:
    """The statements of a call, checked for shape (MOCK does only this)."""
    raw = args.get("statements")
    if raw is None:
        raw = [{"sql": args.get("sql"), "params": args.get("params", [])}]
    if not isinstance(raw, list) or not raw:
        raise EffectNotApplied("args.statements: expected a non-empty list of {sql, params}")
    if len(raw) > MAX_STATEMENTS:
        raise EffectNotApplied(f"args.statements: more than {MAX_STATEMENTS} statements")
    statements: list[Statement] = []
    for i, item in enumerate(raw):
        where = f"args.statements[{i}]" if "statements" in args else "args"
        if not isinstance(item, dict):
            raise EffectNotApplied(f"{where}: expected an object with sql and params")
        sql, params = item.get("sql"), item.get("params", [])
        if not isinstance(sql, str) or not sql.strip():
            raise EffectNotApplied(f"{where}.sql: expected an SQL statement")
        if not isinstance(params, list | dict):
            raise EffectNotApplied(f"{where}.params: expected a list or an object")
        statements.append((sql, params))
    return statements


class SqliteStore:
    """One database file; each step opens its own connection (steps run in their own thread)."""

    def __init__(self, path: Path, init_sql: str = "") -> None:
        self.path = path
        self.init_sql = init_sql
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None)
                try:
                    if self.init_sql:
                        conn.executescript(self.init_sql)
                finally:
                    conn.close()
                self._ready = True
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA recursive_triggers = ON")  # REPLACE's deletions fire the delete trigger
        return conn

    def _tables(self, conn: sqlite3.Connection) -> dict[str, list[str]]:
        tables: dict[str, list[str]] = {}
        for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND sql NOT LIKE '%WITHOUT ROWID%' AND sql NOT LIKE 'CREATE VIRTUAL%'"
        ):
            tables[name] = [row[1] for row in conn.execute(f"PRAGMA main.table_info({_q(name)})")]
        return tables

    def _install_undo_triggers(self, conn: sqlite3.Connection, tables: dict[str, list[str]]) -> None:
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_UNDO_TABLE}"
            " (seq INTEGER PRIMARY KEY, tbl TEXT, op TEXT, rid INTEGER, new_rid INTEGER, old TEXT)"
        )
        for i, (name, columns) in enumerate(tables.items()):
            old = "json_array(" + ", ".join(f"OLD.{_q(c)}" for c in columns) + ")"
            table = f"main.{_q(name)}"
            lit = _lit(name)
            conn.execute(
                f"CREATE TEMP TRIGGER phase24_i{i} AFTER INSERT ON {table} BEGIN INSERT INTO {_UNDO_TABLE}"
                f" (tbl, op, rid) VALUES ({lit}, 'I', NEW.rowid); END"
            )
            conn.execute(
                f"CREATE TEMP TRIGGER phase24_u{i} AFTER UPDATE ON {table} BEGIN INSERT INTO {_UNDO_TABLE}"
                f" (tbl, op, rid, new_rid, old) VALUES ({lit}, 'U', OLD.rowid, NEW.rowid, {old}); END"
            )
            conn.execute(
                f"CREATE TEMP TRIGGER phase24_d{i} AFTER DELETE ON {table} BEGIN INSERT INTO {_UNDO_TABLE}"
                f" (tbl, op, rid, old) VALUES ({lit}, 'D', OLD.rowid, {old}); END"
            )

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.Error as exc:
            raise EffectNotApplied(f"cannot open {self.path.name}: {exc}") from None

    def _run(self, call: ToolCall, keep: bool) -> dict[str, Any]:
        statements = parse_statements(call.action.args)
        conn = self._open()
        stage = "before the statements"
        try:
            conn.execute("BEGIN IMMEDIATE")
            tables = self._tables(conn)
            self._install_undo_triggers(conn, tables)
            conn.set_authorizer(_authorizer(set(tables)))
            changed = 0
            for number, (sql, params) in enumerate(statements, 1):
                stage = f"statement {number}"
                changed += max(conn.execute(sql, params).rowcount, 0)
            conn.set_authorizer(None)
            stage = "after the statements"
            undo = conn.execute(f"SELECT tbl, op, rid, new_rid, old FROM {_UNDO_TABLE} ORDER BY seq").fetchall()
            columns = {name: tables[name] for name in {row[0] for row in undo}}
            stage = "commit"
            conn.execute("COMMIT" if keep else "ROLLBACK")
        except sqlite3.Error as exc:
            # SQLite's commit is atomic: whatever failed, closing the connection rolls back.
            raise EffectNotApplied(f"{stage}: {exc}; the transaction was rolled back") from None
        finally:
            conn.close()
        result: dict[str, Any] = {"statements": len(statements), "rows_changed": changed}
        if keep:
            result["_undo"] = undo
            result["_columns"] = columns
        return result

    def mock(self, call: ToolCall) -> dict[str, Any]:
        statements = parse_statements(call.action.args)
        incomplete = [i + 1 for i, (sql, _) in enumerate(statements) if not sqlite3.complete_statement(sql + ";")]
        if incomplete:
            raise EffectNotApplied(f"statements {incomplete}: not complete SQL")
        return {"statements": len(statements)}

    def dry_run(self, call: ToolCall) -> dict[str, Any]:
        described = self._run(call, keep=False)
        return {"would_change_rows": described["rows_changed"], "statements": described["statements"]}

    def live(self, call: ToolCall) -> dict[str, Any]:
        return self._run(call, keep=True)

    def undo(self, call: ToolCall, output: dict[str, Any]) -> dict[str, Any]:
        undo: list[tuple[str, str, int, int | None, str | None]] = output["_undo"]
        columns: dict[str, list[str]] = output["_columns"]
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for tbl, op, rid, new_rid, old in reversed(undo):
                cols = columns[tbl]
                table = f"main.{_q(tbl)}"
                values = json.loads(old or "[]")
                if op == "I":
                    conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rid,))
                elif op == "U":
                    sets = ", ".join(f"{_q(c)} = ?" for c in cols)
                    conn.execute(f"UPDATE {table} SET rowid = ?, {sets} WHERE rowid = ?", (rid, *values, new_rid))
                else:
                    names = ", ".join(["rowid", *(_q(c) for c in cols)])
                    marks = ", ".join("?" * (len(cols) + 1))
                    conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", (rid, *values))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise EffectNotApplied(f"could not restore the rows: {exc}; nothing was changed") from None
        finally:
            conn.close()
        return {"rows_restored": len(undo)}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _authorizer(tracked: set[str]) -> Any:
    def authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if action not in _ALLOWED:
            return sqlite3.SQLITE_DENY
        if action in _WRITES and source is None and (db != "main" or arg1 not in tracked):
            return sqlite3.SQLITE_DENY  # a table whose rows could not be restored
        return sqlite3.SQLITE_OK

    return authorize


def _bind(ctx: PluginContext) -> list[ToolBinding]:
    init_sql = ctx.setting("init_sql", str, "")
    if init_sql and not sqlite3.complete_statement(init_sql):
        raise ConfigError(f"executors.{ctx.plugin}.init_sql: not complete SQL (a statement lacks its ';'?)")
    store = SqliteStore(ctx.path("database", "db.sqlite3"), init_sql)
    bindings = []
    for tool in ctx.tools(("database_write",)):
        bindings.append(
            function_binding(
                tool, mock=store.mock, dry_run=store.dry_run, live=store.live, compensate=store.undo, backend=BACKEND
            )
        )
    return bindings


PLUGIN = ExecutorPlugin(
    name=BACKEND,
    bind=_bind,
    contracts=(DATABASE_WRITE,),
    description="parameterized statements against one SQLite database (database_write)",
)
