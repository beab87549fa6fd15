"""The `/` filter box: one line of text, Enter applies it, Escape leaves the filter as it was."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class FilterPrompt(ModalScreen[str | None]):
    """Dismisses with the new filter ('' clears it), or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, pane_title: str, current: str) -> None:
        super().__init__()
        self.pane_title = pane_title
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="filter-dialog"):
            yield Static(
                Text(f"Filter {self.pane_title}: rows containing (agent, tool, state, reason); empty shows all")
            )
            yield Input(value=self.current, id="filter-input", placeholder="text to match")

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.dismiss(message.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
