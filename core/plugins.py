"""Executor plugins: what a plugin provides, and how its contracts join the catalogue.

A plugin is an `ExecutorPlugin`: a name, the contracts of any tools it adds (or of standard
tools whose contract it tightens), and a `bind` function that, given its settings and the
run's world directory, returns the bindings of the tools it implements. Plugins are found by
name (core/executor_config.py): the shipped backends, then the `phase24.executors`
entry-point group, then `module:attribute`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from core.bindings import ToolBinding
from core.contracts import RiskLevel, ToolContract, ToolContractRegistry
from core.errors import ConfigError

ENTRY_POINT_GROUP = "phase24.executors"

T = TypeVar("T")
_RISK_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


@dataclass(frozen=True)
class PluginContext:
    """What a plugin's `bind` gets: its settings (its config section), where its effects go."""

    plugin: str
    settings: Mapping[str, Any]
    world: Path
    registry: ToolContractRegistry

    def setting(self, key: str, kind: type[T], default: T | None = None) -> T:
        """A setting of the given type, or `default`; a clear ConfigError names the key."""
        value = self.settings.get(key, default)
        if value is None:
            raise ConfigError(f"executors.{self.plugin}.{key}: required setting is missing")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(
                f"executors.{self.plugin}.{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}"
            )
        return value

    def path(self, key: str, default: str) -> Path:
        """A path setting, relative to the world directory unless absolute."""
        text = self.setting(key, str, default)
        return Path(text) if Path(text).is_absolute() else self.world / text

    def tools(self, default: Iterable[str]) -> list[str]:
        """The `tools` setting (a subset of what the plugin can bind), or all of `default`."""
        offered = list(default)
        chosen = self.settings.get("tools", offered)
        if not isinstance(chosen, list) or not all(isinstance(t, str) for t in chosen):
            raise ConfigError(f"executors.{self.plugin}.tools: expected a list of tool names")
        return chosen


BindFunction = Callable[[PluginContext], Iterable[ToolBinding]]


@dataclass(frozen=True)
class ExecutorPlugin:
    """A plugin: its name, the contracts it adds or tightens, and how it binds its tools."""

    name: str
    bind: BindFunction
    contracts: tuple[ToolContract, ...] = field(default=())
    description: str = ""


def merge_contracts(base: Iterable[ToolContract], plugins: Iterable[ExecutorPlugin]) -> ToolContractRegistry:
    """The catalogue with every plugin's contracts: new tools join, known ones may only get safer.

    A plugin may redeclare a known tool (the files backend makes `file_operation` reversible,
    because it can restore the previous content) but never lower its risk level, drop its
    approval or its permissions; two plugins may not both declare the same tool.
    """
    contracts = {c.name: c for c in base}
    declared_by: dict[str, str] = {}
    for plugin in plugins:
        for contract in plugin.contracts:
            if not isinstance(contract, ToolContract):
                raise ConfigError(
                    f"plugin {plugin.name!r}: contracts must be ToolContract, got {type(contract).__name__}"
                )
            other = declared_by.get(contract.name)
            if other is not None:
                raise ConfigError(f"plugins {other!r} and {plugin.name!r} both declare tool {contract.name!r}")
            declared_by[contract.name] = plugin.name
            known = contracts.get(contract.name)
            if known is not None:
                problem = _weaker(known, contract)
                if problem:
                    raise ConfigError(f"plugin {plugin.name!r}: contract of {contract.name!r} {problem}")
            contracts[contract.name] = contract
    registry = ToolContractRegistry(contracts.values())
    problems = registry.dependency_problems()
    if problems:
        raise ConfigError("tool contracts: " + "; ".join(problems))
    return registry


def _weaker(known: ToolContract, new: ToolContract) -> str:
    if _RISK_RANK[new.risk_level] < _RISK_RANK[known.risk_level]:
        return f"lowers its risk from {known.risk_level.value} to {new.risk_level.value}"
    if known.requires_approval and not new.requires_approval:
        return "drops its approval"
    missing = set(known.required_permissions) - set(new.required_permissions)
    if missing:
        return f"drops permissions {sorted(missing)}"
    return ""
