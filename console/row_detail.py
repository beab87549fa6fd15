"""A row's detail (Enter): the whole event, its full reason, its action's hash, and the rows
it links to (its conflict, its approval request and decision), each opened with Enter."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from console.related import RelatedIndex
from console.run_view import hms
from core.events import Event
from core.inert import inert, inert_json

TITLES = {
    "state_transition": "State transition",
    "tool_executed": "Tool execution",
    "conflict_detected": "Conflict detected",
    "conflict_resolved": "Conflict resolved",
    "approval_requested": "Approval request",
    "approval_decided": "Approval decision",
    "signal_emitted": "Learning signal",
    "health_updated": "Health update",
}
# Shown first, in this order, when the event has them; every other field follows.
LEAD_FIELDS = ("ts", "plan_id", "action_id", "agent", "tool", "from_state", "to_state", "outcome", "reason")


def summary_line(event: Event) -> str:
    """One line naming a related row in the detail's links."""
    body = event.model_dump(mode="json")
    parts = [TITLES.get(event.kind, event.kind), hms(event.ts)]
    for name in ("conflict_type", "strategy", "outcome", "tool", "agent", "decided_by", "reason"):
        value = body.get(name)
        if value:
            parts.append(inert(value, 60))
    return "  ".join(parts)


def action_hash_of(event: Event, related: RelatedIndex) -> str:
    own = getattr(event, "action_hash", "")
    if isinstance(own, str) and own:
        return own
    plan_id, action_id = getattr(event, "plan_id", None), getattr(event, "action_id", None)
    if isinstance(plan_id, str) and isinstance(action_id, str):
        recorded = related.for_action(plan_id, action_id).action_hash
        if recorded:
            return recorded
        return "(none recorded: the action never reached an approval or a LIVE intent)"
    return ""


def describe(event: Event, related: RelatedIndex) -> Text:
    """The event in full, every value made inert and rendered as plain text."""
    body: dict[str, Any] = event.model_dump(mode="json")
    body.pop("kind", None)
    text = Text(TITLES.get(event.kind, event.kind), style="bold")
    text.append(f"   #{event.seq}  run {inert(event.run_id, 80)}\n")
    names = [n for n in LEAD_FIELDS if n in body] + sorted(n for n in body if n not in LEAD_FIELDS)
    action_hash = action_hash_of(event, related)
    if action_hash and "action_hash" not in body:
        body["action_hash"] = action_hash
        names.append("action_hash")
    for name in names:
        if name in ("seq", "run_id"):
            continue
        value = body[name]
        text.append(f"{name:<20}", style="dim")
        if isinstance(value, (dict, list)):
            text.append("\n" + inert_json(value) + "\n")
        else:
            style = "bold" if name in ("reason", "outcome", "to_state", "action_hash") else ""
            text.append(inert(value, 4000) + "\n", style=style)
    return text


class RowDetail(ModalScreen[None]):
    """The detail of one row; Enter on a link opens the linked row's detail."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, event: Event, related: RelatedIndex) -> None:
        super().__init__()
        self.event = event
        self.related = related
        self.links = related.related(event)

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-dialog"):
            with VerticalScroll(id="detail-body"):
                yield Static(describe(self.event, self.related), id="detail-text", markup=False)
            yield Static(
                Text("Related rows (Enter opens):" if self.links else "No related rows.", style="bold"),
                id="detail-links-title",
            )
            if self.links:
                yield OptionList(*(Option(Text(summary_line(e))) for e in self.links), id="detail-links")
        yield Footer()

    def on_mount(self) -> None:
        if self.links:
            self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        self.app.push_screen(RowDetail(self.links[message.option_index], self.related))

    def action_close(self) -> None:
        self.dismiss(None)
