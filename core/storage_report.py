"""What a storage failure left behind: the actions it held and the effects whose outcome is UNKNOWN.

A run whose journal or output files could not be written must never read as a success.
This report is added to the run summary (and printed on stderr by the command line) so the
operator sees exactly which actions were held at MOCK and which LIVE effects have no
recorded outcome and must be checked in the real system.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from core.orchestrator import OrchestrationResult

#: At most this many held actions are listed by name (all are counted).
MAX_LISTED: Final = 200


def storage_failure_report(
    results: Sequence[OrchestrationResult], unsettled: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """`held_actions` (count and the first MAX_LISTED) and `unrecorded_outcomes` (all of them)."""
    held: list[dict[str, Any]] = []
    count = 0
    for result in results:
        for r in result.tool_results:
            if r["final_state"] == "LOCKED":
                count += 1
                if len(held) < MAX_LISTED:
                    held.append(
                        {
                            "plan_id": result.plan_id,
                            "action_id": r["action_id"],
                            "tool": r["tool"],
                            "reason": r["reason"],
                        }
                    )
    return {
        "held_count": count,
        "held_actions": held,
        "unrecorded_outcomes": [
            {k: intent[k] for k in ("plan_id", "action_id", "agent", "tool", "action_hash")} for intent in unsettled
        ],
    }
