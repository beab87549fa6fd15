"""Phase 21 plans and Phase 22 validations as files: the formats, and a loader that never crashes.

A plan file holds one plan, a list of plans, or `{"plans": [...]}`. A plan lists its
actions (agent, tool, args, confidence, dependencies), or uses the report's
`ToolExecutionPlan` fields (`agent_assignments`, `execution_order`, `confidence_scores`),
which are expanded into actions. Every problem is reported with the file and field path.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.canonical import MAX_DEPTH, NotCanonical, check_json_value, loads_strict
from core.contracts import ExecutionMode, ToolContractRegistry
from core.errors import PlanError

MAX_PLAN_BYTES = 64 * 1024 * 1024
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"

#: A confidence is a JSON number in [0, 1]: not a boolean, not text, not NaN.
Confidence = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]

#: How deep a whole plan file may nest: the plan's own structure plus MAX_DEPTH of arguments.
MAX_DOCUMENT_DEPTH = MAX_DEPTH + 8

#: One set of given field names per distinct combination, shared by the actions that gave it.
#: pydantic keeps such a set on every instance (~0.7 KB each: 70 MB for a 100k-action plan).
#: Sharing is safe because a PlannedAction is frozen (nothing adds to its set) and
#: `model_copy` copies the set before it adds the updated fields to the copy's own.
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class SimulationScript(BaseModel):
    """How the simulated executor behaves for one action (all effects are simulated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0, le=60_000, strict=True, allow_inf_nan=False)
    fail_in: tuple[ExecutionMode, ...] = ()
    timeout_in: tuple[ExecutionMode, ...] = ()
    timeout_attempts: int = Field(default=1, ge=1, le=10, strict=True)
    fail_on_call: int | None = Field(default=None, ge=1, strict=True)
    compensation_fails: bool = Field(default=False, strict=True)


class PlannedAction(BaseModel):
    """One tool call an agent proposes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID)
    agent: str = Field(min_length=1, max_length=128)
    tool: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    confidence: Confidence
    depends_on: tuple[str, ...] = ()
    resource: str | None = Field(default=None, max_length=512)
    simulate: SimulationScript = SimulationScript()

    @field_validator("args")
    @classmethod
    def _args_round_trip(cls, args: dict[str, Any]) -> dict[str, Any]:
        # The action hash is computed over these arguments and recomputed from run.json on
        # resume: refuse anything that would not come back from canonical JSON unchanged.
        try:
            check_json_value(args)
        except NotCanonical as exc:
            raise ValueError(f"@{exc.shown_path or '(args)'}: {exc.problem}") from None
        return args

    @field_validator("agent", "tool", "resource")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        # Interned: a plan names a few agents, tools and resources thousands of times each.
        name = cls._valid_text(value)
        return sys.intern(name) if name is not None else None

    @classmethod
    def _valid_text(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_json_value(value)
            except NotCanonical as exc:
                raise ValueError(exc.problem) from None
        return value

    @model_validator(mode="after")
    def _share_fields_set(self) -> PlannedAction:
        given = self.__pydantic_fields_set__
        key = frozenset(given)
        shared = _FIELDS_SETS.get(key)
        if shared is None:
            shared = _FIELDS_SETS.setdefault(key, given)
        elif shared is not given:
            object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    permissions: tuple[str, ...] = ()


class ToolExecutionPlan(BaseModel):
    """A plan ready to orchestrate: the report's fields plus explicit, ordered actions.

    `agent_assignments`, `execution_order` and `confidence_scores` are derived from the
    actions when the plan is given as actions (and the other way round).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = Field(pattern=_ID)
    description: str = Field(default="", max_length=4096)
    phase21_plan_id: str | None = Field(default=None, max_length=128)
    phase22_validation_id: str | None = Field(default=None, max_length=128)
    agents: dict[str, AgentSpec] | None = None
    actions: tuple[PlannedAction, ...] = ()
    agent_assignments: dict[str, list[str]] = Field(default_factory=dict)
    execution_order: list[str] = Field(default_factory=list)
    confidence_scores: dict[str, Confidence] = Field(default_factory=dict)

    @field_validator("description", "phase21_plan_id", "phase22_validation_id")
    @classmethod
    def _valid_plan_text(cls, value: str | None) -> str | None:
        return PlannedAction._valid_text(value)

    @field_validator("confidence_scores")
    @classmethod
    def _scores_in_range(cls, scores: dict[str, float]) -> dict[str, float]:
        for tool, score in scores.items():
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"confidence for {tool!r} must be within 0..1, got {score}")
        return scores

    @model_validator(mode="before")
    @classmethod
    def _expand_report_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("actions"):
            return data
        order = data.get("execution_order") or []
        assignments = data.get("agent_assignments") or {}
        scores = data.get("confidence_scores") or {}
        if not isinstance(order, list) or not isinstance(assignments, dict):
            return data
        owner: dict[str, str] = {}
        for agent, tools in assignments.items():
            for tool in tools if isinstance(tools, list) else []:
                owner.setdefault(str(tool), str(agent))
        actions = []
        for index, tool in enumerate(order):
            if not isinstance(tool, str):
                return data
            actions.append(
                {
                    "id": f"step{index + 1}",
                    "agent": owner.get(tool, "agent_default"),
                    "tool": tool,
                    "confidence": scores.get(tool, 0.0) if isinstance(scores, dict) else 0.0,
                    "depends_on": [f"step{index}"] if index else [],
                }
            )
        return {**data, "actions": actions}

    @model_validator(mode="after")
    def _consistent(self) -> ToolExecutionPlan:
        # Messages starting with "@path: " name the field; the loader turns them into
        # "field actions[3].depends_on: ..." under the plan's own location.
        if not self.actions:
            raise ValueError("@actions: a plan needs at least one action (actions or execution_order)")
        ids: set[str] = set()
        for i, action in enumerate(self.actions):
            if action.id in ids:
                raise ValueError(f"@actions[{i}].id: action id {action.id!r} is used twice")
            ids.add(action.id)
        for i, action in enumerate(self.actions):
            for dep in action.depends_on:
                if dep not in ids:
                    raise ValueError(
                        f"@actions[{i}].depends_on: action {action.id!r} depends on unknown action {dep!r}"
                    )
                if dep == action.id:
                    raise ValueError(f"@actions[{i}].depends_on: action {action.id!r} depends on itself")
        cycle = _find_cycle(self.actions)
        if cycle:
            raise ValueError(f"@actions: dependency cycle (counting each agent's own order): {' -> '.join(cycle)}")
        if self.agents is not None:
            for i, action in enumerate(self.actions):
                if action.agent not in self.agents:
                    raise ValueError(
                        f"@actions[{i}].agent: action {action.id!r} names agent {action.agent!r},"
                        " not declared in agents"
                    )
        if not self.execution_order:
            assignments: dict[str, list[str]] = {}
            for action in self.actions:
                assignments.setdefault(action.agent, []).append(action.tool)
            object.__setattr__(self, "execution_order", [a.tool for a in self.actions])
            object.__setattr__(self, "agent_assignments", assignments)
            object.__setattr__(self, "confidence_scores", {a.tool: a.confidence for a in self.actions})
        return self

    @property
    def agent_names(self) -> list[str]:
        return list(dict.fromkeys(a.agent for a in self.actions))

    def permissions_of(self, agent: str) -> tuple[str, ...] | None:
        """The agent's permissions, or None when the plan declares none (nothing to check)."""
        if self.agents is None:
            return None
        spec = self.agents.get(agent)
        return spec.permissions if spec else ()


