"""The approval prompt: one HIGH-risk LIVE escalation, answered only once it has been seen.

Safety rules this screen enforces (README "Using the console"):
- **Armed, not hair-trigger.** A key answers only once the prompt has been drawn and on screen
  for `arm_delay` seconds with no answer key pressed. An answer key that arrives earlier (a
  double tap, auto-repeat of a held key, keys typed during the previous prompt) is dropped and
  restarts the delay, so a held `y` never approves the next request.
- **Seen in full, or not approvable.** If the terminal cannot show the request's essential
  parts (agent, tool, risk, reversibility, arguments or a scrollable view of them, the
  countdown and the keys), `y` does nothing and the prompt asks for a larger terminal; `n`,
  `l` and `q` still work.
- Each decision records whether the arguments were fully visible when the key was pressed.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static

from console.edit_args import EditArgsModal
from console.panes import LockBanner, Readout, StatusBar
from core.approval import ApprovalDecision, ApprovalOutcome, ApprovalRequest, deny, grant
from core.contracts import RiskLevel
from core.inert import inert, inert_json

OPERATOR = "operator"
DEFAULT_ARM_DELAY_S = 0.6
# Our own fixed text (markup is fine here, never for data): each key is also a click target.
KEYS_LINE = (
    "[b reverse green][@click=screen.approve] y approve [/][/]  "
    "[b reverse red][@click=screen.deny] n deny [/][/]  "
    "[@click=screen.deny_with_reason][b]r[/b] deny+reason[/]  "
    "[@click=screen.deny_and_stop][b]s[/b] deny+stop agent[/]  "
    "[@click=screen.edit][b]e[/b] edit args[/]  "
    "[@click=app.lock][b]l[/b] lock[/]  [b]↑↓[/b] scroll  [b]q[/b] quit"
)
KEYS_CONTENT = Content.from_markup(KEYS_LINE)  # parsed once, not at every prompt
KEYS_TOO_SMALL = Content.from_markup(
    "[b reverse red][@click=screen.deny] n deny [/][/]  [@click=app.lock][b]l[/b] lock[/]  [b]q[/b] quit"
)
# The dialog's rows around its parts: the border (2), the countdown (1) and the args box border (2).
FRAME_ROWS = 5
MIN_ARGS_ROWS = 3  # a scrollable view smaller than this is not a view
# The arguments box keeps at least this many rows when the terminal has them, so that one
# request after another (most tool calls have fewer rows of arguments) the prompt keeps its
# size and place: filling it then repaints its text, without laying out the screen again.
STEADY_ARGS_ROWS = 8
MIN_DIALOG_WIDTH = 44
WARM_UP = "warm-up (never shown)"


def request_details(r: ApprovalRequest) -> Text:
    """The prompt's facts about one request; every value from the request is shown literally."""
    ok = r.confidence >= r.threshold
    details = Text()
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
        details.append(f"{label:>13} ", style="dim")
        details.append(value + "\n", style=style)
    details.append("arguments (shown literally; ↑↓ PgUp PgDn scroll):", style="dim")
    return details


