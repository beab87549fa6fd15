"""The README's promise: a small plugin wraps your own function, a plan runs against it, the
operator approves the LIVE step in the console, and the effect happens exactly once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from console import exit_codes
from console.app import ConsoleGate, make_app
from console.cli import main
from core.clock import ManualClock
from core.executor_config import combined_spec, load_setup
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.journal import JOURNAL_FILE
from core.plans import load_plans
from core.plugins import ENTRY_POINT_GROUP
from tests.console_fixtures import FIXED_START, core_done, running, wait_exit, wait_modal, wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "guestbook_plugin"
PLAN = EXAMPLE / "plan.json"
REF = "phase24_guestbook:plugin"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example importable, and "installed": its entry point as `pip install -e` would declare it."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    info = tmp_path / "site" / "phase24_guestbook-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: phase24-guestbook\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nguestbook = {REF}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_the_example_declares_the_entry_point_it_is_found_by() -> None:
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in text and f'guestbook = "{REF}"' in text


def test_the_example_plugin_is_short() -> None:
    code = [
        line
        for line in (EXAMPLE / "phase24_guestbook.py").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", '"""'))
    ]
    assert len(code) <= 36, len(code)


def test_headless_the_signature_is_denied_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Denied by the headless policy: the run is PARTIAL (exit 7), nothing is written.
    assert main(["run", str(PLAN), "--executors", REF, "--out", str(out)]) == exit_codes.PARTIAL
    result = json.loads((out / "tool_execution_log.jsonl").read_text().splitlines()[0])["result"]["tool_results"][0]
    assert result["final_state"] == "LOCKED" and result["mode"] == "DRY_RUN"
    assert not (out / "world" / "guestbook.txt").exists()


async def test_approved_in_the_console_the_effect_happens_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = combined_spec(EXAMPLE / "guestbook.toml", [])
    assert spec is not None
    setup = load_setup(spec)
    gate = ConsoleGate()
    harness = Phase24Harness(
        Phase24ExecutionConfig(output_dir=out, retry_delay_range_s=(0.0, 0.0)),
        gate=gate,
        clock=ManualClock(FIXED_START),
        registry=setup.registry,
        run_id="guestbook_run",
    )
    harness.use_executors(setup)
    harness.load_phase21_plans(load_plans([PLAN], setup.registry))
    app = make_app(harness, gate, now=harness.clock.now)
    async with running(app, harness) as pilot:
        assert await wait_modal(pilot, app) == "sign"
        await pilot.press("y")
        await wait_until(pilot, lambda: core_done(app), "the run to finish")
        await pilot.press("q")
        await wait_exit(pilot, app)

    assert (out / "world" / "guestbook.txt").read_text() == "Ada: Lovely console.\n"
    result = harness.results[0].tool_results[0]
    assert result["final_state"] == "COMPLETED" and result["mode"] == "LIVE" and result["simulated"] is False
    assert result["approval"]["approved"] is True and result["approval"]["decided_by"] == "operator"
    conn = sqlite3.connect(out / JOURNAL_FILE)
    try:
        assert conn.execute("SELECT action_id, status FROM intents").fetchall() == [("sign", "DONE")]
    finally:
        conn.close()
    assert harness.summary["backends"] == {"guestbook": ["guestbook_sign"]}
