"""How an approval request gets the operator's attention: the terminal bell and, when
enabled, a desktop notification (notify-send, where it is on PATH). Both are options; the
tests' apps have both off."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.approval import ApprovalRequest
from core.inert import inert

Spawn = Callable[[Sequence[str]], object]


def _spawn(argv: Sequence[str]) -> object:
    # Never waits and never lets the tool write over the console.
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class ApprovalNotice:
    bell: bool = False
    desktop: bool = False
    which: Callable[[str], str | None] = shutil.which
    spawn: Spawn = _spawn
    sent: list[Sequence[str]] = field(default_factory=list)  # desktop notifications sent

    def desktop_command(self, request: ApprovalRequest) -> list[str] | None:
        program = self.which("notify-send")
        if program is None:
            return None
        body = inert(f"{request.agent} wants {request.tool} LIVE ({request.risk_level.value} risk)", 200)
        return [program, "--app-name=phase24", "--urgency=critical", "Phase 24: approval needed", body]

    def approval_requested(self, request: ApprovalRequest, ring: Callable[[], None]) -> None:
        if self.bell:
            ring()
        if self.desktop:
            argv = self.desktop_command(request)
            if argv is not None:
                try:
                    self.spawn(argv)
                    self.sent.append(argv)
                except OSError:
                    pass  # a notification is a courtesy; the prompt is on screen regardless