def wrapped_rows(text: str, width: int) -> int:
    """Rows `text` takes when wrapped at `width` cells."""
    width = max(1, width)
    return sum(max(1, -(-cell_len(line) // width)) for line in text.split("\n"))


def args_diff(original: dict[str, Any], edited: dict[str, Any]) -> str:
    before = json.dumps(original, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    after = json.dumps(edited, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    lines = difflib.unified_diff(before, after, "agent's arguments", "your edit", lineterm="", n=1)
    return inert("\n".join(lines), 20_000)


class ApprovalModal(ModalScreen[ApprovalDecision | None]):
    """The prompt for one HIGH-risk LIVE escalation.

    The console composes one prompt at start-up and fills it for each request
    (`show_request`, which returns the future of its answer). An answer with another request
    waiting (`stay_up`) leaves the prompt on screen for the console to fill with that one:
    no pop to the main screen and push back, so the next request is on screen after a
    repaint of the prompt alone. Otherwise the prompt dismisses itself. The answer is None
    when the request was settled elsewhere (timeout, lock, quit).
    """

    AUTO_FOCUS = ""  # no widget takes the keys when the prompt appears
    BINDINGS = [
        Binding("y", "approve", "Approve"),
        Binding("n", "deny", "Deny"),
        Binding("r", "deny_with_reason", "Deny with reason"),
        Binding("s", "deny_and_stop", "Deny + stop agent"),
        Binding("e", "edit", "Edit arguments"),
        Binding("l", "app.lock", "Lock"),
        Binding("up", "scroll_args(-1)", show=False),
        Binding("down", "scroll_args(1)", show=False),
        Binding("pageup", "scroll_args(-10)", show=False),
        Binding("pagedown", "scroll_args(10)", show=False),
        Binding("home", "scroll_args(-1000000)", show=False),
        Binding("end", "scroll_args(1000000)", show=False),
    ]

    def __init__(
        self,
        request: ApprovalRequest | None,
        *,
        seconds_left: Callable[[ApprovalRequest], float | None],
        waiting: Callable[[], int] = lambda: 1,
        is_pending: Callable[[str], bool] = lambda request_id: True,
        on_shown: Callable[[str], None] = lambda request_id: None,
        stay_up: Callable[[], bool] = lambda: False,
        arm_delay: float = DEFAULT_ARM_DELAY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(classes="approval-modal")
        self.seconds_left_for = seconds_left
        self.waiting = waiting
        self.is_pending = is_pending
        self.on_shown = on_shown
        self.stay_up = stay_up
        self.arm_delay = arm_delay
        self.monotonic = monotonic
        self.request: ApprovalRequest | None = None
        self.settled = True  # nothing to answer until a request is shown
        self._settle_on_resume: str | None = None  # a request settled while another screen was on top
        self._close_on_resume = False  # closed (nothing left to ask) while another screen was on top
        self._styled_css = -1  # the app's CSS version the prompt's styles were computed with
        self._answer: asyncio.Future[ApprovalDecision | None] | None = None
        self._filled_id: str | None = None  # the request the widgets show
        self.shown_id: str | None = None  # the request whose prompt has been drawn on screen
        self.armed = False
        self.ready = False  # laid out and rendered once off screen (warm_up): requests may come
        self._arm_at = 0.0
        self.dropped_keys = 0  # answer keys that arrived before the prompt was armed
        self.fits = True
        self.edited_args: dict[str, Any] | None = None
        self._seen_bottom = False
        self._args_rows = -1
        # The texts on show, kept so that sizing the prompt (_arrange, on every resize) does
        # not build them again.
        self._details_plain = ""
        self._args_plain = ""
        self._diff_plain = ""
        self._keys_shown: Content = KEYS_CONTENT
        self._args_text_rows: int | None = None  # the arguments text's set height (None: its own)
        self._head_shown: Text | None = None
        self._countdown_shown: Text | None = None
        if request is not None:
            self.show_request(request)

    def compose(self) -> ComposeResult:
        # The lock banner and the status line stay on screen above the prompt.
        yield LockBanner(id="prompt-lock-banner")
        yield StatusBar(id="prompt-status-bar")
        with Vertical(id="approval-dialog"):
            yield Readout("", id="approval-head")
            # Readouts: a new request's text is laid out only if it takes other rows.
            yield Readout("", id="approval-details")
            # Not focusable: its keys are the prompt's own bindings (so what was seen is known).
            with VerticalScroll(id="approval-args", can_focus=False):
                yield Readout("", id="approval-args-text")
            yield Static(id="approval-edited")
            yield Static(id="approval-too-small")
            yield Readout("", id="approval-countdown")
            yield Input(placeholder="reason for denying, then Enter", id="deny-reason")
            yield Static(KEYS_CONTENT, id="approval-keys")

    def on_mount(self) -> None:
        self._styled_css = self.app._css_update_count  # mounting computed every widget's styles
        if self.request is not None:
            self._fill(self.request)
        self.set_interval(0.25, self._tick)

    async def warm_up(self) -> None:
        """Lay out and render the prompt once off screen, before any request, so that the
        first request's prompt does not also pay for the prompt's first layout and first
        texts (it still pays for being pushed over the main screen, as any pushed prompt
        does). Sets `ready` when done.

        That work is done here with a sample request that is rendered into the
        prompt's own compositor and thrown away: it never reaches the terminal, is never the
        prompt's request and can never be answered (the console puts no request on the prompt
        before `ready`). Textual 8.2.8 internals (pinned).
        """
        if self.ready or self.request is not None or self._on_top() or not self.is_mounted:
            self.ready = True
            return
        sample = ApprovalRequest(
            request_id=WARM_UP,
            plan_id=WARM_UP,
            action_id=WARM_UP,
            agent=WARM_UP,
            tool=WARM_UP,
            risk_level=RiskLevel.HIGH,
            reversible=False,
            confidence=0.5,
            threshold=0.85,
            args={"warm_up": "never shown", "rows": [1, 2, 3]},
            action_hash="0" * 64,
            requested_at=datetime.now(UTC),
            timeout_s=60.0,
        )
        self.request = sample  # settled (as at start-up): no key, tick or timer acts on it
        try:
            # Twice, as a request filled in place is: once laid out, the arguments text gets
            # the box's height (`_arrange`), and the layout settles as it will stay.
            for _ in range(2):
                if self.request is not sample:
                    return  # a request was put on the prompt meanwhile (not by the console)
                self._fill(sample)
                head = Text(" HIGH-RISK LIVE ESCALATION ", style="bold reverse red")
                self.query_one("#approval-head", Readout).show(head)
                self.query_one("#approval-countdown", Readout).show(Text("no answer in 60s", style="bold yellow"))
                await self._settle_layout()
            if self.request is sample:
                self._compositor.render_update(full=True, screen_stack=list(self.app.screen_stack))
        finally:
            if self.request is sample:
                self.request = None
                self._filled_id = None
                self._head_shown = None
                self._countdown_shown = None
            self.ready = True

    async def _settle_layout(self) -> None:
        """Lay the prompt out off screen until no widget asks for another layout: a change of
        size reaches the screen as a message, handled on its own turn of the loop."""
        size = self.app.size
        for _ in range(20):
            await asyncio.sleep(0.005)
            if not (self._layout_required or self._layout_widgets):
                return
            self._refresh_layout(size)  # not the current screen: laid out, not drawn
            self._layout_required = False  # as the screen's own update timer does after one
            self._scroll_required = False

    # -- filling ----------------------------------------------------------------------

    def show_request(self, request: ApprovalRequest) -> asyncio.Future[ApprovalDecision | None]:
        """Make the prompt ask about `request`, before it goes on screen or, after an answer
        that left it up (`stay_up`), on screen. Returns the future of the answer."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)  # replaced unanswered: whoever waits gets no answer
        self._answer = asyncio.get_running_loop().create_future()
        self._close_on_resume = False
        self.request = request
        self.settled = False
        self._settle_on_resume = None
        self.edited_args = None
        self.armed = False
        self.shown_id = None
        if self.is_mounted:
            self._fill(request)
        return self._answer

    def _fill(self, request: ApprovalRequest) -> None:
        # Each widget is touched only where it changes: on screen (a request that waited for
        # the one before it) only the texts are repainted, as long as nothing changes size.
        details = request_details(request)
        self._details_plain = details.plain
        self.query_one("#approval-details", Readout).show(details)
        self._show_args(request.args, "")
        reason = self.query_one("#deny-reason", Input)
        if reason.value:
            reason.value = ""
        if reason.display:
            reason.display = False
        self.set_focus(None)  # nothing of the previous request keeps the keys
        self._filled_id = request.request_id
        self._seen_bottom = False
        self._arrange()
        box = self.query_one("#approval-args", VerticalScroll)
        if box.scroll_y:
            box.scroll_home(animate=False, immediate=True)
        self._tick()
        self._draw_now()

    def _draw_now(self) -> None:
        """On screen, with nothing that changes size: draw the changed text in this call.

        Otherwise Textual draws it on the screen's next update tick (up to 1/60 s after the
        last frame, once every widget has told the screen what changed). With nothing to lay
        out, the regions each widget marked dirty are all there is to draw. Textual 8.2.8
        internals (pinned); a layout, a restyle to come or a batch leaves it to Textual.
        """
        app = self.app
        if not self._on_top() or app._batch_count or self._layout_required or self._layout_widgets:
            return
        widgets = set(self.query(Widget))
        if any(widget._layout_required or widget._refresh_styles_required for widget in widgets):
            return
        self._compositor.update_widgets(widgets)
        self._compositor_refresh()

    def _show_args(self, args: dict[str, Any], diff: str) -> None:
        """The arguments on show and, for an edit, its diff against the agent's."""
        self._args_plain = inert_json(args, 20_000)
        self._diff_plain = diff
        self.query_one("#approval-args-text", Readout).show(Text(self._args_plain))
        box = self.query_one("#approval-edited", Static)
        if box.display != bool(diff):
            box.display = bool(diff)
        if diff:
            box.update(Text("approving runs YOUR edit:\n" + diff, style="yellow"))

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: this handler runs before the screen's own, which updates `self.size`.
        if self.request is not None and self.is_mounted:
            self._arrange(event.size)

    def _arrange(self, size: Size | None = None) -> None:
        """Size the arguments box to the rows left, and decide whether the request fits."""
        request = self.request
        if request is None:
            return
        width, height = size or self.app.size
        inner = min(110, int(width * 0.96)) - 4
        args_rows = wrapped_rows(self._args_plain, inner - 2)
        header = 1 + (1 if self.query_one("#prompt-lock-banner", LockBanner).has_class("-locked") else 0)
        fixed = header + FRAME_ROWS + 1  # + the head line
        fixed += wrapped_rows(self._details_plain, inner)
        fixed += wrapped_rows(KEYS_CONTENT.plain, inner)
        if self._diff_plain:
            fixed += wrapped_rows(self._diff_plain, inner)
        if self.query_one("#deny-reason", Input).display:
            fixed += 3
        room = height - fixed
        fitted = self.fits
        self.fits = width >= MIN_DIALOG_WIDTH and room >= min(args_rows, MIN_ARGS_ROWS)
        if self.fits and not fitted and self.shown_id == request.request_id:
            self._restart_arming()  # now readable for the first time: read it before answering
        box = self.query_one("#approval-args", VerticalScroll)
        # Each property only when it changes: every change asks Textual for a layout pass.
        if box.display != self.fits:
            box.display = self.fits
            # Not approvable here: show only what says so and the keys that still work.
            self.query_one("#approval-details", Static).display = self.fits
        # Its height is set (not left to its text): the same for every request whose arguments
        # take at most STEADY_ARGS_ROWS rows, so the prompt does not change size between them.
        text_rows: int | None = None
        if args_rows <= room:
            rows = min(room, max(args_rows, STEADY_ARGS_ROWS))
            # The text gets the box's height too (a new text then needs no layout), when
            # Textual's own wrapping at the width it has now says it fits. After a resize, or
            # before it was laid out, it takes its own height (and the box scrolls if need be).
            text = self.query_one("#approval-args-text", Readout)
            text_width = text.content_size.width
            if size is None and text_width > 0 and text.get_content_height(Size(0, 0), Size(0, 0), text_width) <= rows:
                text_rows = rows
        else:
            rows = max(MIN_ARGS_ROWS, room)  # a view that scrolls
        if self._args_rows != rows + 2:
            self._args_rows = rows + 2
            box.styles.height = rows + 2
        if self._args_text_rows != text_rows:
            self._args_text_rows = text_rows
            self.query_one("#approval-args-text", Readout).styles.height = "auto" if text_rows is None else text_rows
        too_small = self.query_one("#approval-too-small", Static)
        if too_small.display == self.fits:
            too_small.display = not self.fits
        if not self.fits:
            too_small.update(
                Text(
                    f"ENLARGE THE TERMINAL: this request cannot be shown in full at {width}x{height}, so it"
                    " cannot be approved here. n denies, l locks, q quits.",
                    style="bold reverse yellow",
                )
            )
        self._show_keys()

    def _show_keys(self) -> None:
        keys = self.query_one("#approval-keys", Static)
        content = KEYS_CONTENT if self.fits else KEYS_TOO_SMALL
        if self._keys_shown is not content:
            self._keys_shown = content
            keys.update(content)
        # Dimmed until armed (CSS text-opacity): Textual restyles a node when its classes
        # change, in this call, so the frame that shows a new request shows its keys dimmed.
        keys.set_class(self.fits and not self.armed, "-unarmed")

    # -- showing and arming -----------------------------------------------------------

    def _compositor_refresh(self) -> None:
        # Textual 8.2.8 (pinned) sends a screen's frames to the terminal here: once the
        # current request's prompt has gone out, its countdown starts and the arming delay runs.
        # Only as the top screen (Textual also draws a screen that another one covers).
        super()._compositor_refresh()
        request = self.request
        if (
            request is not None
            and self._on_top()
            and self._filled_id == request.request_id
            and self.shown_id != request.request_id
        ):
            self.shown_id = request.request_id
            self.on_shown(request.request_id)
            self._restart_arming()

    def _on_top(self) -> bool:
        try:
            return self.app.screen is self
        except ScreenStackError:  # no screen at all (the app is closing)
            return False

    def _restart_arming(self) -> None:
        self.armed = False
        self._arm_at = self.monotonic() + self.arm_delay
        self._show_keys()
        self.set_timer(self.arm_delay, self._check_armed)

    def _check_armed(self) -> None:
        if self.armed or self.request is None or self.settled or self.shown_id != self.request.request_id:
            return
        left = self._arm_at - self.monotonic()
        if left <= 0:
            self.armed = True
            self._show_keys()
            self._tick()
        else:
            # Early by our clock (a timer can fire a hair early, or a key restarted the delay
            # after this timer was set): look again when the delay is over.
            self.set_timer(left, self._check_armed)

    def _answerable(self) -> ApprovalRequest | None:
        """The request the keys may answer: only once its prompt is drawn and armed. An answer
        key before that is dropped and restarts the arming delay (a held key never arms it)."""
        request = self.request
        if request is None or self.settled:
            return None
        if self.shown_id != request.request_id:
            self.dropped_keys += 1
            return None
        if not self.armed:
            self.dropped_keys += 1
            self._restart_arming()
            return None
        return request

    # -- the countdown ----------------------------------------------------------------

    def seconds_left(self) -> float:
        if self.request is None:
            return 0.0
        left = self.seconds_left_for(self.request)
        return self.request.timeout_s if left is None else left

    def _tick(self) -> None:
        if self.request is None or self.settled:
            return
        if not self.is_pending(self.request.request_id):
            # Settled in the core (lock, quit, timeout) before this prompt went up, so the
            # settling event was drawn before it: never leave a prompt for nothing on screen.
            self.settle_elsewhere(self.request.request_id)
            return
        waiting = max(1, self.waiting())
        head = Text(" HIGH-RISK LIVE ESCALATION: APPROVAL NEEDED ", style="bold reverse red")
        head.append(f"  request 1 of {waiting} waiting", style="bold magenta" if waiting > 1 else "")
        if self.edited_args is not None:
            head.append("  EDITED by you", style="bold reverse yellow")
        if head != self._head_shown:  # a repaint (and a frame) only when it changes
            self._head_shown = head
            self.query_one("#approval-head", Readout).show(head)
        left = self.seconds_left()
        countdown = Text(
            f"no answer in {left:4.0f}s = EXPIRED (denied)", style="bold red" if left < 10 else "bold yellow"
        )
        if not self.armed and self.fits:
            countdown.append("   keys armed in a moment: wait, do not hold a key", style="dim")
        if countdown != self._countdown_shown:
            self._countdown_shown = countdown
            self.query_one("#approval-countdown", Readout).show(countdown)

    def settle_elsewhere(self, request_id: str) -> None:
        """The core settled `request_id` (timeout, lock, quit): close without answering, if shown."""
        if self.request is None or self.request.request_id != request_id or self.settled:
            return
        if self.is_current:
            self.finish(None)
        else:
            self._settle_on_resume = request_id

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Screen's own handler, which restyles every widget of a screen pushed on
        # top (Textual 8.2.8, pinned): a third of the time the prompt took to appear. The
        # prompt's styles go stale only when the app's CSS changes (a theme), so restyle then.
        css = self.app._css_update_count
        if self._styled_css == css:
            event.refresh_styles = False
        self._styled_css = css
        if self._close_on_resume:
            self.close()
        elif self.request is not None and self._settle_on_resume == self.request.request_id:
            self.finish(None)
        elif self.request is not None and not self.settled:
            # Pushed for a request: draw it right after Screen's own handler has marked the
            # whole screen for a repaint, not on the screen's next update tick (up to 1/60 s
            # later, which was most of the time a pushed prompt took to appear).
            self.call_next(self._draw_now)

    def finish(self, decision: ApprovalDecision | None) -> None:
        if self.settled:
            return
        self.settled = True
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result(decision)
        if not (self.is_current and self.stay_up()):
            self.dismiss(decision)

    def close(self) -> None:
        """Leave the screen, answered (it stayed up for a request that was settled before the
        console could show it). Only the top screen may be dismissed (Textual pops the top one)."""
        self._close_on_resume = False
        if not self.settled or self not in self.app.screen_stack:
            return
        if self.is_current:
            self.dismiss(None)
        else:
            self._close_on_resume = True

    # -- what was seen ----------------------------------------------------------------

    def args_fully_visible(self) -> bool:
        box = self.query_one("#approval-args", VerticalScroll)
        return bool(self.fits and box.display and (box.max_scroll_y == 0 or self._seen_bottom))

    def action_scroll_args(self, rows: int) -> None:
        box = self.query_one("#approval-args", VerticalScroll)
        target = max(0, min(box.max_scroll_y, box.scroll_y + rows))
        box.scroll_to(y=target, animate=False, immediate=True)
        if target >= box.max_scroll_y:
            self._seen_bottom = True

    # -- answers ----------------------------------------------------------------------

    def action_approve(self) -> None:
        request = self._answerable()
        if request is None or not self.fits:
            return
        self.finish(
            grant(
                request,
                OPERATOR,
                "approved at the console" + (" with arguments edited by the operator" if self.edited_args else ""),
                edited_args=self.edited_args,
                args_fully_visible=self.args_fully_visible(),
            )
        )

    def action_deny(self) -> None:
        request = self._answerable()
        if request is not None:
            self.finish(deny(request, OPERATOR, "denied at the console", args_fully_visible=self.args_fully_visible()))

    def action_deny_and_stop(self) -> None:
        request = self._answerable()
        if request is not None:
            self.finish(
                deny(
                    request,
                    OPERATOR,
                    f"denied at the console, and agent {inert(request.agent, 80)} stopped",
                    outcome=ApprovalOutcome.DENIED_AND_STOPPED,
                    args_fully_visible=self.args_fully_visible(),
                )
            )

    def action_deny_with_reason(self) -> None:
        if self._answerable() is None:
            return
        box = self.query_one("#deny-reason", Input)
        box.display = True
        self._arrange()
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        request = self._answerable()
        if request is not None:
            reason = event.value.strip() or "denied at the console"
            self.finish(deny(request, OPERATOR, reason, args_fully_visible=self.args_fully_visible()))

    def action_edit(self) -> None:
        request = self._answerable()
        if request is None or not self.fits:
            return
        current = self.edited_args if self.edited_args is not None else request.args

        def edited(result: dict[str, Any] | None) -> None:
            if result is None or self.request is not request or self.settled:
                return
            self._apply_edit(request, result)

        self.app.push_screen(EditArgsModal(request.tool, current), edited)

    def _apply_edit(self, request: ApprovalRequest, result: dict[str, Any]) -> None:
        self.edited_args = None if result == request.args else result
        if self.edited_args is None:
            self._show_args(request.args, "")
        else:
            self._show_args(self.edited_args, args_diff(request.args, self.edited_args))
        self._seen_bottom = False
        self._arrange()
        self._restart_arming()  # a changed prompt is a new prompt: read it before answering
        self._tick()
