"""The headless run's summary tables fit an 80-column terminal without cutting what matters."""

from __future__ import annotations

import io
import json
from pathlib import Path

from conftest import SAMPLES
from rich.console import Console

from console.cli import main
from console.report import print_summary


def test_summary_tables_fit_80_columns_and_cut_no_status(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plans = [str(SAMPLES / name) for name in ("approvals.json", "conflicts.json", "rollback.json")]
    main(["run", *plans, "--out", str(out), "--retry-delay", "0"])
    summary = json.loads((out / "orchestration_summary.json").read_text())
    # A long plan id and a long failure note, as a real run may have.
    summary["plans"][0]["plan_id"] = "a_plan_with_a_rather_long_identifier_2024"
    summary["plans"][0]["reason"] = "x" * 150
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    print_summary(
        console,
        summary,
        json.loads((out / "tool_conflicts.json").read_text()),
        json.loads((out / "system_health.json").read_text()),
        out,
    )
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut: long values fold onto the next line
    for plan in summary["plans"]:
        assert plan["status"] in text
    for header in ("status", "ok", "failed", "held", "cancel", "confl", "rollb"):
        assert header in text
    assert "x" * 60 in text.replace("\n", "")
