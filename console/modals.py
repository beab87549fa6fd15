"""Modal screens: the approval prompt, the unlock confirmation and the help overlay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from console.panes import Readout
from core.approval import ApprovalDecision, ApprovalRequest, deny, grant
from core.inert import inert, inert_json

OPERATOR = "operator"
# Our own fixed text (markup is fine here, never for data): each key is also a click target.
KEYS_LINE = (
    "[b reverse green][@click=screen.approve] y approve [/][/]  "
    "[b reverse red][@click=screen.deny] n deny [/][/]  "
    "[@click=screen.deny_with_reason][b]r[/b] deny with a reason[/]  "
    "[@click=app.lock][b]l[/b] lock[/]  "
    "[dim](ctrl+l while typing)[/dim]  [b]?[/b] help  [b]q[/b] quit"
)
KEYS_CONTENT = Content.from_markup(KEYS_LINE)  # parsed once, not at every prompt
# Arguments that fit in the box's 10 rows even when wrapped at 60 columns (a narrow
# terminal) are shown in place; longer ones in a box that scrolls.
SHORT_ARGS_ROWS = 10
SHORT_ARGS_WIDTH = 60


def fits_in_place(text: str) -> bool:
    """True if every line of `text` is on screen without scrolling, wrapped or not."""
    rows = 0
    for line in text.split("\n"):
        rows += max(1, -(-len(line) // SHORT_ARGS_WIDTH))
        if rows > SHORT_ARGS_ROWS:
            return False
    return True


def request_details(r: ApprovalRequest) -> Text:
    """The prompt's facts about one request; every value from the request is shown literally."""
    ok = r.confidence >= r.threshold
    details = Text()
    details.append(" HIGH-RISK LIVE ESCALATION: APPROVAL NEEDED ", style="bold reverse red")
    details.append("\n")
    for label, value, style in (
        ("agent", inert(r.agent, 200), "bold"),
        ("tool", inert(r.tool, 200), "bold"),
        ("risk", r.risk_level.value, "bold red"),
        (
            "reversible",
            "yes" if r.reversible else "NO: the effect cannot be undone",
            "" if r.reversible else "bold red",
        ),
        (
            "confidence",
            f"{r.confidence:.2f} vs LIVE threshold {r.threshold:.2f} ({'meets' if ok else 'BELOW'})",
            "green" if ok else "bold red",
        ),
        ("plan / action", inert(f"{r.plan_id} / {r.action_id}", 200), ""),
        ("action hash", r.action_hash[:16] + "…", "dim"),
    ):
        details.append(f"{label:>14}  ", style="dim")
        details.append(value + "\n", style=style)
    details.append("arguments (shown literally):", style="dim")
    return details


