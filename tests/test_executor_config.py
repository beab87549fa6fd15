"""Choosing executors: the TOML config, --executors, plugin discovery, and clear errors for bad plugins."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from console import exit_codes
from console.cli import main
from core.clock import ManualClock
from core.errors import ConfigError
from core.executor_config import combined_spec, find_plugin, load_setup, read_config
from core.executors import ExecutorRegistry
from core.plugins import ENTRY_POINT_GROUP
from tests.conftest import SAMPLES, act

SAMPLE_PLAN = SAMPLES / "local_backends.json"
SAMPLE_CONFIG = SAMPLES / "local_backends.toml"

PLUGIN_HEADER = """
from core.bindings import ToolBinding
from core.contracts import RiskLevel, ToolContract
from core.function_binding import function_binding
from core.plugins import ExecutorPlugin
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def cli(*args: str) -> int:
    return main([*args, "--retry-delay", "0"])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("phase24: error: ")
    return lines[0]


def test_the_sample_runs_real_effects_inside_out_world(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The headless policy denies its HIGH-risk escalations: the run is PARTIAL (exit 7).
    assert cli("run", str(SAMPLE_PLAN), "--config", str(SAMPLE_CONFIG), "--out", str(out)) == exit_codes.PARTIAL
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["simulated"] is False
    assert summary["backends"] == {
        "files": ["file_operation", "form_fill", "text_extract"],
        "sqlite": ["database_write", "math_compute"],
    }
    assert "Real executors were bound" in summary["simulation_note"]
    world = out / "world"
    assert (world / "files" / "reports" / "q3.txt").read_text() == "Q3 revenue: 1.2M\n"
    assert json.loads((world / "files" / "forms" / "signup.json").read_text()) == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
    }
    conn = sqlite3.connect(world / "db.sqlite3")
    try:
        assert conn.execute("SELECT name, value FROM totals").fetchall() == [("q3_revenue", 1200000.0)]
        assert conn.execute("SELECT * FROM contacts").fetchall() == [], "HIGH risk: denied without a human"
    finally:
        conn.close()
    assert not (world / "files" / "archive").exists(), "HIGH risk: denied without a human"
    assert json.loads((out / "executors.json").read_text())["plugins"] == ["files", "sqlite"]
    results = json.loads((out / "tool_execution_log.jsonl").read_text().splitlines()[0])["result"]["tool_results"]
    assert {r["action_id"]: r["simulated"] for r in results}["total"] is False


def test_approve_all_is_refused_with_real_executors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = cli("run", str(SAMPLE_PLAN), "--config", str(SAMPLE_CONFIG), "--out", str(out), "--approve-all")
    assert code == 2
    line = one_line_error(capsys)
    assert "--approve-all is refused" in line and "file_operation" in line
    assert not (out / "world").exists() and not (out / "run.json").exists(), "refused before anything ran"


def test_approve_all_stays_for_simulated_runs(tmp_path: Path) -> None:
    assert cli("run", str(SAMPLES / "happy_path.json"), "--out", str(tmp_path / "o"), "--approve-all") == 0


def test_executors_on_the_command_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    args = {"op": "write", "path": "note.txt", "content": "hi"}
    plan.write_text(
        json.dumps(
            {
                "plan_id": "p",
                "actions": [
                    act("t", tool="text_extract", args={"text": "hi", "target": "t.txt"}),
                    act("f", tool="file_operation", args=args, confidence=0.95),
                ],
            }
        )
    )
    out = tmp_path / "out"
    assert cli("run", str(plan), "--executors", "files", "--out", str(out)) == exit_codes.PARTIAL
    assert (out / "world" / "files" / "t.txt").read_text() == "hi"
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["backends"] == {"files": ["file_operation", "form_fill", "text_extract"]}


def test_config_and_executors_combine() -> None:
    spec = combined_spec(SAMPLE_CONFIG, ["outbox,files", "sqlite"])
    assert spec is not None and spec.plugins == ("files", "sqlite", "outbox")
    assert combined_spec(None, []) is None


