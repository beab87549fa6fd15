"""MCP tool annotations to tool contracts: how the gateway judges an upstream's tools.

Pure (no `mcp` import): the gateway passes the annotations it read as plain values, so this
mapping is tested on its own. The protocol's defaults when a tool says nothing are
`readOnlyHint` false, `destructiveHint` true, `idempotentHint` false, `openWorldHint` true:

| annotations | risk | reversible | approval for LIVE |
|---|---|---|---|
| `readOnlyHint: true` | LOW | yes (no effect; no journal intent) | no |
| none, or `destructiveHint` true or absent | HIGH | no | yes |
| `destructiveHint: false` (additive), `openWorldHint` true or absent | MEDIUM | no | yes |
| `destructiveHint: false` and `openWorldHint: false` | MEDIUM | no | no |

`idempotentHint` is recorded but never lowers the risk: the gateway never retries a LIVE
call whose outcome is unknown, idempotent or not. An override (the gateway's config) may set
`risk`, `reversible`, `read_only` and `requires_approval`; it can drop an approval only by
saying `requires_approval = false` itself, never as a side effect of lowering the risk.

Attached to a gate service (`--attach`), the gateway's config is the agent's side, not the
operator's, so `attached_judgement` lets an override only tighten what the annotations say
(the higher risk, an approval if either asks for one, read-only only if both say so), and
declares a tool that needs an approval as HIGH: the service asks an approval for exactly
its agent-declared HIGH tools. The service keeps its own rules on top: a tool of its own
catalogue cannot be declared at all, and the first declaration of a tool is fixed.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.contracts import RiskLevel, ToolContract
from core.errors import ConfigError

CONFIDENCE_ARG = "_phase24_confidence"
"""The optional argument the gateway adds to every tool's input schema; stripped before forwarding."""

DEFAULT_CONFIDENCE = 0.9
"""A call's confidence when neither the agent nor the config gives one."""

DEFAULT_TIMEOUT_S = 30.0

_CONTRACT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


@dataclass(frozen=True, slots=True)
class Annotations:
    """A tool's MCP annotations as the upstream sent them (None: not said)."""

    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None

    @property
    def declared(self) -> bool:
        return any(v is not None for v in (self.read_only, self.destructive, self.idempotent, self.open_world))


@dataclass(frozen=True, slots=True)
class ToolOverride:
    """Per-tool settings from the gateway's config (None: not set)."""

    risk: RiskLevel | None = None
    reversible: bool | None = None
    read_only: bool | None = None
    requires_approval: bool | None = None
    confidence: float | None = None
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    """How a tool is judged, and where each part came from (for the record)."""

    risk: RiskLevel
    reversible: bool
    read_only: bool
    requires_approval: bool
    source: str


def judge(annotations: Annotations | None, override: ToolOverride | None = None) -> Judgement:
    """The contract's safety fields from the annotations, then the override (see the module doc)."""
    a = annotations or Annotations()
    if a.read_only is True:
        risk, reversible, read_only, approval = RiskLevel.LOW, True, True, False
        source = "annotations: readOnlyHint"
    elif a.destructive is False:
        closed = a.open_world is False
        risk, reversible, read_only, approval = RiskLevel.MEDIUM, False, False, not closed
        source = "annotations: destructiveHint false" + (", openWorldHint false" if closed else "")
    else:
        risk, reversible, read_only, approval = RiskLevel.HIGH, False, False, True
        source = "annotations: destructive" if a.declared else "no annotations: destructive by the protocol's default"
    o = override
    if o is None or (o.risk, o.reversible, o.read_only, o.requires_approval) == (None,) * 4:
        return Judgement(risk, reversible, read_only, approval, source)
    if o.read_only is not None:
        read_only = o.read_only
        if read_only:
            reversible = True
    if o.reversible is not None:
        reversible = o.reversible
    if o.risk is not None:
        risk = o.risk
    # Lowering the risk never drops the approval by itself: only `requires_approval = false` does.
    if o.requires_approval is not None:
        approval = o.requires_approval
    elif risk is RiskLevel.HIGH:
        approval = True
    return Judgement(risk, reversible, read_only, approval, source + "; overridden by the config")


