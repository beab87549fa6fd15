"""What the console shows of a live agent's grant: an UNKNOWN outcome goes to the operator."""

from __future__ import annotations

from datetime import UTC, datetime

from console.run_view import RunView
from core.events import GrantOutcome


def outcome(status: str, seq: int, error: str | None = None) -> GrantOutcome:
    return GrantOutcome(
        seq=seq,
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        run_id="r",
        grant_id=f"r:G{seq}",
        proposal_id=f"prop-{seq}",
        agent="bot\x1b[31m",
        tool="post_note",
        status=status,  # type: ignore[arg-type]
        error=error,
    )


def test_an_unknown_grant_outcome_is_put_before_the_operator() -> None:
    view = RunView()
    quiet = view.apply([outcome("DONE", 1)])
    assert not quiet.unknown and view.unknown_outcomes == []
    loud = view.apply([outcome("UNKNOWN", 2, "no outcome reported within the 300s lease")])
    assert loud.unknown and loud.header
    assert view.unknown_outcomes == [
        "post_note (prop-2, agent bot\\x1b[31m): no outcome reported within the 300s lease"
    ]
