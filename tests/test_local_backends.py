"""The shipped local backends do real work: files under a root, SQLite rows, an outbox.

Every step is called through the executor registry, so it runs behind the guard exactly as
in a run. The outbox is tested against a real SMTP server (aiosmtpd) and a real HTTP
receiver, both on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.approval import CallbackGate
from core.backends import files, outbox, sqlite_store
from core.bindings import ExecutionOutcome, ToolCall
from core.clock import ManualClock
from core.contracts import standard_contracts
from core.executors import ExecutorRegistry
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import PlannedAction
from core.plugins import ExecutorPlugin, PluginContext, merge_contracts
from tests.conftest import act, plan
from tests.local_receivers import free_port, http_receiver, smtp_sink


def bound(plugin: ExecutorPlugin, world: Path, **settings: Any) -> ExecutorRegistry:
    registry = merge_contracts(standard_contracts(), [plugin])
    executors = ExecutorRegistry(registry, ManualClock())
    for binding in plugin.bind(PluginContext(plugin.name, settings, world, registry)):
        executors.bind(binding.tool, binding)
    return executors


def call(tool: str, args: dict[str, Any], action_id: str = "a1", plan_id: str = "p1") -> ToolCall:
    action = PlannedAction(id=action_id, agent="agent_a", tool=tool, args=args, confidence=0.9)
    return ToolCall(plan_id, action, "agent_a")


def run(step: Any, c: ToolCall) -> ExecutionOutcome:
    outcome: ExecutionOutcome = asyncio.run(step(c))
    return outcome


def live_then_undo(executors: ExecutorRegistry, c: ToolCall) -> tuple[ExecutionOutcome, ExecutionOutcome]:
    binding = executors.for_tool(c.tool)
    assert binding.compensate is not None

    async def both() -> tuple[ExecutionOutcome, ExecutionOutcome]:
        return await binding.live(c), await binding.compensate(c)  # type: ignore[misc]

    return asyncio.run(both())


# -- files ----------------------------------------------------------------------------------


def test_file_operation_writes_appends_deletes_under_the_root(tmp_path: Path) -> None:
    executors = bound(files.PLUGIN, tmp_path)
    live = executors.for_tool("file_operation").live
    root = tmp_path / "files"
    assert run(live, call("file_operation", {"op": "write", "path": "a/b.txt", "content": "one\n"})).success
    assert run(live, call("file_operation", {"op": "append", "path": "a/b.txt", "content": "two\n"})).success
    assert (root / "a" / "b.txt").read_text() == "one\ntwo\n"
    assert run(live, call("file_operation", {"op": "delete", "path": "a/b.txt"})).success
    assert not (root / "a" / "b.txt").exists()
    assert not executors.for_tool("file_operation").simulated


def test_rollback_restores_the_previous_content_or_removes_a_new_file(tmp_path: Path) -> None:
    executors = bound(files.PLUGIN, tmp_path)
    root = tmp_path / "files"
    root.mkdir()
    (root / "kept.txt").write_text("before")
    done, undone = live_then_undo(executors, call("file_operation", {"path": "kept.txt", "content": "after"}))
    assert done.success and undone.success
    assert (root / "kept.txt").read_text() == "before"
    done, undone = live_then_undo(executors, call("file_operation", {"path": "new.txt", "content": "x"}, "a2"))
    assert done.success and undone.success and not (root / "new.txt").exists()
    done, undone = live_then_undo(executors, call("file_operation", {"op": "delete", "path": "kept.txt"}, "a3"))
    assert done.success and undone.success and (root / "kept.txt").read_text() == "before"


def test_dry_run_and_mock_change_nothing(tmp_path: Path) -> None:
    executors = bound(files.PLUGIN, tmp_path)
    binding = executors.for_tool("file_operation")
    c = call("file_operation", {"op": "write", "path": "x.txt", "content": "data"})
    assert run(binding.mock, c).success
    dry = run(binding.dry_run, c)
    assert dry.success and dry.output["would"] == "write" and dry.output["exists"] is False
    assert list((tmp_path / "files").iterdir()) == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../escape.txt", "climbs out"),
        ("a/../../escape.txt", "climbs out"),
        ("/etc/passwd", "absolute"),
        ("link_dir/escape.txt", "outside the files root"),
        ("link_file", "outside the files root"),
        ("", "expected a relative path"),
    ],
)
def test_paths_leaving_the_root_are_refused_before_any_effect(tmp_path: Path, path: str, why: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("untouched")
    root = tmp_path / "world" / "files"
    root.mkdir(parents=True)
    os.symlink(outside, root / "link_dir")
    os.symlink(outside / "target.txt", root / "link_file")
    executors = bound(files.PLUGIN, tmp_path / "world")
    binding = executors.for_tool("file_operation")
    for step in (binding.dry_run, binding.live):
        outcome = run(step, call("file_operation", {"op": "write", "path": path, "content": "pwned"}))
        assert not outcome.success and why in (outcome.error or "")
        assert not outcome.effect_unknown, "a refusal vouches that nothing happened"
    assert (outside / "target.txt").read_text() == "untouched"
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert not (tmp_path / "world" / "escape.txt").exists()


def test_form_fill_sets_one_field_and_rollback_restores_it(tmp_path: Path) -> None:
    executors = bound(files.PLUGIN, tmp_path)
    live = executors.for_tool("form_fill").live
    form = tmp_path / "files" / "forms" / "signup.json"
    assert run(live, call("form_fill", {"form": "signup", "field": "name", "value": "Ada"})).success
    done, undone = live_then_undo(executors, call("form_fill", {"form": "signup", "field": "name", "value": "Bob"}))
    assert done.success and undone.success
    assert json.loads(form.read_text()) == {"name": "Ada"}
    refused = run(live, call("form_fill", {"form": "../../x", "field": "a", "value": 1}))
    assert not refused.success and "climbs out" in (refused.error or "")


def test_the_files_backend_makes_file_operation_reversible_but_not_less_guarded() -> None:
    registry = merge_contracts(standard_contracts(), [files.PLUGIN])
    contract = registry.get("file_operation")
    assert contract.compensable and contract.requires_approval and contract.risk_level.value == "HIGH"


# -- SQLite ---------------------------------------------------------------------------------

SCHEMA = "CREATE TABLE IF NOT EXISTS contacts (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, tag TEXT);"


def rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, email, tag FROM contacts ORDER BY id").fetchall()
    finally:
        conn.close()


def seeded(tmp_path: Path) -> tuple[ExecutorRegistry, Path]:
    executors = bound(sqlite_store.PLUGIN, tmp_path, init_sql=SCHEMA)
    live = executors.for_tool("database_write").live
    insert = "INSERT INTO contacts (email, tag) VALUES (?, ?)"
    statements = [{"sql": insert, "params": [f"{n}@example.com", "old"]} for n in ("a", "b", "c")]
    assert run(live, call("database_write", {"statements": statements}, "seed")).success
    return executors, tmp_path / "db.sqlite3"


def test_database_write_runs_parameterized_statements_in_one_transaction(tmp_path: Path) -> None:
    executors, db = seeded(tmp_path)
    assert rows(db) == [(1, "a@example.com", "old"), (2, "b@example.com", "old"), (3, "c@example.com", "old")]
    # The second statement violates UNIQUE: the first one is rolled back with it.
    statements = [
        {"sql": "UPDATE contacts SET tag = ? WHERE id = ?", "params": ["new", 1]},
        {"sql": "INSERT INTO contacts (email) VALUES (:email)", "params": {"email": "b@example.com"}},
    ]
    outcome = run(executors.for_tool("database_write").live, call("database_write", {"statements": statements}))
    assert not outcome.success and not outcome.effect_unknown
    assert "statement 2" in (outcome.error or "") and "rolled back" in (outcome.error or "")
    assert rows(db)[0] == (1, "a@example.com", "old")


def test_rollback_restores_exactly_the_rows_a_write_changed(tmp_path: Path) -> None:
    executors, db = seeded(tmp_path)
    before = rows(db)
    statements = [
        {"sql": "UPDATE contacts SET tag = 'vip', id = 10 WHERE id = 1", "params": []},
        {"sql": "DELETE FROM contacts WHERE id = ?", "params": [2]},
        {"sql": "INSERT INTO contacts (email, tag) VALUES (?, ?)", "params": ["d@example.com", "x"]},
        {"sql": "REPLACE INTO contacts (id, email, tag) VALUES (3, 'c@example.com', 'replaced')", "params": []},
    ]
    done, undone = live_then_undo(executors, call("database_write", {"statements": statements}))
    assert done.success, done.error
    assert done.output["rows_changed"] == 4
    assert undone.success, undone.error
    assert rows(db) == before


def test_database_dry_run_counts_rows_and_changes_nothing(tmp_path: Path) -> None:
    executors, db = seeded(tmp_path)
    c = call("database_write", {"sql": "UPDATE contacts SET tag = ?", "params": ["dry"]})
    outcome = run(executors.for_tool("database_write").dry_run, c)
    assert outcome.success and outcome.output["would_change_rows"] == 3
    assert {r[2] for r in rows(db)} == {"old"}


@pytest.mark.parametrize(
    "sql",
    ["DROP TABLE contacts", "CREATE TABLE t (x)", "PRAGMA journal_mode = DELETE", "COMMIT", "ATTACH 'x.db' AS x"],
)
def test_only_restorable_statements_are_allowed(tmp_path: Path, sql: str) -> None:
    executors, db = seeded(tmp_path)
    outcome = run(executors.for_tool("database_write").live, call("database_write", {"sql": sql}))
    assert not outcome.success and not outcome.effect_unknown
    assert len(rows(db)) == 3


def test_malformed_database_arguments_fail_in_mock(tmp_path: Path) -> None:
    executors, _ = seeded(tmp_path)
    mock = executors.for_tool("database_write").mock
    for args in ({}, {"statements": []}, {"sql": "SELECT 1", "params": "x"}, {"statements": [{"sql": 5}]}):
        outcome = run(mock, call("database_write", args))
        assert not outcome.success and outcome.error


# -- outbox ---------------------------------------------------------------------------------

EMAIL = {"to": "ops@example.com", "subject": "Quarterly report", "body": "Attached."}


def test_smtp_delivery_to_a_real_local_server_carries_the_idempotency_key(tmp_path: Path) -> None:
    with smtp_sink() as sink:
        executors = bound(outbox.PLUGIN, tmp_path, transport="smtp", port=sink.port)
        binding = executors.for_tool("msgraph_send_email")
        c = call("msgraph_send_email", EMAIL)
        assert run(binding.mock, c).success and run(binding.dry_run, c).success
        assert sink.messages == [], "MOCK and DRY_RUN deliver nothing"
        first = run(binding.live, c)
        again = run(binding.live, call("msgraph_send_email", EMAIL, action_id="other_id"))
    assert first.success and again.success, (first.error, again.error)
    assert len(sink.messages) == 2
    key = c.idempotency_key()
    for message in sink.messages:
        assert message["X-Phase24-Idempotency-Key"] == key, "the same action gets the same key: a repeat is detectable"
        assert message["Message-ID"] == f"<{key}@phase24>"
        assert message["To"] == "ops@example.com" and message["Subject"] == "Quarterly report"
    other = run(binding.dry_run, call("msgraph_send_email", {**EMAIL, "subject": "Other"}))
    assert other.output["idempotency_key"] != key
    assert binding.compensate is None, "a sent message cannot be unsent"


def test_http_delivery_posts_json_with_the_idempotency_key_header(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        executors = bound(outbox.PLUGIN, tmp_path, transport="http", url=receiver.url)
        c = call("msgraph_send_email", EMAIL)
        outcome = run(executors.for_tool("msgraph_send_email").live, c)
        assert outcome.success and outcome.output["status"] == 201
        receiver.status = 422
        refused = run(executors.for_tool("msgraph_send_email").live, c)
        receiver.status = 503
        broken = run(executors.for_tool("msgraph_send_email").live, c)
    assert [h["idempotency-key"] for h, _ in receiver.posts] == [c.idempotency_key()] * 3
    _, body = receiver.posts[0]
    assert body["args"] == EMAIL and body["idempotency_key"] == c.idempotency_key() and body["action_id"] == "a1"
    assert not refused.success and not refused.effect_unknown and "HTTP 422" in (refused.error or "")
    assert not broken.success and broken.effect_unknown, "a 5xx may have delivered: UNKNOWN"


def test_an_unreachable_outbox_fails_without_an_unknown_outcome(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    for settings in ({"transport": "smtp", "port": port}, {"transport": "http", "url": f"http://127.0.0.1:{port}/"}):
        executors = bound(outbox.PLUGIN, tmp_path, **settings)
        outcome = run(executors.for_tool("msgraph_send_email").live, call("msgraph_send_email", EMAIL))
        assert not outcome.success and not outcome.effect_unknown and "cannot connect" in (outcome.error or "")


def test_bad_recipients_are_refused_before_connecting(tmp_path: Path) -> None:
    executors = bound(outbox.PLUGIN, tmp_path, transport="smtp", port=free_port())
    for to in ("nobody", ["a@example.com", "b@x\r\nBcc: evil@x"], []):
        outcome = run(executors.for_tool("msgraph_send_email").mock, call("msgraph_send_email", {**EMAIL, "to": to}))
        assert not outcome.success and "args.to" in (outcome.error or "")


# -- through a run --------------------------------------------------------------------------


def test_a_failed_step_rolls_back_real_files_and_rows(tmp_path: Path) -> None:
    plugins = [files.PLUGIN, sqlite_store.PLUGIN]
    registry = merge_contracts(standard_contracts(), plugins)
    world = tmp_path / "world"
    harness = Phase24Harness(
        Phase24ExecutionConfig(output_dir=tmp_path / "out", retry_delay_range_s=(0.0, 0.0)),
        gate=CallbackGate(lambda tool, confidence: True, name="test-approver"),
        clock=ManualClock(),
        registry=registry,
    )
    settings = {"files": {}, "sqlite": {"init_sql": SCHEMA}}
    for plugin in plugins:
        for binding in plugin.bind(PluginContext(plugin.name, settings[plugin.name], world, registry)):
            harness.executors.bind(binding.tool, binding)
    (world / "files").mkdir(parents=True)
    (world / "files" / "report.txt").write_text("v1")
    insert = "INSERT INTO contacts (email) VALUES (?)"
    harness.load_phase21_plans(
        [
            plan(
                [
                    act("write", tool="file_operation", args={"path": "report.txt", "content": "v2"}),
                    act("row", tool="database_write", args={"sql": insert, "params": ["a@example.com"]}),
                    act("dup", tool="database_write", args={"sql": insert, "params": ["a@example.com"]}),
                ]
            )
        ]
    )
    summary = harness.execute_orchestration_pipeline()
    results = {r["action_id"]: r for r in harness.results[0].tool_results}
    assert results["dup"]["final_state"] == "ABORTED" and "UNIQUE" in results["dup"]["reason"]
    assert results["write"]["rolled_back"] and results["row"]["rolled_back"]
    assert (world / "files" / "report.txt").read_text() == "v1"
    assert rows(world / "db.sqlite3") == []
    assert summary["simulated"] is False


def test_a_table_whose_rows_cannot_be_restored_is_refused_not_unknown(tmp_path: Path) -> None:
    schema = SCHEMA + " CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(body);"
    executors = bound(sqlite_store.PLUGIN, tmp_path, init_sql=schema)
    live = executors.for_tool("database_write").live
    ok = run(live, call("database_write", {"sql": "INSERT INTO contacts (email) VALUES (?)", "params": ["a@x.org"]}))
    assert ok.success, ok.error
    refused = run(live, call("database_write", {"sql": "INSERT INTO search (body) VALUES (?)", "params": ["x"]}))
    assert not refused.success and not refused.effect_unknown and "not authorized" in (refused.error or "")
    assert rows(tmp_path / "db.sqlite3") == [(1, "a@x.org", None)]


def test_concurrent_writes_to_one_file_lose_nothing(tmp_path: Path) -> None:
    """Steps run in threads: two agents filling one form at once must not lose each other's field."""
    executors = bound(files.PLUGIN, tmp_path)
    live = executors.for_tool("form_fill").live
    appender = executors.for_tool("file_operation").live
    fields = [f"f{i:02d}" for i in range(40)]

    async def all_at_once() -> list[ExecutionOutcome]:
        fills = [live(call("form_fill", {"form": "shared", "field": f, "value": f}, f)) for f in fields]
        appends = [
            appender(call("file_operation", {"op": "append", "path": "log.txt", "content": f + "\n"}, "x" + f))
            for f in fields
        ]
        return await asyncio.gather(*fills, *appends)

    assert all(o.success for o in asyncio.run(all_at_once()))
    form = json.loads((tmp_path / "files" / "forms" / "shared.json").read_text())
    assert sorted(form) == fields
    assert sorted((tmp_path / "files" / "log.txt").read_text().splitlines()) == fields