_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def attached_judgement(annotations: Annotations | None, override: ToolOverride | None = None) -> Judgement:
    """How a tool is declared to a gate service: the override may only tighten (see the module doc)."""
    base = judge(annotations)
    risk, approval, read_only, source = base.risk, base.requires_approval, base.read_only, base.source
    if (
        override is not None
        and (override.risk, override.reversible, override.read_only, override.requires_approval) != (None,) * 4
    ):
        o = judge(annotations, override)
        risk = o.risk if _RANK[o.risk] > _RANK[risk] else risk
        approval = approval or o.requires_approval
        read_only = read_only and o.read_only
        source += "; the config's override applies only where it is stricter (attached)"
    if approval:
        risk = RiskLevel.HIGH  # the service asks an approval for its agent-declared HIGH tools only
    elif risk is RiskLevel.LOW and not read_only:
        risk = RiskLevel.MEDIUM  # LOW is for read-only tools (the gateway cannot undo an effect)
    return Judgement(risk, read_only, read_only, approval, source)


def contract_for(
    name: str,
    description: str,
    annotations: Annotations | None,
    override: ToolOverride | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    attached: bool = False,
) -> ToolContract:
    """The tool contract of one upstream tool (`name`: the contract name, see `contract_name`).

    A combination the contract invariants refuse (HIGH without approval, LOW irreversible,
    read-only irreversible) is a ConfigError naming the tool.
    """
    j = attached_judgement(annotations, override) if attached else judge(annotations, override)
    timeout = override.timeout_s if override is not None and override.timeout_s is not None else timeout_s
    try:
        return ToolContract(
            name=name,
            description=description[:500],
            risk_level=j.risk,
            reversible=j.reversible,
            read_only=j.read_only,
            requires_approval=j.requires_approval,
            timeout_seconds=timeout,
            max_concurrency=16,
        )
    except ValidationError as exc:
        problem = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"tool {name!r}: the override makes an invalid contract: {problem}") from None


def contract_name(exposed: str, taken: set[str]) -> str:
    """A contract name (lower_snake_case, 2-64 characters) for an exposed MCP tool name.

    MCP names allow capitals, dots and dashes; the core's catalogue does not. A name that
    changes, or collides with one already `taken`, gets a short hash of the exposed name.
    """
    base = re.sub(r"[^a-z0-9_]", "_", exposed.lower())
    if not base[:1].isalpha():
        base = "t_" + base
    if base == exposed and _CONTRACT_NAME.match(base) and base not in taken:
        return base
    digest = hashlib.sha256(exposed.encode("utf-8")).hexdigest()[:8]
    name = f"{base[:55]}_{digest}"
    if name in taken:
        raise ConfigError(f"tool {exposed!r}: its contract name {name!r} is already taken")
    return name


def split_confidence(arguments: dict[str, Any], default: float) -> tuple[float, dict[str, Any]]:
    """(confidence, the arguments to forward): `_phase24_confidence` taken out, or `default`.

    A value that is not a finite number within 0..1 is a ValueError naming the argument.
    """
    if CONFIDENCE_ARG not in arguments:
        return default, arguments
    rest = {k: v for k, v in arguments.items() if k != CONFIDENCE_ARG}
    value = arguments[CONFIDENCE_ARG]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{CONFIDENCE_ARG}: expected a number within 0..1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{CONFIDENCE_ARG}: expected a number within 0..1, got {value!r}")
    return float(value), rest


def with_confidence_arg(input_schema: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema with the optional confidence argument added (a copy)."""
    schema = dict(input_schema)
    properties = dict(schema.get("properties") or {})
    properties[CONFIDENCE_ARG] = {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": (
            "Optional (Phase 24 gateway): how confident you are that this call is right, 0..1. "
            "Low confidence keeps the call at MOCK or DRY_RUN; it is removed before the call is forwarded."
        ),
    }
    schema["properties"] = properties
    schema.setdefault("type", "object")
    return schema
