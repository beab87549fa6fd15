"""Inputs that used to pass validation and then crash, or that hashed differently after a reload.

Every value in a plan must come back from `run.json` exactly as it was hashed (no NaN,
Infinity, lone surrogates or runaway nesting); confidence is a JSON number in [0, 1] and
nothing else; an empty plan list is bad input; files that are not regular files are
refused; option values are finite and in range. Each is refused before anything is
written: one line, exit 2, no output directory.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.cli import main
from core.canonical import MAX_DEPTH, NotCanonical, canonical_json, check_json_value
from core.contracts import ExecutionMode, standard_registry
from core.controller import ExecutionContext
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import PlannedAction, ToolExecutionPlan
from core.resume import parse_run_record

REGISTRY = standard_registry()


def _action(**extra: Any) -> dict[str, Any]:
    return {"id": "w", "agent": "data_agent", "tool": "database_write", "args": {}, "confidence": 0.9, **extra}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_PLANS = {
    "nan_argument": '{"plan_id": "p", "actions": [{"id": "w", "agent": "a", "tool": "database_write",'
    ' "args": {"amount": NaN}, "confidence": 0.9}]}',
    "infinity_argument": '{"plan_id": "p", "actions": [{"id": "w", "agent": "a", "tool": "database_write",'
    ' "args": {"amount": -Infinity}, "confidence": 0.9}]}',
    "overflowing_number": '{"plan_id": "p", "actions": [{"id": "w", "agent": "a", "tool": "database_write",'
    ' "args": {"amount": 1e999}, "confidence": 0.9}]}',
    "lone_surrogate": '{"plan_id": "p", "actions": [{"id": "w", "agent": "a", "tool": "database_write",'
    ' "args": {"name": "\\ud800"}, "confidence": 0.9}]}',
    "lone_surrogate_in_key": '{"plan_id": "p", "actions": [{"id": "w", "agent": "a", "tool": "database_write",'
    ' "args": {"\\udfff": 1}, "confidence": 0.9}]}',
    "lone_surrogate_in_description": '{"plan_id": "p", "description": "x\\udc00",'
    ' "actions": [{"id": "w", "agent": "a", "tool": "database_write", "confidence": 0.9}]}',
    "nested_256_levels": json.dumps({"plan_id": "p", "actions": [_action(args={"deep": _nested(256)})]}),
    "nested_just_too_deep": json.dumps({"plan_id": "p", "actions": [_action(args={"deep": _nested(MAX_DEPTH)})]}),
    "confidence_true": json.dumps({"plan_id": "p", "actions": [_action(confidence=True)]}),
    "confidence_text": json.dumps({"plan_id": "p", "actions": [_action(confidence="0.9")]}),
    "confidence_score_text": json.dumps(
        {"plan_id": "p", "execution_order": ["database_write"], "confidence_scores": {"database_write": "1"}}
    ),
    "latency_text": json.dumps({"plan_id": "p", "actions": [_action(simulate={"latency_ms": "5"})]}),
    "empty_list": "[]",
    "empty_plans": '{"plans": []}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PLANS))
def test_hostile_plan_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    plan_file = tmp_path / f"{name}.json"
    plan_file.write_text(HOSTILE_PLANS[name], encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(plan_file), "--out", str(out), "--approve-all"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("phase24: error:"), err
    assert plan_file.name in err
    assert "Traceback" not in err
    assert not out.exists()


def test_nesting_up_to_the_limit_is_accepted(tmp_path: Path) -> None:
    plan = ToolExecutionPlan.model_validate({"plan_id": "p", "actions": [_action(args={"d": _nested(MAX_DEPTH - 2)})]})
    assert plan.actions[0].args["d"]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_is_not_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    out = tmp_path / "out"
    assert main(["run", device, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and err.count("\n") == 1
    assert not out.exists()


def test_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    assert main(["run", str(fifo), "--out", str(tmp_path / "out")]) == 2
    assert "not a regular file" in capsys.readouterr().err
    # A directory of plans skips what is not a regular file.
    (tmp_path / "good.json").write_text(json.dumps({"plan_id": "p", "actions": [_action()]}), encoding="utf-8")
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "out2"), "--dry-run-only"]) == 0


def test_validations_file_that_is_a_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "p.json"
    plan_file.write_text(json.dumps({"plan_id": "p", "actions": [_action()]}), encoding="utf-8")
    assert main(["run", str(plan_file), "--validations", "/dev/zero", "--out", str(tmp_path / "o")]) == 2
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    [
        ["--retry-delay", "inf-inf"],
        ["--retry-delay", "nan"],
        ["--retry-delay", "0-1e9"],
        ["--approval-timeout", "nan"],
        ["--approval-timeout", "inf"],
        ["--live-floor", "nan"],
        ["--live-floor", "1.5"],
        ["--max-live", "-1"],
    ],
)
def test_option_values_are_validated_like_plan_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    plan_file = tmp_path / "p.json"
    plan_file.write_text(json.dumps({"plan_id": "p", "actions": [_action()]}), encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        code = main(["run", str(plan_file), "--out", str(out), *option])
        raise SystemExit(code)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert not out.exists()


def test_config_refuses_non_finite_values() -> None:
    for bad in (
        {"retry_delay_range_s": (math.inf, math.inf)},
        {"retry_delay_range_s": (0.0, math.nan)},
        {"approval_timeout_s": math.nan},
        {"confidence_threshold_for_live": math.nan},
        {"health_min_interval_s": math.inf},
    ):
        with pytest.raises(ValueError):
            Phase24ExecutionConfig.model_validate(bad)


# ---------------------------------------------------------------- the round-trip property

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "a\udfffb", "\U0001f600", "\x00", "\u202e"])
)
_json_like = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=24,
)


def _hash(plan: ToolExecutionPlan, action: PlannedAction) -> str:
    ctx = ExecutionContext(plan.plan_id, action, REGISTRY.get(action.tool), action.agent)
    return ctx.action_hash(ExecutionMode.LIVE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.dictionaries(st.text(max_size=8), _json_like, max_size=5))
def test_hash_of_reloaded_action_equals_hash_of_action(args: dict[str, Any]) -> None:
    """hash(reload(store(action))) == hash(action) for every plan the loader accepts."""
    try:
        plan = ToolExecutionPlan.model_validate({"plan_id": "p", "actions": [_action(args=args)]})
    except ValueError:
        with pytest.raises(NotCanonical):
            check_json_value(args)
        return
    harness = Phase24Harness(Phase24ExecutionConfig(), write_outputs=False, run_id="r1")
    harness.load_phase21_plans([plan])
    stored = harness._run_record()
    _, _, _, reloaded = parse_run_record(stored)
    assert _hash(reloaded[0], reloaded[0].actions[0]) == _hash(plan, plan.actions[0])
    assert canonical_json(reloaded[0].actions[0].args) == canonical_json(args)


def test_non_finite_arguments_are_never_hashed() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    with pytest.raises(ValueError):
        PlannedAction.model_validate(_action(args={"x": math.inf}))
