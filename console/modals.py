"""Modal screens: the unlock confirmation and the help overlay (the approval prompt: approval_prompt.py)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
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
Phase 24 operator console: keys (as in force: a keys file may move them)

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
  {lock:<8} LOCK the whole system: nothing runs above MOCK, pending approvals are
           denied; the rest of the run goes on in MOCK. System-wide: later runs
           start locked until an unlock (phase24 lock / unlock from a shell)
  {lock_typing:<8} lock, also while typing in a text box
  {unlock:<8} unlock (asks to confirm; Cancel is the default)
  {pause:<8} pause / resume (actions in flight finish; nothing new starts)
  {panes:<8} show a pane (and focus it): transitions, tools, conflicts, health,
           approvals, signals; Tab moves the focus between panes
  {filter:<8} filter the focused pane: rows containing a text (agent, tool, state,
           reason); the pane's title shows the filter; {clear_filter} clears it
  up/down  move the row cursor; Enter opens the row's detail: the whole event,
           the full reason, the action hash, links to its conflict and decision;
           Enter on the health pane explains the score (each metric's share,
           threshold and trend, and the rule behind each anomaly)
  {follow:<8} follow again (End too): a pane scrolled back stops following and says so
  {export:<8} export: screenshot (SVG) + the focused pane's rows (JSONL) into the
           run's directory (console_exports/); a notice says where
  ctrl+p   command palette: the same actions by name
  {help:<8} this help ({help} or Escape closes it)
  {quit:<8} quit: denies every waiting request, escalates nothing more, ends the run
           (reported INTERRUPTED) with complete outputs
In a replay (phase24 replay RUN_DIR): p pauses, . steps one event, + - speed.
In a browser: phase24 console --web serves this console (an operator token
logs in). Keys move with --keys FILE (default ~/.config/phase24/keys.toml).

No answer before a prompt's countdown ends is EXPIRED, which denies. The countdown
starts when the prompt is shown. An approval request rings the terminal bell (and
sends a desktop notification with --desktop-notify). Every decision, lock and unlock
is written to operator_decisions.jsonl in the output directory and to the journal.
"""
DEFAULT_KEYS = {
    "lock": "l",
    "lock_typing": "ctrl+l",
    "unlock": "u",
    "pause": "p",
    "filter": "/",
    "clear_filter": "Esc",
    "follow": "f",
    "export": "ctrl+s",
    "help": "?",
    "quit": "q",
    **{f"pane_{i}": str(i) for i in range(1, 7)},
}


def help_text(keys: Mapping[str, str] | None = None) -> str:
    """The help with the keys in force (binding id -> keys shown)."""
    shown = {**DEFAULT_KEYS, **(keys or {})}
    panes = [shown[f"pane_{i}"] for i in range(1, 7)]
    shown["panes"] = "1-6" if panes == [str(i) for i in range(1, 7)] else " ".join(panes)
    return HELP_TEXT.format(**shown)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"), VerticalScroll(id="help-body"):
            yield Static(Text(help_text(self.keys)))
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