def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> str:
    write(tmp_path / "plugins" / f"{name}.py", PLUGIN_HEADER + textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    return f"{name}:PLUGIN"


BAD_PLUGINS = {
    "not_a_plugin": ("PLUGIN = 42\n", "is a int, not a core.plugins.ExecutorPlugin"),
    "lowers_risk": (
        """
        PLUGIN = ExecutorPlugin(
            name="lowers_risk",
            bind=lambda ctx: [],
            contracts=(ToolContract(name="database_write", description="d", risk_level=RiskLevel.MEDIUM,
                                    reversible=True, required_permissions=("db.write",)),),
        )
        """,
        "lowers its risk from HIGH to MEDIUM",
    ),
    "unknown_tool": (
        """
        PLUGIN = ExecutorPlugin(name="unknown_tool", bind=lambda ctx: [function_binding("no_such_tool", live=print)])
        """,
        "unknown tool 'no_such_tool'",
    ),
    "no_compensate": (
        """
        PLUGIN = ExecutorPlugin(name="no_compensate", bind=lambda ctx: [function_binding("form_fill", live=print)])
        """,
        "reversible but its binding has no compensate step",
    ),
    "bind_raises": (
        """
        def bind(ctx):
            raise RuntimeError("no credentials configured")
        PLUGIN = ExecutorPlugin(name="bind_raises", bind=bind)
        """,
        "bind failed: RuntimeError: no credentials configured",
    ),
    "returns_junk": (
        """
        PLUGIN = ExecutorPlugin(name="returns_junk", bind=lambda ctx: ["form_fill"])
        """,
        "bind returned a str, not a ToolBinding",
    ),
    "bad_dependency": (
        """
        PLUGIN = ExecutorPlugin(
            name="bad_dependency",
            bind=lambda ctx: [],
            contracts=(ToolContract(name="sms_send", description="d", risk_level=RiskLevel.HIGH, reversible=False,
                                    requires_approval=True, dependencies=("sms_lookup",)),),
        )
        """,
        "sms_send depends on unknown tool 'sms_lookup'",
    ),
    "import_fails": ("import not_installed_anywhere\nPLUGIN = None\n", "cannot import 'import_fails'"),
}


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    body, expected = BAD_PLUGINS[name]
    ref = plugin_module(tmp_path, monkeypatch, name, body)
    code = cli("run", str(SAMPLES / "happy_path.json"), "--executors", ref, "--out", str(tmp_path / "out"))
    assert code == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out").exists(), "nothing ran"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("plugins = [", "not valid TOML"),
        ('plugins = "files"', "plugins: expected a list"),
        ('plugins = ["files"]\ncolour = 1', "unknown key 'colour'"),
        (
            'plugins = ["files"]\n[executors.sqlite]\ndatabase = "x"',
            "[executors.sqlite] configures a plugin that is not loaded",
        ),
        ('plugins = ["nope"]', "plugin 'nope': not a shipped backend"),
        ('plugins = ["nomodule:thing"]', "cannot import 'nomodule'"),
        ('plugins = ["core.contracts:nothing"]', "has no attribute 'nothing'"),
        ('plugins = ["files"]\n[executors.files]\nroot = 5', "executors.files.root: expected str, got int"),
        ('plugins = ["files"]\n[executors.files]\ntools = ["button_click"]', "has no tool 'button_click'"),
        ('plugins = ["outbox"]\n[executors.outbox]\ntransport = "pigeon"', "expected 'smtp' or 'http'"),
        ('plugins = ["outbox"]\n[executors.outbox]\ntransport = "http"', "executors.outbox.url: required setting"),
        ('plugins = ["sqlite"]\n[executors.sqlite]\ninit_sql = "CREATE TABLE t (x"', "init_sql: not complete SQL"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    config = write(tmp_path / "bad.toml", toml)
    code = cli("run", str(SAMPLES / "happy_path.json"), "--config", str(config), "--out", str(tmp_path / "out"))
    assert code == 2
    line = one_line_error(capsys)
    assert expected in line


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert cli("run", str(SAMPLES / "happy_path.json"), "--config", str(missing)) == 2
    assert f"{missing}: no such config file" in one_line_error(capsys)


def test_a_plugin_is_found_through_its_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    write(
        site / "stamp_plugin.py",
        PLUGIN_HEADER
        + textwrap.dedent(
            """
        STAMP = ToolContract(name="stamp_page", description="Stamp a page", risk_level=RiskLevel.MEDIUM,
                             reversible=False)
        PLUGIN = ExecutorPlugin(name="stamp", contracts=(STAMP,),
                                bind=lambda ctx: [function_binding("stamp_page", live=lambda call: None)])
        """
        ),
    )
    write(site / "stamp_plugin-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: stamp-plugin\nVersion: 1.0\n")
    write(
        site / "stamp_plugin-1.0.dist-info" / "entry_points.txt",
        f"[{ENTRY_POINT_GROUP}]\nstamp = stamp_plugin:PLUGIN\n",
    )
    monkeypatch.syspath_prepend(str(site))
    plugin = find_plugin("stamp")
    assert plugin.name == "stamp"
    spec = combined_spec(None, ["stamp"])
    assert spec is not None
    setup = load_setup(spec)
    assert setup.registry.get("stamp_page").risk_level.value == "MEDIUM"


def test_read_config_reads_the_sample() -> None:
    spec = read_config(SAMPLE_CONFIG)
    assert spec.plugins == ("files", "sqlite")
    assert spec.settings["sqlite"]["tools"] == ["database_write", "math_compute"]


def test_two_plugins_may_not_bind_the_same_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = plugin_module(
        tmp_path,
        monkeypatch,
        "second_files",
        """
        from core.backends.files import _bind
        PLUGIN = ExecutorPlugin(name="second_files", bind=_bind)
        """,
    )
    spec = combined_spec(None, ["files", ref])
    assert spec is not None
    setup = load_setup(spec)
    with pytest.raises(ConfigError, match="plugins 'files' and 'second_files' both bind tool 'file_operation'"):
        setup.bind(ExecutorRegistry(setup.registry, ManualClock()), tmp_path / "world")


def test_the_console_takes_the_same_executor_options() -> None:
    from console.cli import build_parser

    args = build_parser().parse_args(["console", "p.json", "--config", "c.toml", "--executors", "files"])
    assert args.config == Path("c.toml") and args.executors == ["files"]
