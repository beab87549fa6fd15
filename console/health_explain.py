"""Health explains itself: each metric's share of the score, its anomaly rule and its trend,
and for each anomaly the rule that fired. The formula and the thresholds are the core's
(core/monitor.py), read from there, never copied."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from console.run_view import RunView
from core.inert import inert
from core.monitor import ANOMALY_RULES, SCORE_TERMS, AnomalyRule

TREND_WINDOW = 10  # health updates a trend looks back
PERCENT = {"tool_success_rate", "rollback_frequency", "conflict_rate", "live_execution_ratio", "approval_rate"}
NOT_SCORED = {
    "execution_latency_ms": "not in the score",
    "live_execution_ratio": "not in the score",
}


def fraction(metric: str, value: float) -> float:
    """A reported metric (percent for most) as the 0..1 fraction the formula uses."""
    return value / 100 if metric in PERCENT else value


def shown(metric: str, value: float) -> str:
    return f"{value:g}%" if metric in PERCENT else f"{value:g}"


def condition(rule: AnomalyRule) -> str:
    limit = rule.threshold * rule.scale
    return f"{'<' if rule.below else '>'} {limit:g}{'%' if rule.scale == 100 else ''}"


def rule_text(rule: AnomalyRule) -> str:
    return f"{condition(rule)}: {rule.anomaly_type.value} (sev {rule.severity})"


def trend(history: Sequence[float], worse_when_higher: bool | None) -> Text:
    """The change over the last TREND_WINDOW updates, coloured by whether it is better."""
    if len(history) < 2:
        return Text("-", style="dim")
    past = history[max(0, len(history) - 1 - TREND_WINDOW)]
    change = history[-1] - past
    if abs(change) < 1e-9:
        return Text("→ steady", style="dim")
    arrow = "↑" if change > 0 else "↓"
    if worse_when_higher is None:
        style = ""
    else:
        style = "red" if (change > 0) == worse_when_higher else "green"
    return Text(f"{arrow} {change:+.4g}", style=style)


def explain(view: RunView) -> RenderableType:
    """The score as the sum of its terms, one row per metric, and the anomalies' rules."""
    if view.health_score is None:
        return Text("No health update yet: the score is computed once actions execute.")
    rules = {rule.metric: rule for rule in ANOMALY_RULES}
    intro = Text.assemble(
        ("Health ", "bold"),
        (f"{view.health_score:g} / 100 {view.health_tier}", "bold"),
        " = Σ points; a metric gives 100 × weight × its value as a fraction 0..1, or × (1 − it) for the"
        " metrics marked ↓ (higher is worse).\n",
        "Tiers: EXCELLENT ≥ 90, GOOD ≥ 75, FAIR ≥ 60, POOR below. Trend: change over the last "
        f"{TREND_WINDOW} updates (green better, red worse).",
    )
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("metric", no_wrap=True, min_width=20)
    for column in ("value", "weight", "points", "lost"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("anomaly rule", overflow="fold")
    table.add_column("trend", no_wrap=True)
    terms = {metric: (weight, worse) for metric, weight, worse in SCORE_TERMS}
    for metric, value in view.metrics.items():
        if metric == "system_health_score":
            continue
        rule = rules.get(metric)
        history = list(view.metric_history.get(metric, ()))
        if metric in terms:
            weight, worse = terms[metric]
            f = min(1.0, max(0.0, fraction(metric, value)))
            points = 100 * weight * (1 - f if worse else f)
            lost = 100 * weight - points
            table.add_row(
                metric + (" ↓" if worse else ""),
                shown(metric, value),
                f"{weight:.2f}",
                f"{points:.2f}",
                Text(f"{lost:.2f}", style="bold red" if lost >= 1 else ""),
                rule_text(rule) if rule else "-",
                trend(history, worse),
            )
        else:
            table.add_row(metric, shown(metric, value), "", "", "", "not in the score", trend(history, None))
    table.add_row(
        Text("score", style="bold"),
        Text(f"{view.health_score:g}", style="bold"),
        "1.00",
        "",
        "",
        "",
        trend(list(view.health_history), False),
    )
    anomalies = Text("\nAnomalies\n", style="bold")
    if not view.anomalies:
        anomalies.append("none: no rule fired (the rules are in the table's 'anomaly rule' column)", style="green")
    for anomaly in view.anomalies:
        rule = rules.get(str(anomaly.get("metric", "")))
        anomalies.append(f"▲ {inert(anomaly.get('anomaly_type', '?'), 40)}", style="bold red")
        anomalies.append(f" severity {inert(anomaly.get('severity', '?'), 4)}: ")
        anomalies.append(f"rule {rule.metric} {condition(rule)} fired: " if rule else "rule: ")
        anomalies.append(inert(anomaly.get("detail", ""), 200) + "\n")
    return Group(intro, Text(""), table, anomalies)


class HealthExplained(ModalScreen[None]):
    """Enter on the health pane (or the palette's "Explain health")."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, view: RunView) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        with Vertical(id="health-dialog"):
            with VerticalScroll():
                yield Static(explain(self.view), id="health-explained")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
