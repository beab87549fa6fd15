"""Modal screens: the unlock confirmation and the help overlay (the approval prompt: approval_prompt.py)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; `y` confirms, `n` or Escape cancels.

    Cancel has the focus, so Enter (or a stray key) never confirms: leaving the lock takes
    the deliberate `y` or a click on Yes.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="confirm-modal")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(Text(self.question))
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


HELP_TEXT = """\
Phase 24 operator console: keys

At an approval prompt (keys are dimmed until the prompt is armed: it must be
on screen for a moment with no answer key pressed; a held or double-tapped key
is dropped and never carries over to the next prompt):
  y        approve the HIGH-risk LIVE escalation on screen
  n        deny it            r   deny with a reason (type, then Enter)
  s        deny and stop the agent: its remaining actions are cancelled
  e        edit the arguments as JSON (ctrl+s saves), then y approves YOUR edit
  up/down  scroll the arguments (PgUp, PgDn, Home, End too)
An identical call that was denied is refused without asking again (denied earlier).

Everywhere:
  l        LOCK the whole system: nothing runs above MOCK, pending approvals are
           denied; the rest of the run goes on in MOCK. System-wide: later runs
           start locked until an unlock (phase24 lock / unlock from a shell)
  ctrl+l   lock, also while typing in a text box
  u        unlock (asks to confirm; Cancel is the default)
  p        pause / resume (actions in flight finish; nothing new starts)
  1-6      show a pane (and focus it): transitions, tools, conflicts, health,
           approvals, signals; Tab moves the focus between panes
  /        filter the focused pane: rows containing a text (agent, tool, state,
           reason); the pane's title shows the filter; Esc clears it
  up/down  move the row cursor; Enter opens the row's detail: the whole event,
           the full reason, the action hash, links to its conflict and decision
  f, End   follow again: a pane scrolled back stops following and says so
  ctrl+s   export: screenshot (SVG) + the focused pane's rows (JSONL) into the
           run's directory (console_exports/); a notice says where
In a replay (phase24 replay RUN_DIR): p pauses, . steps one event, + - speed.
  ctrl+p   command palette: the same actions by name
  ?        this help (? or Escape closes it)
  q        quit: denies every waiting request, escalates nothing more, ends the run
           (reported INTERRUPTED) with complete outputs

No answer before a prompt's countdown ends is EXPIRED, which denies. The countdown
starts when the prompt is shown. Every decision, lock and unlock is written to
operator_decisions.jsonl in the output directory and to the journal.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text(HELP_TEXT))
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
