"""Plan and validation files: every malformed input is a PlanError naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, VALIDATIONS, act

from core.contracts import standard_registry
from core.errors import Phase24Error, PlanError
from core.plans import (
    ToolExecutionPlan,
    expand_plan_paths,
    load_plan_file,
    load_plans,
    load_validations,
    parse_plans,
)


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def plan_error(paths, registry=None) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plans(paths, registry or standard_registry())
    assert isinstance(info.value, Phase24Error)
    return info.value


def single(*actions, **extra):
    return {"plan_id": "p", "actions": list(actions), **extra}


def test_sample_plans_load():
    plans = load_plans([SAMPLES], standard_registry())
    assert [p.plan_id for p in plans] == [
        "approvals",
        "conflicts",
        "happy_path",
        "large_10000",
        "local_backends",
        "rollback",
    ]
    assert [f.name for f in expand_plan_paths([SAMPLES])] == [
        "approvals.json",
        "conflicts.json",
        "happy_path.json",
        "large.json",
        "local_backends.json",
        "rollback.json",
    ]
    happy = plans[2]
    assert happy.phase21_plan_id == "p21-happy-001"
    assert happy.execution_order == [a.tool for a in happy.actions]
    assert happy.agent_assignments["planner"] == ["goal_query", "text_extract", "form_fill"]
    assert happy.confidence_scores["math_compute"] == 0.6
    validations = load_validations(VALIDATIONS)
    assert {v.validation_id for v in validations} == {"v22-happy-001", "v22-approvals-001", "v22-conflicts-001"}


def test_bad_confidence_names_field(tmp_path):
    path = write(tmp_path, "conf.json", single(act("a", confidence=1.5)))
    err = plan_error([path])
    assert err.path == str(path)
    assert str(path) in str(err)
    assert "actions[0].confidence" in str(err)
    assert "plans[0]" not in str(err)  # a single-plan file has no `plans` key


def test_bad_confidence_in_plan_list_names_plan_index(tmp_path):
    path = write(tmp_path, "list.json", [single(act("a")), {**single(act("b", confidence=-0.1)), "plan_id": "q"}])
    err = plan_error([path])
    assert "plans[1].actions[0].confidence" in str(err)


def test_unknown_tool(tmp_path):
    path = write(tmp_path, "tool.json", single(act("a"), act("b", tool="teleport")))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "actions[1].tool" in str(err)
    assert "teleport" in str(err)
    # without a registry the file parses (tools are checked against a registry)
    assert load_plan_file(path)[0].actions[1].tool == "teleport"


def test_unknown_dependency(tmp_path):
    path = write(tmp_path, "dep.json", single(act("a", depends_on=["ghost"])))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "depends on unknown action 'ghost'" in str(err)


def test_dependency_cycle(tmp_path):
    path = write(tmp_path, "cycle.json", single(act("a", depends_on=["b"]), act("b", depends_on=["a"])))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "dependency cycle" in str(err)
    assert "a -> b -> a" in str(err) or "b -> a -> b" in str(err)


def test_cycle_through_agent_order_is_refused(tmp_path):
    """An agent runs its actions in plan order, so depending on its own later action deadlocks."""
    path = write(tmp_path, "order.json", single(act("a", depends_on=["b"]), act("b")))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "dependency cycle" in str(err)
    # the same dependency across two agents is fine
    ok = write(tmp_path, "ok.json", single(act("a", agent="x", depends_on=["b"]), act("b", agent="y")))
    assert [a.id for a in load_plans([ok])[0].actions] == ["a", "b"]


def test_self_dependency(tmp_path):
    path = write(tmp_path, "self.json", single(act("a", depends_on=["a"])))
    assert "depends on itself" in str(plan_error([path]))


def test_duplicate_action_ids(tmp_path):
    path = write(tmp_path, "dup.json", single(act("a"), act("a")))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "'a' is used twice" in str(err)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (single(act("a", depends_on=["ghost"])), "actions[0].depends_on"),
        (single(act("a"), act("a")), "actions[1].id"),
    ],
    ids=["unknown-dependency", "duplicate-id"],
)
def test_plan_level_errors_name_the_field(tmp_path, content, field):
    path = write(tmp_path, "bad.json", content)
    message = str(plan_error([path]))
    assert "plans[0]" not in message
    assert field in message


def test_duplicate_plan_ids_across_files(tmp_path):
    first = write(tmp_path, "one.json", single(act("a")))
    second = write(tmp_path, "two.json", single(act("b")))
    err = plan_error([first, second])
    assert err.path == str(second)
    assert "plan_id" in str(err) and str(first) in str(err)


def test_invalid_json_gives_line_and_column(tmp_path):
    path = write(tmp_path, "broken.json", '{"plan_id": "p",\n  "actions": [}')
    err = plan_error([path])
    assert str(path) in str(err)
    assert "not valid JSON at line 2, column 15" in str(err)


def test_not_utf8(tmp_path):
    path = write(tmp_path, "latin1.json", '{"plan_id": "caf\u00e9"}'.encode("latin-1"))
    err = plan_error([path])
    assert str(path) in str(err)
    assert "not UTF-8" in str(err)


def test_missing_file(tmp_path):
    err = plan_error([tmp_path / "nope.json"])
    assert str(tmp_path / "nope.json") in str(err)
    assert "file not found" in str(err)


def test_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a plan")
    err = plan_error([empty])
    assert err.path == str(empty)
    assert "no *.json plan files" in str(err)


def test_directory_given_as_file(tmp_path):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(PlanError, match="is a directory"):
        load_plan_file(folder)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("42", "top level must be an object or a list"),
        (single(), "needs at least one action"),
        (single(act("a", colour="red")), "actions[0].colour"),
        (single(act("a", agent="")), "actions[0].agent"),
        (single(act("bad id!")), "actions[0].id"),
        ({"actions": [act("a")]}, "plan_id"),
        (single(act("a", simulate={"latency_ms": -1})), "actions[0].simulate.latency_ms"),
        (
            single(act("a", agent="ghost"), agents={"alpha": {"permissions": []}}),
            "names agent 'ghost', not declared",
        ),
        ("[1, 2]", "plans[0]"),
    ],
)
def test_other_malformed_plans(tmp_path, content, expected):
    path = write(tmp_path, "bad.json", content)
    err = plan_error([path])
    assert str(path) in str(err)
    assert expected in str(err)


def test_many_problems_are_summarised(tmp_path):
    actions = [act(f"a{i}", confidence=2.0) for i in range(12)]
    err = plan_error([write(tmp_path, "many.json", single(*actions))])
    assert len(err.problems) == 12
    assert "(and 4 more)" in str(err)


def test_report_style_plan_expands_into_actions(tmp_path):
    report = {
        "plan_id": "report_style",
        "phase21_plan_id": "p21-x",
        "phase22_validation_id": "v22-x",
        "agent_assignments": {"alpha": ["vision_inspect", "form_fill"], "beta": ["button_click"]},
        "execution_order": ["vision_inspect", "form_fill", "button_click", "math_compute"],
        "confidence_scores": {"vision_inspect": 0.9, "form_fill": 0.7, "button_click": 0.85},
    }
    [p] = load_plans([write(tmp_path, "report.json", report)], standard_registry())
    assert [(a.id, a.agent, a.tool, a.confidence) for a in p.actions] == [
        ("step1", "alpha", "vision_inspect", 0.9),
        ("step2", "alpha", "form_fill", 0.7),
        ("step3", "beta", "button_click", 0.85),
        ("step4", "agent_default", "math_compute", 0.0),  # unscored: stays MOCK
    ]
    assert [a.depends_on for a in p.actions] == [(), ("step1",), ("step2",), ("step3",)]
    assert p.execution_order == report["execution_order"]
    assert p.agent_assignments == report["agent_assignments"]
    assert (p.phase21_plan_id, p.phase22_validation_id) == ("p21-x", "v22-x")


def test_report_style_bad_score_names_field(tmp_path):
    report = {"plan_id": "r", "execution_order": ["math_compute"], "confidence_scores": {"math_compute": 3}}
    err = plan_error([write(tmp_path, "r.json", report)])
    assert "confidence_scores" in str(err)


def test_report_style_unknown_tool(tmp_path):
    report = {"plan_id": "r", "execution_order": ["math_compute", "teleport"]}
    err = plan_error([write(tmp_path, "r.json", report)])
    assert "actions[1].tool" in str(err) and "teleport" in str(err)


def test_plans_key_and_list_forms(tmp_path):
    as_list = write(tmp_path, "a.json", [single(act("a"))])
    wrapped = write(tmp_path, "b.json", {"plans": [{**single(act("b")), "plan_id": "q"}]})
    plans = load_plans([as_list, wrapped])
    assert [p.plan_id for p in plans] == ["p", "q"]


def test_parse_plans_direct():
    plans = parse_plans(single(act("a")), "inline")
    assert isinstance(plans[0], ToolExecutionPlan)
    with pytest.raises(PlanError) as info:
        parse_plans("text", "inline")
    assert info.value.path == "inline"


def test_validations_errors(tmp_path):
    good = write(tmp_path, "v.json", [{"validation_id": "v1", "plan_id": "p", "valid": False}])
    [v] = load_validations(good)
    assert v.valid is False and v.issues == ()
    bad = write(
        tmp_path, "vbad.json", {"validations": [{"validation_id": "v1", "plan_id": "p", "predicted_success": 2}]}
    )
    with pytest.raises(PlanError) as info:
        load_validations(bad)
    assert str(bad) in str(info.value)
    assert "validations[0].predicted_success" in str(info.value)
    with pytest.raises(PlanError, match="top level"):
        load_validations(write(tmp_path, "vnum.json", "3"))
    with pytest.raises(PlanError, match="file not found"):
        load_validations(tmp_path / "missing.json")
