"""Edit, then approve: the arguments of a request as editable JSON.

Saving checks that the text is a JSON object that survives canonical JSON unchanged (finite
numbers, no lone surrogates, bounded size and depth: `core.approval.edited_args_problem`, the
same check the controller applies before it lets an edited approval run). The tool and the
agent cannot be changed here: only the arguments are edited.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from core.approval import edited_args_problem
from core.inert import inert


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_edited_args(text: str) -> tuple[dict[str, Any] | None, str]:
    """The edited arguments, or None and why they cannot be used."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    problem = edited_args_problem(value)
    if problem is not None:
        return None, problem
    return value, ""


class EditArgsModal(ModalScreen[dict[str, Any] | None]):
    """ctrl+s saves (when valid), Escape cancels."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, tool: str, args: dict[str, Any]) -> None:
        super().__init__(classes="edit-args-modal")
        self.tool = tool
        self.original = args

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Static(
                Text.assemble(
                    ("Edit the arguments of ", "bold"),
                    (inert(self.tool, 80), "bold"),
                    ("  (ctrl+s save, Escape cancel; the tool and agent cannot change)", "dim"),
                )
            )
            yield TextArea(
                json.dumps(self.original, indent=2, sort_keys=True, ensure_ascii=False),
                id="edit-args-text",
                soft_wrap=True,
                show_line_numbers=False,
            )
            yield Static(id="edit-args-error")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        value, problem = parse_edited_args(self.query_one(TextArea).text)
        if value is None:
            self.query_one("#edit-args-error", Static).update(Text(f"Cannot save: {inert(problem, 300)}", "bold red"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
