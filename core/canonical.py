"""Canonical JSON: what is hashed must be exactly what is stored and reloaded.

An action's canonical hash binds approvals and durable intents to the action, and a
resumed run recomputes it from `run.json`. So every value that reaches a plan must survive
"encode as JSON, decode again" unchanged: no NaN or infinities (JSON has none: they would be
stored as something else), no lone surrogates (not encodable as UTF-8), only JSON types, and
no nesting deeper than `MAX_DEPTH` (deep values crash encoders and renderers later on).
`check_json_value` refuses anything else with the path of the first bad value.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

#: Deepest nesting accepted inside one value (a plan's tool arguments, a whole plan file).
MAX_DEPTH: Final = 64

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class NotCanonical(ValueError):
    """A value that would not come back unchanged from canonical JSON. `path` names it."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{self.shown_path}: {problem}" if path else problem)

    @property
    def shown_path(self) -> str:
        """The path, shortened in the middle when a deep value makes it long."""
        path = self.path
        return path if len(path) <= 120 else f"{path[:60]}...{path[-40:]}"


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_json_value(value: Any, path: str = "", max_depth: int = MAX_DEPTH) -> None:
    """Raise NotCanonical unless `value` round-trips through canonical JSON unchanged.

    Iterative, so a hostile depth cannot exhaust the interpreter's stack here.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotCanonical(where, f"{item!r} is not a finite number (JSON cannot store it)")
            continue
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                raise NotCanonical(where, "text holds a lone surrogate (not valid Unicode text)")
            continue
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise NotCanonical(where, f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise NotCanonical(where, f"key {key!r} is not text (JSON keys are text)")
                    if _has_lone_surrogate(key):
                        raise NotCanonical(where, "a key holds a lone surrogate (not valid Unicode text)")
                    stack.append((child, _join(where, key), depth + 1))
            else:
                for index, child in enumerate(item):
                    stack.append((child, _join(where, index), depth + 1))
            continue
        raise NotCanonical(where, f"a {type(item).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: the form hashes are computed over.

    Raises ValueError for a value `check_json_value` would refuse (never a silent `str()`).
    """
    return _ENCODER.encode(value)


def _refuse_constant(name: str) -> Any:
    raise NotCanonical("", f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotCanonical("", f"the number {text[:40]} is too large for a finite float")
    return value


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses NaN, Infinity and numbers that overflow to infinity."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
