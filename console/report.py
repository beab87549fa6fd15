"""The headless run's summary as Rich tables. Untrusted text is made inert and never
parsed as markup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.inert import inert
from core.outputs import OPERATOR_DECISIONS, REPORT_FILES

TIER_STYLE = {"EXCELLENT": "bold green", "GOOD": "green", "FAIR": "yellow", "POOR": "bold red"}
STATUS_STYLE = {
    "SUCCEEDED": "green",
    "PARTIAL": "yellow",
    "LOCKED": "bold red",
    "INTERRUPTED": "bold yellow",
    "FAILED": "bold red",
    "REJECTED": "yellow",
}


def t(value: object, style: str = "") -> Text:
    return Text(inert(value, 200), style=style)


def print_summary(
    console: Console,
    summary: dict[str, Any],
    conflicts: dict[str, Any],
    health: dict[str, Any],
    out_dir: Path,
) -> None:
    # Fits 80 columns: no vertical rules, short headers, the status never cut, a long plan id
    # folded onto a second line rather than cut, and each plan's note on its own line below.
    plans = Table(title="Plans", title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False)
    plans.add_column("plan", overflow="fold", min_width=16)
    plans.add_column("status", no_wrap=True, min_width=max(map(len, STATUS_STYLE)))
    for column in ("ok", "failed", "held", "cancel", "confl", "rollb"):
        plans.add_column(column, justify="right", no_wrap=True)
    notes: list[Text] = []
    for plan in summary["plans"]:
        plans.add_row(
            t(plan["plan_id"]),
            t(plan["status"], STATUS_STYLE.get(plan["status"], "")),
            t(plan["successful"]),
            t(plan["failed"]),
            t(plan["held"]),
            t(plan["cancelled"]),
            t(plan["conflicts"]),
            t(plan["rollbacks"]),
        )
        if plan.get("reason"):
            notes.append(Text.assemble((inert(plan["plan_id"], 80), "bold"), ": ", inert(plan["reason"], 400)))
    console.print(plans)
    for note in notes:
        console.print(note)

    table = Table(title="Conflicts", title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    table.add_column("strategy")
    table.add_column("count", justify="right")
    types = list(conflicts["by_type"].items())
    strategies = list(conflicts["by_resolution_strategy"].items())
    for i in range(max(len(types), len(strategies))):
        a = types[i] if i < len(types) else ("", "")
        b = strategies[i] if i < len(strategies) else ("", "")
        table.add_row(t(a[0]), t(a[1]), t(b[0]), t(b[1]))
    console.print(table)

    tier = str(health["health_assessment"])
    metrics = Table(
        title=Text.assemble("Health ", (f"{health['health_score']} {tier}", TIER_STYLE.get(tier, ""))),
        title_justify="left",
    )
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in health["metrics"].items():
        metrics.add_row(t(name), t(value))
    console.print(metrics)

    if health["anomalies"]:
        anomalies = Table(title="Anomalies", title_justify="left")
        anomalies.add_column("type")
        anomalies.add_column("severity", justify="right")
        anomalies.add_column("detail")
        for anomaly in health["anomalies"]:
            anomalies.add_row(t(anomaly["anomaly_type"], "bold red"), t(anomaly["severity"]), t(anomaly["detail"]))
        console.print(anomalies)
    else:
        console.print(Text("Anomalies: none", style="green"))

    console.print(
        Text.assemble(
            ("Run ", ""),
            (inert(summary["pipeline_id"]), "bold"),
            " ",
            (summary.get("status", "?"), STATUS_STYLE.get(summary.get("status", ""), "bold")),
            f": {summary['plans_successful']}/{summary['plans_processed']} plans succeeded, "
            f"{summary['total_tools_executed']} actions executed, {summary['live_executions']} LIVE, "
            f"{summary['total_conflicts']} conflicts, {summary['total_rollbacks']} rollbacks",
            (" (LOCKED)" if summary["locked"] else "", "bold red"),
            (" (interrupted)" if summary["interrupted"] else "", "yellow"),
        )
    )
    if summary.get("storage_error"):
        console.print(t(f"Storage failure, failed closed: {summary['storage_error']}", "bold red"))
    console.print(t(summary["simulation_note"], "dim"))
    files = ", ".join((*REPORT_FILES, OPERATOR_DECISIONS))
    console.print(Text(f"Outputs in {inert(out_dir)}: {files}", style="dim"))