def _find_cycle(actions: Sequence[PlannedAction]) -> list[str]:
    """A cycle through depends_on and each agent's own order (agents run their actions in
    plan order), which would deadlock the plan; empty when there is none."""
    deps: dict[str, tuple[str, ...]] = {}
    previous: dict[str, str] = {}
    for a in actions:
        before = previous.get(a.agent)
        deps[a.id] = (*a.depends_on, before) if before is not None else a.depends_on
        previous[a.agent] = a.id
    state: dict[str, int] = {}
    for root in deps:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            children = deps.get(node, ())
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                path.pop()
    return []


class Phase22Validation(BaseModel):
    """A Phase 22 verdict on a Phase 21 plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validation_id: str = Field(pattern=_ID)
    plan_id: str = Field(min_length=1, max_length=128)
    valid: bool = Field(default=True, strict=True)
    predicted_success: Confidence | None = None
    issues: tuple[str, ...] = ()


class _PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plans: list[ToolExecutionPlan]


class _ValidationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    validations: list[Phase22Validation]


def _field_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in {"tagged-union"}:
            continue
        else:
            out += f".{part}" if out else part
    return out or "(plan)"


def _errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if prefix and tuple(loc[: len(prefix)]) == prefix:
            loc = loc[len(prefix) :]
        message = err["msg"].removeprefix("Value error, ")
        path = _field_path(loc)
        if message.startswith("@") and ": " in message:
            inner, message = message[1:].split(": ", 1)
            path = inner if path == "(plan)" else f"{path}.{inner}"
        problems.append(f"field {path}: {message}")
    return problems


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file, at most MAX_PLAN_BYTES of them; anything else is refused.

    Opened without blocking (a named pipe would otherwise wait for a writer forever), then
    checked on the open descriptor: devices (/dev/zero, /dev/urandom), pipes, sockets and
    directories are not plan files. The read is bounded even if the file grows meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PlanError(str(path), ["file not found"]) from None
    except IsADirectoryError:
        raise PlanError(str(path), ["is a directory, expected a JSON file"]) from None
    except OSError as exc:
        raise PlanError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise PlanError(str(path), ["is a directory, expected a JSON file"])
        if not stat.S_ISREG(info.st_mode):
            raise PlanError(str(path), ["is not a regular file (a device, pipe or socket); expected a JSON file"])
        if info.st_size > MAX_PLAN_BYTES:
            raise PlanError(str(path), [f"file is {info.st_size} bytes, larger than {MAX_PLAN_BYTES}"])
        chunks: list[bytes] = []
        total = 0
        while total <= MAX_PLAN_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_PLAN_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_PLAN_BYTES:
            raise PlanError(str(path), [f"file is larger than {MAX_PLAN_BYTES} bytes"])
        return b"".join(chunks)
    except OSError as exc:
        raise PlanError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(str(path), [f"not UTF-8 text (byte {exc.start})"]) from None
    try:
        data = loads_strict(text)
    except json.JSONDecodeError as exc:
        raise PlanError(str(path), [f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except NotCanonical as exc:
        raise PlanError(str(path), [f"not usable JSON: {exc.problem}"]) from None
    except RecursionError:
        raise PlanError(str(path), ["JSON nested too deeply"]) from None
    except ValueError as exc:  # e.g. an integer literal longer than Python allows
        raise PlanError(str(path), [f"not usable JSON: {exc}"]) from None
    if _SURROGATE_ESCAPE.search(text):
        # Only an escape can put a lone surrogate into decoded text; the walk is for that rare case.
        _check_document(data, str(path))
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_document(data: Any, source: str) -> None:
    """Every value of a decoded document must round-trip through canonical JSON (core.canonical)."""
    try:
        check_json_value(data, max_depth=MAX_DOCUMENT_DEPTH)
    except NotCanonical as exc:
        raise PlanError(source, [f"field {exc.shown_path or '(plan)'}: {exc.problem}"]) from None


def parse_plans(data: Any, source: str, registry: ToolContractRegistry | None = None) -> list[ToolExecutionPlan]:
    """Validate already-decoded JSON as plans; raise PlanError naming `source` and the field."""
    single = isinstance(data, dict) and "plans" not in data
    if isinstance(data, list):
        data = {"plans": data}
    elif single:
        data = {"plans": [data]}
    elif not isinstance(data, dict):
        raise PlanError(source, [f"top level must be an object or a list, got {type(data).__name__}"])
    if isinstance(data.get("plans"), list) and not data["plans"]:
        raise PlanError(source, ["field plans: the file holds no plans (an empty list is not a plan)"])
    try:
        plans = _PlanFile.model_validate(data).plans
    except ValidationError as exc:
        raise PlanError(source, _errors(exc, ("plans", 0) if single else ())) from None
    except RecursionError:
        raise PlanError(source, ["JSON nested too deeply"]) from None
    if registry is not None:
        problems = [
            f"field {'' if single else f'plans[{p}].'}actions[{a}].tool: unknown tool {action.tool!r}"
            for p, plan in enumerate(plans)
            for a, action in enumerate(plan.actions)
            if action.tool not in registry
        ]
        if problems:
            raise PlanError(source, problems)
    return plans


def load_plan_file(path: Path, registry: ToolContractRegistry | None = None) -> list[ToolExecutionPlan]:
    return parse_plans(_read_json(path), str(path), registry)


def expand_plan_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories contribute their *.json files, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.is_file())
            if not found:
                raise PlanError(str(path), ["directory holds no *.json plan files"])
            files.extend(found)
        else:
            files.append(path)
    return files


def load_plans(paths: Sequence[Path], registry: ToolContractRegistry | None = None) -> list[ToolExecutionPlan]:
    plans: list[ToolExecutionPlan] = []
    seen: dict[str, str] = {}
    for file in expand_plan_paths(paths):
        for plan in load_plan_file(file, registry):
            if plan.plan_id in seen:
                raise PlanError(
                    str(file),
                    [f"field plan_id: {plan.plan_id!r} already defined in {seen[plan.plan_id]}"],
                )
            seen[plan.plan_id] = str(file)
            plans.append(plan)
    return plans


def load_validations(path: Path) -> list[Phase22Validation]:
    data = _read_json(path)
    if isinstance(data, list):
        data = {"validations": data}
    elif not isinstance(data, dict):
        raise PlanError(str(path), ["top level must be an object or a list"])
    try:
        return _ValidationFile.model_validate(data).validations
    except ValidationError as exc:
        raise PlanError(str(path), _errors(exc)) from None
