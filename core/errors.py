"""Every error the core raises, in one hierarchy, so callers can catch what they mean."""

from __future__ import annotations


class Phase24Error(Exception):
    """Base of every error raised by the core."""


class ContractError(Phase24Error, ValueError):
    """A tool contract breaks one of its invariants, or a tool is unknown."""


class TransitionNotAllowed(Phase24Error):
    """An execution state transition that the state machine does not allow."""

    def __init__(self, from_state: str, to_state: str, action_id: str) -> None:
        super().__init__(f"action {action_id!r}: transition {from_state} -> {to_state} is not allowed")
        self.from_state = from_state
        self.to_state = to_state
        self.action_id = action_id


class PlanError(Phase24Error):
    """A plan or validation file cannot be used. The message names the file and field."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        listed = "; ".join(problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        super().__init__(f"{path}: {listed}{more}")


class ConfigError(Phase24Error, ValueError):
    """A Phase24ExecutionConfig value is not acceptable."""


class JournalError(Phase24Error):
    """The durable journal could not be written or read; the system fails closed."""


class VerificationFailed(JournalError):
    """A run's journal, its tables or run.json fail verification: nothing is resumed from it."""
