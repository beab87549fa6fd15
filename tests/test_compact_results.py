"""A large run's memory: plan results read from the finished contexts, result lines and run.json
encoded in pieces, and actions that share what they have in common. Every output stays the
same text as when each was built whole."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, act, plan
from pydantic import BaseModel, TypeAdapter

import core.json_pieces as json_pieces
import core.orchestrator as orchestrator
from core.approval import PolicyGate
from core.harness import Phase24Harness
from core.journal import RUN_RECORD_DIGEST
from core.json_pieces import model_json_pieces
from core.orchestrator import OrchestrationResult, ToolResults
from core.outputs import ORCHESTRATION_SUMMARY, TOOL_EXECUTION_LOG
from core.plans import PlannedAction, ToolExecutionPlan, load_plans


class ListResult(BaseModel):
    """OrchestrationResult as it was when every record was a dict in a list: the reference text."""

    plan_id: str
    status: str
    successful_executions: int
    failed_executions: int
    held_executions: int = 0
    cancelled_executions: int = 0
    tool_results: list[dict[str, Any]]
    conflicts_detected: int
    conflicts_resolved: int
    rollbacks_executed: int


def varied_plan() -> ToolExecutionPlan:
    """Completed, failed (with an error text), timed out and retried, cancelled, approved, and
    non-ASCII names: every kind of record field."""
    return plan(
        [
            act("ok", agent="agént_ü", tool="math_compute", confidence=0.95, args={"x": 1.5e-7, "y": [1, None]}),
            act("retry", tool="text_extract", confidence=0.95, simulate={"timeout_in": ["DRY_RUN"]}),
            act("high", agent="b", tool="database_write", confidence=0.9, args={"table": "t", "id": 1}),
            act("low", agent="b", tool="form_fill", confidence=0.3),
            act("fails", agent="c", tool="form_fill", confidence=0.9, simulate={"fail_in": ["LIVE"]}),
            act("after", agent="d", tool="math_compute", depends_on=["fails"]),
        ],
        plan_id="varied",
    )


def run_plans(make_harness: Any, plans: list[ToolExecutionPlan], **config: Any) -> Phase24Harness:
    h = make_harness(plans, gate=PolicyGate(approve_all=True), **config)
    h.execute_orchestration_pipeline()
    return h


def reference_line(index: int, result: OrchestrationResult) -> str:
    fields = {name: getattr(result, name) for name in ListResult.model_fields}
    fields["tool_results"] = list(result.tool_results)
    body = ListResult.model_validate(fields).model_dump_json()
    return f'{{"plan_index":{index},"plan_id":{json.dumps(result.plan_id)},"result":{body}}}'


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan (and plan result) of more than two actions is encoded piece by piece."""
    monkeypatch.setattr(orchestrator, "ITEMS_PER_PIECE", 2)
    monkeypatch.setattr(json_pieces, "ITEMS_PER_PIECE", 2)


@pytest.mark.parametrize("pieces", [True, False])
def test_result_lines_are_the_text_of_the_whole_list(make_harness: Any, request: Any, pieces: bool) -> None:
    if pieces:
        request.getfixturevalue("small_pieces")
    plans = [varied_plan(), *load_plans([SAMPLES / "rollback.json", SAMPLES / "conflicts.json"])]
    h = run_plans(make_harness, plans)
    lines = (h.config.output_dir / TOOL_EXECUTION_LOG).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(h.results) == 3
    for index, (line, result) in enumerate(zip(lines, h.results, strict=True)):
        assert isinstance(result.tool_results, ToolResults)
        assert line == reference_line(index, result)
    records = {r["action_id"]: r for r in h.results[0].tool_results}
    assert records["ok"]["agent"] == "agént_ü" and records["ok"]["mode"] == "LIVE"
    assert records["retry"]["executions"][1]["error"]  # the timed-out attempt says why
    assert records["high"]["approval"] is not None
    assert records["fails"]["final_state"] == "ABORTED" and records["after"]["final_state"] == "ABORTED"


def test_summary_counts_are_the_records_counts(make_harness: Any, small_pieces: None) -> None:
    h = run_plans(make_harness, [varied_plan(), *load_plans([SAMPLES / "rollback.json"])])
    records = [r for result in h.results for r in result.tool_results]
    summary = json.loads((h.config.output_dir / ORCHESTRATION_SUMMARY).read_text(encoding="utf-8"))
    assert summary["actions_by_final_state"] == dict(sorted(Counter(r["final_state"] for r in records).items()))
    assert summary["live_executions"] == sum(r["mode"] == "LIVE" for r in records) > 0


def test_tool_results_read_like_the_list_they_replace(make_harness: Any) -> None:
    h = run_plans(make_harness, [varied_plan()])
    result = h.results[0]
    records = result.tool_results
    as_list = list(records)
    assert isinstance(records, ToolResults) and len(records) == 6
    assert records == as_list and as_list == records and records != as_list[:-1]
    assert records[-1] == as_list[-1] and records[1:3] == as_list[1:3]
    assert records[0] is not records[0]  # built when read, never held
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unexpected value" from pydantic's serializer
        assert result.model_dump()["tool_results"] == as_list
        assert json.loads(result.model_dump_json())["tool_results"] == json.loads(json.dumps(as_list))


