"""What the SDK raises: one exception per way a call can end without running."""

from __future__ import annotations

from typing import Any


class GateError(Exception):
    """Base of every SDK error. `status` is the proposal's last status (when there is one)."""

    def __init__(self, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status or {}


class GateConnectionError(GateError, OSError):
    """The service could not be reached, or the connection broke before the answer came
    back (then the service may have acted: a proposal's `action_id` makes a retry safe)."""


class GateDenied(GateError):
    """The operator (or the gate: a duplicate irreversible action) denied the call."""


class GateExpired(GateError):
    """Nobody answered the approval before it expired: denied by timeout."""


class GateLocked(GateError):
    """The system is locked: the call was held at MOCK."""


class GateUnknown(GateError):
    """A grant's outcome never reached the gate within its lease: UNKNOWN, left to the operator."""


class GateFailed(GateError):
    """The execution failed or was aborted (the reason is in the status)."""


class GateHttpError(GateError):
    """The service refused the request: `http_status`, and the `field` it names when it names one."""

    def __init__(self, http_status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"HTTP {http_status}: {message}")
        self.http_status = http_status
        self.field = field


class GateAuthError(GateHttpError):
    """401: a missing or unknown token."""


class GateTimeout(GateError):
    """No decision within the caller's `decision_timeout_s` (the proposal stays pending)."""


_BY_DECISION: dict[str, type[GateError]] = {
    "denied": GateDenied,
    "expired": GateExpired,
    "locked": GateLocked,
    "unknown": GateUnknown,
    "failed": GateFailed,
    "aborted": GateFailed,
}


def raise_for_decision(status: dict[str, Any]) -> None:
    """Raise the decision's exception, if it is one that means "not run"."""
    decision = str(status.get("decision"))
    error = _BY_DECISION.get(decision)
    if error is not None:
        raise error(f"{status.get('tool')} {decision}: {status.get('reason', '')}", status)