class ApprovalModal(ModalScreen[ApprovalDecision | None]):
    """The prompt for one HIGH-risk LIVE escalation. `y` approves, `n` denies, `r` denies with a reason.

    The console composes one prompt at start-up and fills it for each request
    (`show_request`), so a request reaches the screen without composing and mounting widgets
    first. Dismisses with None when the request was settled elsewhere (timeout, lock).
    """

    BINDINGS = [
        Binding("y", "approve", "Approve"),
        Binding("n", "deny", "Deny"),
        Binding("r", "deny_with_reason", "Deny with reason"),
        Binding("l", "app.lock", "Lock"),
    ]

    def __init__(self, request: ApprovalRequest | None, now: Callable[[], datetime]) -> None:
        super().__init__(classes="approval-modal")
        self.now = now
        self.request: ApprovalRequest | None = None
        self.settled = True  # nothing to answer until a request is shown
        self._settle_on_resume: str | None = None  # a request settled while another screen was on top
        self._filled_id: str | None = None  # the request the widgets show
        self.shown_id: str | None = None  # the request whose prompt has been drawn on screen
        if request is not None:
            self.show_request(request)

    def compose(self) -> ComposeResult:
        # Few widgets: the keys line replaces a Footer and buttons (its keys are clickable);
        # the reason box stays hidden until `r`.
        with Vertical(id="approval-dialog"):
            yield Static(id="approval-details")
            with VerticalScroll(id="approval-args"):
                yield Static(id="approval-args-text")
            yield Readout("", id="approval-countdown")
            yield Input(placeholder="reason for denying, then Enter", id="deny-reason")
            yield Static(KEYS_CONTENT, id="approval-keys")

    def on_mount(self) -> None:
        if self.request is not None:
            self._fill(self.request)
        self.set_interval(0.25, self._tick)

    def show_request(self, request: ApprovalRequest) -> None:
        """Make the prompt ask about `request` (called while the prompt is not on screen)."""
        self.request = request
        self.settled = False
        self._settle_on_resume = None
        if self.is_mounted:
            self._fill(request)

    def _fill(self, request: ApprovalRequest) -> None:
        self.query_one("#approval-details", Static).update(request_details(request))
        args = inert_json(request.args, 20_000)
        self.query_one("#approval-args-text", Static).update(Text(args))
        box = self.query_one("#approval-args", VerticalScroll)
        box.set_class(fits_in_place(args), "-short")
        box.scroll_home(animate=False, immediate=True)
        reason = self.query_one("#deny-reason", Input)
        reason.value = ""
        reason.display = False
        self.set_focus(None)  # nothing of the previous request keeps the keys
        self._filled_id = request.request_id
        self._tick()

    def seconds_left(self) -> float:
        if self.request is None:
            return 0.0
        return max(0.0, (self.request.expires_at - self.now()).total_seconds())

    def _tick(self) -> None:
        if self.request is None or self.settled:
            return
        left = self.seconds_left()
        self.query_one("#approval-countdown", Readout).show(
            Text(f"no answer in {left:4.0f}s = DENY", style="bold red" if left < 10 else "bold yellow")
        )
        if left <= 0:
            if self.is_current:
                self.finish(deny(self.request, "timeout", "no answer before the timeout"))
            else:
                self._settle_on_resume = self.request.request_id  # the core denies it on its own clock

    def settle_elsewhere(self, request_id: str) -> None:
        """The core settled `request_id` (timeout, lock): close without answering, if it is shown."""
        if self.request is None or self.request.request_id != request_id or self.settled:
            return
        if self.is_current:
            self.finish(None)
        else:
            self._settle_on_resume = request_id

    def on_screen_resume(self) -> None:
        if self.request is not None and self._settle_on_resume == self.request.request_id:
            self.finish(None)

    def _compositor_refresh(self) -> None:
        # Textual 8.2.8 (pinned) sends a screen's frames to the terminal here: once the
        # current request's prompt has gone out, its keys may answer it.
        super()._compositor_refresh()
        if self.request is not None and self.is_current and self._filled_id == self.request.request_id:
            self.shown_id = self.request.request_id

    def _answerable(self) -> ApprovalRequest | None:
        """The request the keys may answer: only once its prompt is on screen, so a key pressed
        before it appeared (a second `y` meant for the previous prompt) never answers it."""
        request = self.request
        if request is None or self.settled or self.shown_id != request.request_id:
            return None
        return request

    def finish(self, decision: ApprovalDecision | None) -> None:
        if self.settled:
            return
        self.settled = True
        self.dismiss(decision)

    def action_approve(self) -> None:
        request = self._answerable()
        if request is not None:
            self.finish(grant(request, OPERATOR, "approved at the console"))

    def action_deny(self) -> None:
        request = self._answerable()
        if request is not None:
            self.finish(deny(request, OPERATOR, "denied at the console"))

    def action_deny_with_reason(self) -> None:
        if self._answerable() is None:
            return
        box = self.query_one("#deny-reason", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        request = self._answerable()
        if request is not None:
            reason = event.value.strip() or "denied at the console"
            self.finish(deny(request, OPERATOR, reason))


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; `y` confirms, `n` or Escape cancels."""

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

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


HELP_TEXT = """\
Phase 24 operator console: keys

  y        approve the HIGH-risk LIVE escalation on screen
  n        deny it            r   deny with a reason (type, then Enter)
  l        LOCK: everything drops to MOCK at once; pending approvals are denied
  ctrl+l   lock, also while typing in a text box
  u        unlock (asks to confirm)
  p        pause / resume (actions in flight finish; nothing new starts)
  1-6      show a pane: transitions, tools, conflicts, health, approvals, signals
  ctrl+p   command palette: the same actions by name
  ?        this help (? or Escape closes it)
  q        quit: stops the run cleanly; the outputs are complete

No answer before an approval's countdown ends is a DENY. Approvals queue,
oldest first; agents that do not wait on them keep running. Every decision,
lock and unlock is written to operator_decisions.jsonl in the output directory.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text(HELP_TEXT))
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
