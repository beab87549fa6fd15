"""A log pane's lines with the events behind them: a filter, a row cursor and follow mode.

The lines are drawn by Textual's `Log` (batched writes stay cheap); this keeps the events
beside them, bounded like the lines, so `/` can filter, Enter can open a row's detail and
export can write the rows shown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Log

from core.events import Event

CURSOR_STYLE = Style(reverse=True)


def matches(line: str, needle: str) -> bool:
    """The filter: a case-insensitive text match on the row as shown (agent, tool, state, reason)."""
    return not needle or needle.casefold() in line.casefold()


class RowLog(Log):
    """A `Log` whose rows are events. Scrolled back it stops following (and says so)."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Row up", show=False),
        Binding("down", "cursor(1)", "Row down", show=False),
        Binding("pageup", "cursor(-10)", "Page up", show=False),
        Binding("pagedown", "cursor(10)", "Page down", show=False),
        Binding("enter", "open_row", "Detail", show=False),
        Binding("end", "follow", "Follow", show=False),
    ]

    @dataclass
    class StateChanged(Message):
        """Its filter or its following changed: the pane's title says so."""

        log: RowLog

    @dataclass
    class RowOpened(Message):
        """Enter on a row."""

        log: RowLog
        event: Event

    def __init__(self, *, max_lines: int, id: str) -> None:
        super().__init__(max_lines=max_lines, id=id)
        self.rows: deque[tuple[str, Event]] = deque(maxlen=max_lines)  # every row received
        self.shown: deque[Event] = deque(maxlen=max_lines)  # the rows drawn, line for line
        self.filter_text = ""
        self.cursor: int | None = None  # a line index; None: the newest row, following
        self._following = True

    @property
    def following(self) -> bool:
        return self._following

    def add_rows(self, lines: Sequence[str], events: Sequence[Event]) -> None:
        pairs = list(zip(lines, events, strict=True))
        self.rows.extend(pairs)
        if self.filter_text:
            pairs = [(line, event) for line, event in pairs if matches(line, self.filter_text)]
        if not pairs:
            return
        before = len(self.shown) + len(pairs)
        self.shown.extend(event for _, event in pairs)
        self.write_lines([line for line, _ in pairs], scroll_end=self._following)
        pruned = before - len(self.shown)
        if self.cursor is not None and pruned:
            self.cursor = max(0, self.cursor - pruned)

    def set_filter(self, text: str) -> None:
        """Show only the rows that match `text` ('' shows all); the view follows again."""
        self.filter_text = text
        shown = [(line, event) for line, event in self.rows if matches(line, text)]
        self.clear()
        self.shown.clear()
        self.shown.extend(event for _, event in shown)
        self.cursor = None
        self._following = True
        self.write_lines([line for line, _ in shown], scroll_end=True)
        self.post_message(self.StateChanged(self))

    def action_follow(self) -> None:
        self.follow()

    def follow(self) -> None:
        self.cursor = None
        self._set_following(True)
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def selected(self) -> Event | None:
        if not self.shown:
            return None
        index = len(self.shown) - 1 if self.cursor is None else min(self.cursor, len(self.shown) - 1)
        return self.shown[index]

    def _set_following(self, following: bool) -> None:
        if following != self._following:
            self._following = following
            self.post_message(self.StateChanged(self))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolled back (wheel, scrollbar, cursor): stop following; back at the end with no
        # cursor above the newest row: follow again.
        if new_value < old_value and not self.is_vertical_scroll_end:
            self._set_following(False)
        elif self.is_vertical_scroll_end and self.cursor is None:
            self._set_following(True)

    def action_cursor(self, step: int) -> None:
        if not self.shown:
            return
        last = len(self.shown) - 1
        current = last if self.cursor is None else self.cursor
        self.cursor = max(0, min(last, current + step))
        self._set_following(False)
        self.scroll_to_region_y(self.cursor)
        self.refresh()

    def scroll_to_region_y(self, line: int) -> None:
        height = self.scrollable_content_region.height
        if line < self.scroll_y:
            self.scroll_to(y=line, animate=False, immediate=True)
        elif line >= self.scroll_y + height:
            self.scroll_to(y=line - height + 1, animate=False, immediate=True)

    def action_open_row(self) -> None:
        event = self.selected()
        if event is not None:
            self.post_message(self.RowOpened(self, event))

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.has_focus and self.shown:
            cursor = len(self.shown) - 1 if self.cursor is None else self.cursor
            if int(self.scroll_y) + y == cursor:
                strip = strip.apply_style(CURSOR_STYLE)
        return strip

    def on_resize(self) -> None:
        # Shrunk (a narrow terminal, a tab that hid it), a log is left where the smaller size
        # put it, which is off the end once it grows back; Textual's write scrolls only a log
        # already at the end, so a following log would stop following unseen. It goes back to
        # the end here, at once, whether or not rows come later.
        if self._following:
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