def test_a_resumed_results_list_is_counted_too(make_harness: Any) -> None:
    """A result read back from the log (a resumed run's) holds a plain list: still encoded and counted."""
    h = run_plans(make_harness, [varied_plan()])
    line = json.loads((h.config.output_dir / TOOL_EXECUTION_LOG).read_text(encoding="utf-8"))
    reread = OrchestrationResult.model_validate(line["result"])
    assert isinstance(reread.tool_results, list)
    assert "".join(reread.json_chunks()) == h.results[0].model_dump_json()


def test_model_json_pieces_is_the_same_text() -> None:
    exclude = frozenset({"agent_assignments", "execution_order", "confidence_scores"})
    encode = TypeAdapter(list[PlannedAction]).dump_json
    plans = [
        varied_plan(),
        *load_plans([SAMPLES / "rollback.json", SAMPLES / "approvals.json"]),
        plan(
            [act(f"a{i}", agent=f"ag{i % 3}", args={"n": i, "s": 'é\n"q"'}) for i in range(7)],
            plan_id="with_agents",
            description="dé\u2028scription",
            agents={"ag0": {"permissions": ["x"]}, "ag1": {}, "ag2": {}},
        ),
    ]
    for p in plans:
        for per_piece in (1, 2, 3, 1000):
            for excluded in (exclude, frozenset()):
                pieces = list(model_json_pieces(p, "actions", encode, exclude=excluded, per_piece=per_piece))
                assert "".join(pieces) == p.model_dump_json(exclude=set(excluded))
                assert len(pieces) == 2 + -(-len(p.actions) // per_piece)


class Edges(BaseModel):
    items: list[int]
    last: str = "x"


class Only(BaseModel):
    items: list[int]


def test_model_json_pieces_with_the_field_first_last_or_alone() -> None:
    encode = TypeAdapter(list[int]).dump_json
    for model in (Edges(items=[1, 2, 3]), Edges(items=[]), Only(items=[4, 5]), Only(items=[])):
        assert "".join(model_json_pieces(model, "items", encode, per_piece=2)) == model.model_dump_json()
    assert "".join(model_json_pieces(Edges(items=[1]), "items", encode, exclude=frozenset({"last"}))) == (
        Edges(items=[1]).model_dump_json(exclude={"last"})
    )


def test_run_record_is_written_whole_and_its_digest_covers_it(make_harness: Any, small_pieces: None) -> None:
    plans = [varied_plan(), *load_plans([SAMPLES / "rollback.json"])]
    h = run_plans(make_harness, plans)
    out = h.config.output_dir
    exclude = {"agent_assignments", "execution_order", "confidence_scores"}
    whole = (
        f'{{"run_id":{json.dumps(h.run_id)},"config":{h.config.model_dump_json()},'
        f'"plans":[{",".join(p.model_dump_json(exclude=exclude) for p in plans)}],"validations":[]}}'
    )
    data = (out / "run.json").read_bytes()
    assert data == (whole + "\n").encode("utf-8") == (h._run_record() + "\n").encode("utf-8")
    conn = sqlite3.connect(out / "journal.sqlite3")
    try:
        (digest,) = conn.execute("SELECT value FROM state WHERE key = ?", (RUN_RECORD_DIGEST,)).fetchone()
    finally:
        conn.close()
    assert digest == hashlib.sha256(data).hexdigest()


def test_actions_share_their_fields_set_and_names(tmp_path: Path) -> None:
    doc = {
        "plan_id": "shared",
        "actions": [
            {"id": "a", "agent": "agent_x", "tool": "form_fill", "confidence": 0.5, "args": {"k": 1}},
            {"id": "b", "agent": "agent_x", "tool": "form_fill", "confidence": 0.6, "args": {"k": 2}},
            {"id": "c", "agent": "agent_x", "tool": "form_fill", "confidence": 0.7},
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    (p,) = load_plans([path])
    a, b, c = p.actions
    assert a.agent is b.agent is c.agent and a.tool is c.tool  # one string per name, not per action
    assert a.model_fields_set is b.model_fields_set == {"id", "agent", "tool", "confidence", "args"}
    assert c.model_fields_set == {"id", "agent", "tool", "confidence"}
    assert c.model_dump(exclude_unset=True) == {"id": "c", "agent": "agent_x", "tool": "form_fill", "confidence": 0.7}
    edited = c.model_copy(update={"args": {"k": 3}})  # an operator's edit
    assert edited.model_fields_set == {"id", "agent", "tool", "confidence", "args"}
    assert c.model_fields_set == {"id", "agent", "tool", "confidence"}
    assert a.model_fields_set == {"id", "agent", "tool", "confidence", "args"}


def test_finished_actions_share_their_reason_texts(make_harness: Any) -> None:
    actions = [act(f"a{i}", agent=f"agent_{i % 2}", tool="math_compute", confidence=0.3) for i in range(4)]
    h = run_plans(make_harness, [plan(actions)])
    reasons = [r["reason"] for r in h.results[0].tool_results]
    assert reasons[0] == "MOCK succeeded; confidence 0.30 allows MOCK"
    assert all(r is reasons[0] for r in reasons)  # one string kept, not one per action
