"""The console's panes. Each renders from the `RunView`; none parses markup from data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static
from textual.widgets.data_table import ColumnKey

from console.row_log import RowLog, matches
from console.run_view import ConflictRow, RunView
from core.inert import inert

TIER_STYLE = {"EXCELLENT": "bold green", "GOOD": "green", "FAIR": "bold yellow", "POOR": "bold red"}
SEVERITY_STYLE = {6: "yellow", 7: "bold yellow", 8: "bold red"}
LOG_LINES = 2000
OUTCOME_LABEL = {
    "APPROVE": "APPROVED",
    "DENY": "DENIED",
    "EXPIRED": "EXPIRED",
    "DENIED_EARLIER": "DENIED EARLIER",
    "DENY_AND_STOP": "DENIED + AGENT STOPPED",
}


class Readout(Static):
    """A Static updated on every tick that asks for a layout pass only when its height may change.

    `Static.update` lays out the whole screen by default, and on a large screen that costs
    more than everything else a tick draws; a readout's size rarely changes. A readout with
    a fixed height (in cells) and a width that does not follow its text never changes size;
    one with an automatic height keeps it while its text has the same number of lines and
    no line wraps at the current width; a hidden one is measured when it is shown. Only then
    is the layout skipped (never for the first text a readout shows).
    """

    def __init__(self, content: Text | str = "", *, id: str | None = None) -> None:
        super().__init__(content, id=id)
        self._rows = -1

    def show(self, text: Text) -> None:
        lines = text.plain.split("\n")
        width = self.content_size.width
        styles = self.styles
        if self._rows < 0:
            steady = False  # its first text: whatever it was measured with before is gone
        elif width == 0:
            # Not laid out (hidden, e.g. a pane behind a tab, or not yet arranged): the layout
            # that shows it measures this text.
            steady = True
        elif styles.width is not None and styles.width.is_auto:
            steady = False  # its width follows its text
        elif styles.height is not None and styles.height.is_cells:
            steady = True  # a fixed size: the text cannot move anything
        else:
            steady = len(lines) == self._rows and all(cell_len(line) <= width for line in lines)
        self._rows = len(lines)
        self.update(text, layout=not steady)


class KeysFooter(Footer):
    """Textual's Footer, rebuilt only when the keys it shows change.

    The Footer re-creates all its key widgets (and so lays out the whole screen) whenever
    its screen says its bindings may have changed: on every focus change and every time an
    approval prompt closes. On the console's screen that costs tens of milliseconds, and a
    prompt that arrives meanwhile waits for it; the keys themselves rarely change.
    """

    _shown: tuple[tuple[str, str, bool], ...] | None = None
    _rebuild_pending = False

    def _keys(self) -> tuple[tuple[str, str, bool], ...]:
        return tuple(
            (binding.key, binding.description, enabled)
            for (_, binding, enabled, _) in self.screen.active_bindings.values()
            if binding.show
        )

    def compose(self) -> ComposeResult:
        self._rebuild_pending = False
        self._shown = self._keys() if self._bindings_ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[object]) -> None:
        # Footer.bindings_changed (textual 8.2.8, pinned), plus: no rebuild while one is
        # already on its way (it reads the bindings when it runs) or when the keys are the same.
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        if self._rebuild_pending or (self._shown is not None and self._keys() == self._shown):
            return
        self._rebuild_pending = True
        self.call_after_refresh(self.recompose)


class StatusBar(Readout):
    """One line: run state, plans done of total (a service: proposals done of received), the mode
    ceiling, counters."""

    def render_view(self, view: RunView) -> None:
        state = view.state_label
        style = {
            "running": "bold green",
            "paused": "bold yellow",
            "finished": "bold cyan",
            "interrupted": "bold yellow",
            "detached": "bold red",
        }.get(state.split(" ")[0], "bold")
        ceiling = "MOCK (locked)" if view.locked else view.mode_ceiling
        text = Text.assemble(
            (f" {state.upper()} ", f"reverse {style}"),
            # A gate service has no plan count: its plans are the proposals received so far.
            f"  proposals {view.plans_done}/{view.proposals} done"
            if view.proposals
            else f"  plans {view.plans_done}/{view.plans_total}",
            f"  {'proposal' if view.proposals else 'plan'} {view.current_plan or '-'}",
            "  ceiling ",
            (ceiling, "bold red" if view.locked else "bold"),
            f"  executions {view.executions}",
            f"  conflicts {view.conflicts_total}",
            ("  pending approvals ", ""),
            (str(len(view.pending)), "bold magenta" if view.pending else ""),
        )
        if view.plans_failed:
            text.append(f"  failed plans {view.plans_failed}", style="bold red")
        if view.lines_skipped:
            text.append(f"  skipped {view.lines_skipped} log lines (flood; all in the output files)", style="dim")
        if view.unknown_outcomes:
            text.append(f"  UNKNOWN outcomes {len(view.unknown_outcomes)}", style="bold reverse red")
        self.show(text)


class LockBanner(Static):
    """Impossible to miss: shown only while the system is locked."""

    def render_view(self, view: RunView) -> None:
        self.set_class(view.locked, "-locked")
        if view.locked:
            self.update(
                Text(
                    f" SYSTEM LOCKED: nothing runs above MOCK; the rest of the run goes on in MOCK."
                    f" {view.lock_reason}  (u to unlock) ",
                    style="bold",
                ),
            )


class Pane(Vertical):
    """A bordered pane with a title that says what is filtered and whether it follows."""

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.title = title
        self.filter_text = ""
        self.border_title = title

    def show_state(self, filter_text: str, following: bool = True) -> None:
        self.filter_text = filter_text
        title = Text(self.title)
        if filter_text:
            # The operator's own text, shown literally (a Text is never parsed as markup).
            title.append(f"  filter /{inert(filter_text, 40)} (Esc clears)", style="bold yellow")
        if not following:
            title.append("  scrolled back: f follows", style="bold reverse yellow")
        self.border_title = title


class LogPane(Pane):
    """A pane of log rows (transitions, tools, signals)."""

    log_id = ""

    def compose(self) -> ComposeResult:
        yield RowLog(max_lines=LOG_LINES, id=self.log_id)

    @property
    def row_log(self) -> RowLog:
        # Not `log`: that is every Textual node's logger.
        return self.query_one(RowLog)

    def on_row_log_state_changed(self, message: RowLog.StateChanged) -> None:
        self.show_state(message.log.filter_text, message.log.following)


class TransitionsPane(LogPane):
    log_id = "transitions-log"


class ToolLogPane(LogPane):
    log_id = "tools-log"


class SignalsPane(LogPane):
    log_id = "signals-log"


def row_matches(cells: Sequence[str], needle: str) -> bool:
    return matches(" ".join(cells), needle)


class ConflictsPane(Pane):
    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="conflicts-table", cursor_type="row", zebra_stripes=True)
        # What carries the meaning (type, strategy, outcome) comes first, so a narrow pane
        # cuts the agents and the resource, never the outcome (the detail, Enter, has all).
        table.add_column("id", key="id", width=6)
        table.add_column("type", key="type", width=16)
        table.add_column("strategy", key="strategy", width=9)
        table.add_column("outcome", key="outcome", width=40)
        table.add_column("agents", key="agents", width=18)
        table.add_column("tool / resource", key="target", width=30)
        yield table

    def on_resize(self) -> None:
        # The outcome takes the width the pane has after id, type and strategy: agents and the
        # resource, to its right, are the ones cut when the pane is narrow.
        table: DataTable[Text] = self.query_one(DataTable)
        fixed = sum(table.columns[ColumnKey(k)].width + 2 * table.cell_padding for k in ("id", "type", "strategy"))
        width = max(30, self.content_size.width - fixed - 2 * table.cell_padding - 2)
        outcome = table.columns[ColumnKey("outcome")]
        if outcome.width != width:
            outcome.width = width
            # Textual 8.2.8 (pinned): drop the rendered rows and re-measure the columns.
            table._clear_caches()
            table._require_update_dimensions = True
            table.refresh()

    @staticmethod
    def _cells(row: ConflictRow) -> list[str]:
        return [row.conflict_id, row.conflict_type, row.strategy, row.outcome, row.agents, row.target]

    def set_filter(self, view: RunView, text: str) -> None:
        self.query_one(DataTable).clear()
        self.show_state(text)
        self.render_rows(view, dict.fromkeys(view.conflicts))

    def render_rows(self, view: RunView, changed: dict[str, None]) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        for conflict_id in changed:
            row = view.conflicts.get(conflict_id)
            if row is None:
                continue
            if self.filter_text and not row_matches(self._cells(row), self.filter_text):
                if conflict_id in table.rows:
                    table.remove_row(conflict_id)
                continue
            cells = {
                "strategy": Text(row.strategy, style="bold"),
                "outcome": Text(row.outcome),
            }
            if conflict_id in table.rows:
                for column, value in cells.items():
                    table.update_cell(conflict_id, column, value)
            else:
                table.add_row(
                    Text(row.conflict_id),
                    Text(row.conflict_type, style="bold magenta"),
                    cells["strategy"],
                    cells["outcome"],
                    Text(row.agents),
                    Text(row.target),
                    key=conflict_id,
                )
        for key in [k.value for k in table.rows if k.value is not None and k.value not in view.conflicts]:
            table.remove_row(key)


class HealthPane(Pane, can_focus=True):
    """Focusable: Enter explains the score (console/health_explain.py)."""

    BINDINGS = [Binding("enter", "app.explain_health", "Explain", show=False)]

    def compose(self) -> ComposeResult:
        yield Readout(Text("waiting for the first health update"), id="health-score")
        yield Sparkline([], id="health-spark", summary_function=min)
        yield Readout("", id="health-metrics")
        yield Readout("", id="health-anomalies")

    def render_view(self, view: RunView) -> None:
        if view.health_score is None:
            return
        tier = view.health_tier
        self.query_one("#health-score", Readout).show(
            Text.assemble(
                ("Health ", "bold"),
                (f"{view.health_score:5.1f}", TIER_STYLE.get(tier, "bold")),
                " / 100  ",
                (f" {tier} ", f"reverse {TIER_STYLE.get(tier, 'bold')}"),
            )
        )
        self.query_one(Sparkline).data = list(view.health_history)
        metrics = Text()
        names = list(view.metrics)
        for i, name in enumerate(names):
            metrics.append(f"{name:<20}{view.metrics[name]:>8}")
            metrics.append("\n" if i % 2 else "   ")
        self.query_one("#health-metrics", Readout).show(metrics)
        anomalies = Text()
        if not view.anomalies:
            anomalies.append("no anomalies", style="green")
        for anomaly in view.anomalies:
            severity = int(anomaly.get("severity", 0))
            anomalies.append(
                f"▲ {inert(anomaly.get('anomaly_type', '?'), 40)} ", style=SEVERITY_STYLE.get(severity, "bold")
            )
            anomalies.append(f"severity {severity}  {inert(anomaly.get('detail', ''), 160)}\n")
        self.query_one("#health-anomalies", Readout).show(anomalies)


class ApprovalsPane(Pane):
    """Pending HIGH-risk LIVE escalations, oldest first, with a countdown."""

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="approvals-table", cursor_type="row")
        table.add_column("left", key="left", width=6)
        table.add_column("risk", key="risk", width=6)
        table.add_column("conf/thr", key="conf", width=10)
        table.add_column("tool", key="tool", width=20)
        table.add_column("agent", key="agent", width=14)
        table.add_column("action", key="action", width=20)
        yield table
        yield Readout("", id="approvals-last")

    def render_view(
        self, view: RunView, seconds_left: Callable[[str, float], float | None], now: Callable[[], datetime]
    ) -> None:
        """`left` is the countdown of the request on screen; the others show how long they
        have waited (their countdown starts when their prompt is shown)."""
        table: DataTable[Text] = self.query_one(DataTable)
        current = {
            request_id
            for request_id, r in view.pending.items()
            if row_matches([r.agent, r.tool, r.risk_level.value, r.plan_id, r.action_id], self.filter_text)
        }
        for key in [k.value for k in table.rows if k.value is not None and k.value not in current]:
            table.remove_row(key)
        for request_id, request in view.pending.items():
            if request_id not in current:
                continue
            left = seconds_left(request_id, request.timeout_s)
            if left is None:
                waited = max(0.0, (now() - request.ts).total_seconds())
                left_text = Text(f"w{waited:3.0f}s", style="dim")
            else:
                left_text = Text(f"{left:4.0f}s", style="bold red" if left < 10 else "bold")
            if request_id in table.rows:
                table.update_cell(request_id, "left", left_text)
            else:
                table.add_row(
                    left_text,
                    Text(request.risk_level.value, style="bold red"),
                    Text(f"{request.confidence:.2f}/{request.threshold:.2f}"),
                    Text(inert(request.tool, 40)),
                    Text(inert(request.agent, 40)),
                    Text(inert(f"{request.plan_id}/{request.action_id}", 60)),
                    key=request_id,
                )
        if view.decisions:
            d = view.decisions[-1]
            outcome = d.outcome or ("APPROVE" if d.approved else "DENY")
            verdict = (OUTCOME_LABEL.get(outcome, outcome), "bold green" if d.approved else "bold red")
            line = Text.assemble(
                "last: ",
                verdict,
                f" {inert(d.tool, 40)} ({inert(d.action_id, 40)})",
                f" by {inert(d.decided_by, 40)}: {inert(d.reason, 120)}",
            )
            if view.denied_earlier:
                line.append(f"\ndenied earlier (not asked again): {view.denied_earlier}", style="bold")
            self.query_one("#approvals-last", Readout).show(line)
