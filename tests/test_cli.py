"""The headless `phase24 run` command: exit codes, files, one-line errors, inert output."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLES, act, read_jsonl

from console.cli import build_parser, main
from core.outputs import OPERATOR_DECISIONS, REPORT_FILES

HOSTILE = "Hi\x1b[31m RED \x1b[0m \u202egnp.exe \x07bell"


def run_cli(*args: str) -> int:
    return main(["run", *args, "--retry-delay", "0"])


def write_plan(path, actions, plan_id="cli_plan", **extra):
    path.write_text(json.dumps({"plan_id": plan_id, "actions": actions, **extra}), encoding="utf-8")
    return path


def assert_no_raw_controls(text: str) -> None:
    assert "\x1b[31m" not in text
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "\x07" not in text


def test_run_happy_path_returns_0_and_writes_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(str(SAMPLES / "happy_path.json"), "--out", str(out)) == 0
    names = {f.name for f in out.iterdir()}
    assert {*REPORT_FILES, OPERATOR_DECISIONS} <= names
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["plans_processed"] == 1
    assert summary["plans_successful"] == 1
    assert summary["total_tools_executed"] == 7
    assert len(read_jsonl(out / "tool_execution_log.jsonl")) == 1
    captured = capsys.readouterr()
    assert "happy_path" in captured.out
    assert "7 actions executed" in captured.out
    assert captured.err == ""


def test_run_rollback_returns_1(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(str(SAMPLES / "rollback.json"), "--out", str(out)) == 1
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["plans_failed"] == 1
    assert summary["total_rollbacks"] == 3
    lines = read_jsonl(out / "rollback_events.jsonl")
    assert lines[0]["undone"] == ["note_total", "fill_card", "fill_name"]
    assert "Traceback" not in capsys.readouterr().err


def test_malformed_plan_returns_2_with_one_line(tmp_path, capsys):
    bad = write_plan(tmp_path / "bad_plan.json", [act("a", confidence=7)])
    out = tmp_path / "out"
    assert run_cli(str(bad), "--out", str(out)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("phase24: error:")
    assert "bad_plan.json" in lines[0]
    assert "actions[0].confidence" in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()  # nothing was started


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"plan_id": "p", "actions": [', "not valid JSON at line 1"),
        (json.dumps({"plan_id": "p", "actions": [act("a", tool="teleport")]}), "actions[0].tool"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_other_bad_inputs_return_2(tmp_path, capsys, content, needle):
    path = tmp_path / "input.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    assert run_cli(str(path), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("phase24: error:") and err.count("\n") == 1
    assert "input.json" in err and needle in err
    assert "Traceback" not in err


def test_missing_plan_file_returns_2(tmp_path, capsys):
    assert run_cli(str(tmp_path / "absent.json"), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("phase24: error:") and "absent.json" in err and "file not found" in err


def test_non_empty_out_returns_2(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old_run.txt").write_text("keep me")
    plan_file = write_plan(tmp_path / "p.json", [act("a")])
    assert run_cli(str(plan_file), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("phase24: error:")
    assert "not empty" in err
    assert [f.name for f in out.iterdir()] == ["old_run.txt"]  # untouched


def test_bad_option_value_returns_2(tmp_path, capsys):
    plan_file = write_plan(tmp_path / "p.json", [act("a")])
    assert run_cli(str(plan_file), "--out", str(tmp_path / "out"), "--live-floor", "1.5") == 2
    err = capsys.readouterr().err
    assert err.startswith("phase24: error:") and "confidence_threshold_for_live" in err


def test_hostile_text_in_args_is_not_printed_raw(tmp_path, capsys):
    plan_file = write_plan(
        tmp_path / "hostile.json",
        [act("a", args={"body": HOSTILE}), act("b", agent="agent\x1b[31mX", args={"note": HOSTILE})],
    )
    assert run_cli(str(plan_file), "--out", str(tmp_path / "out")) == 0
    captured = capsys.readouterr()
    assert_no_raw_controls(captured.out)
    assert_no_raw_controls(captured.err)
    # the files keep the data as data (JSON-escaped), not as terminal codes
    raw = (tmp_path / "out" / "tool_execution_log.jsonl").read_text(encoding="utf-8")
    assert all(json.loads(line) for line in raw.splitlines())


def test_hostile_text_in_rejection_reason_is_escaped(tmp_path, capsys):
    plan_file = write_plan(tmp_path / "p.json", [act("a")], plan_id="cli_plan", phase22_validation_id="v1")
    validations = tmp_path / "v.json"
    validations.write_text(
        json.dumps([{"validation_id": "v1", "plan_id": "cli_plan", "valid": False, "issues": [HOSTILE]}]),
        encoding="utf-8",
    )
    code = main(
        ["run", str(plan_file), "--validations", str(validations), "--out", str(tmp_path / "out"), "--retry-delay", "0"]
    )
    assert code == 0  # a rejected plan is not a failed plan
    captured = capsys.readouterr()
    assert "REJECTED" in captured.out or "REJECT" in captured.out
    assert_no_raw_controls(captured.out)


def test_hostile_text_in_error_message_is_escaped(tmp_path, capsys):
    bad = tmp_path / "evil\x1b[31m\u202e.json"
    assert run_cli(str(bad), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("phase24: error:")
    assert_no_raw_controls(err)
    assert "\\x1b" in err and "\\u202e" in err  # shown, escaped


def test_dry_run_only_flag(tmp_path):
    out = tmp_path / "out"
    assert run_cli(str(SAMPLES / "happy_path.json"), "--out", str(out), "--dry-run-only") == 0
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["live_executions"] == 0


def test_parser_options():
    args = build_parser().parse_args(["run", "a.json", "--retry-delay", "1-3", "--approve-all", "--max-live", "2"])
    assert args.retry_delay == (1.0, 3.0)
    assert args.approve_all is True and args.max_live == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "a.json", "--retry-delay", "5-1"])
