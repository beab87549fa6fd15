"""Tool bindings: one implementation per mode, so a step can only run what its mode allows.

A `ToolBinding` holds separate callables for MOCK, DRY_RUN and LIVE, and a compensation for
reversible tools. The controller hands each step only the implementation of that step's mode
(swap, not flag): a MOCK or DRY_RUN step never holds a reference to the live implementation,
and no implementation is told which mode it runs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from core.approval import canonical_action_hash
from core.contracts import ExecutionMode
from core.errors import Phase24Error
from core.plans import PlannedAction


class EffectNotApplied(Phase24Error):
    """Raise from a step when you know its effect did not happen (refused, invalid, rolled back).

    The action ends FAILED with this message. Any other exception from a LIVE step ends it
    with an UNKNOWN outcome: the effect may have happened, so it is never retried.
    """


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    """What one execution of a tool returned (a plain dataclass: it is made per execution).

    `effect_unknown` is set when a LIVE run may have had its effect although it did not
    report success (it raised, hung past its timeout, or answered something malformed):
    such an action is never retried and its journal intent is UNKNOWN.
    """

    success: bool
    duration_ms: float
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    simulated: bool = True
    effect_unknown: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool: the action, who runs it, in which plan, which attempt."""

    plan_id: str
    action: PlannedAction
    agent: str
    attempt: int = 1

    @property
    def tool(self) -> str:
        return self.action.tool

    @property
    def args(self) -> dict[str, Any]:
        return self.action.args

    def idempotency_key(self) -> str:
        """The canonical hash of the action's LIVE run (what approvals and the journal use).

        A receiver that sees the same key twice is seeing the same effect requested twice.
        """
        return canonical_action_hash(self.agent, self.action.tool, self.action.args, self.plan_id, ExecutionMode.LIVE)


class ModeImplementation(Protocol):
    """Runs a tool for one mode only; it is not told the mode (it is the mode)."""

    async def __call__(self, call: ToolCall) -> ExecutionOutcome: ...


class Compensation(Protocol):
    """Undoes a completed LIVE run of the same action."""

    async def __call__(self, call: ToolCall) -> ExecutionOutcome: ...


@dataclass(frozen=True, slots=True)
class ToolBinding:
    """A tool's implementations, one per mode, plus its compensation (None if irreversible).

    `simulated` says whether the implementations touch a real system; `backend` names what
    they act on (for the run's summary).
    """

    tool: str
    mock: ModeImplementation
    dry_run: ModeImplementation
    live: ModeImplementation
    compensate: Compensation | None = None
    simulated: bool = False
    backend: str = "plugin"
