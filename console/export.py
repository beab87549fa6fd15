"""`ctrl+s`: the screen as SVG and the focused pane's rows (as filtered) as JSONL, saved in
the run's directory under `console_exports/`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import DataTable

from console.panes import ApprovalsPane, ConflictsPane, HealthPane, LogPane, Pane
from console.run_view import RunView

EXPORT_DIR = "console_exports"


def pane_rows(pane: Pane, view: RunView) -> Iterator[dict[str, Any]]:
    """The rows the pane shows (its filter applied), each as the event(s) behind it."""
    if isinstance(pane, LogPane):
        for event in pane.row_log.shown:
            yield event.model_dump(mode="json")
    elif isinstance(pane, ConflictsPane):
        table: DataTable[Any] = pane.query_one(DataTable)
        for key in table.rows:
            found = view.related.conflicts.get(key.value or "")
            if found is not None:
                detected, resolved = found
                yield {
                    **detected.model_dump(mode="json"),
                    "resolution": resolved.model_dump(mode="json") if resolved else None,
                }
    elif isinstance(pane, ApprovalsPane):
        table = pane.query_one(DataTable)
        for key in table.rows:
            request = view.pending.get(key.value or "")
            if request is not None:
                yield request.model_dump(mode="json")
    elif isinstance(pane, HealthPane) and view.health_score is not None:
        yield {
            "health_score": view.health_score,
            "health_assessment": view.health_tier,
            "metrics": view.metrics,
            "anomalies": view.anomalies,
            "history": list(view.health_history),
        }


def export_pane(app: App[Any], view: RunView, pane: Pane, run_dir: Path, now: datetime) -> tuple[Path, Path, int]:
    """Write both files; return their paths and the number of rows written."""
    folder = run_dir / EXPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = base = f"{pane.id or 'pane'}-{now.strftime('%Y%m%dT%H%M%S')}"
    n = 1
    while (folder / f"{stem}.svg").exists() or (folder / f"{stem}.jsonl").exists():
        n += 1
        stem = f"{base}-{n}"  # two exports within a second (or at one instant of a replay)
    svg = folder / f"{stem}.svg"
    rows = folder / f"{stem}.jsonl"
    svg.write_text(app.export_screenshot(title=f"{app.title}: {pane.title}"), encoding="utf-8")
    count = 0
    with rows.open("w", encoding="utf-8") as out:
        for row in pane_rows(pane, view):
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return svg, rows, count
