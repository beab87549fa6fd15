"""Which executors a run uses: the config file, plugin discovery, and binding at start.

A config file (TOML) names plugins and gives each its settings:

    plugins = ["files", "sqlite"]          # shipped backends, entry-point names, or module:attribute
    [executors.files]
    root = "files"                          # relative to the run's world directory (OUT/world)
    [executors.sqlite]
    init_sql = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT);"

`--executors NAME[,NAME]` adds plugins on the command line. Everything is checked before the
run starts (plugins found and of the right type, contracts merged, every binding checked
against its contract); a problem is one ConfigError line naming the file, plugin or tool.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from core.bindings import ToolBinding
from core.contracts import ToolContract, ToolContractRegistry, standard_contracts
from core.errors import ConfigError, ContractError
from core.executors import ExecutorRegistry
from core.plugins import ENTRY_POINT_GROUP, ExecutorPlugin, PluginContext, merge_contracts

#: The shipped local backends, found by name without installing anything.
BUILTIN_PLUGINS = {
    "files": "core.backends.files:PLUGIN",
    "sqlite": "core.backends.sqlite_store:PLUGIN",
    "outbox": "core.backends.outbox:PLUGIN",
}
WORLD_DIR = "world"
EXECUTORS_RECORD = "executors.json"


@dataclass(frozen=True)
class ExecutorSpec:
    """What to load: plugin references in order, and settings by plugin name."""

    plugins: tuple[str, ...] = ()
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "--executors"

    def to_json(self) -> str:
        return json.dumps({"plugins": list(self.plugins), "executors": self.settings}, sort_keys=True, default=str)


def read_config(path: Path) -> ExecutorSpec:
    """Parse a TOML executor config; every problem names the file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return spec_from_data(data, str(path))


def spec_from_data(data: dict[str, Any], source: str) -> ExecutorSpec:
    unknown = sorted(set(data) - {"plugins", "executors"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (expected 'plugins' and [executors.NAME] sections)")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ConfigError(f"{source}: plugins: expected a list of plugin names")
    sections = data.get("executors", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise ConfigError(f"{source}: executors: expected [executors.NAME] tables of settings")
    return ExecutorSpec(tuple(plugins), {str(k): dict(v) for k, v in sections.items()}, source)


def combined_spec(config: Path | None, names: Iterable[str]) -> ExecutorSpec | None:
    """The config file's spec plus the plugins named with --executors (None when neither is given)."""
    extra = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if config is None and not extra:
        return None
    spec = read_config(config) if config is not None else ExecutorSpec()
    plugins = tuple(dict.fromkeys([*spec.plugins, *extra]))
    return ExecutorSpec(plugins, spec.settings, spec.source if config is not None else "--executors")


def find_plugin(ref: str) -> ExecutorPlugin:
    """A shipped backend, an entry point of the `phase24.executors` group, or `module:attribute`."""
    target = BUILTIN_PLUGINS.get(ref)
    obj: object
    if target is None:
        found = entry_points(group=ENTRY_POINT_GROUP, name=ref)
        if found:
            (point, *_) = tuple(found)
            try:
                obj = point.load()
            except Exception as exc:
                raise ConfigError(
                    f"plugin {ref!r}: entry point {point.value!r} failed to load: {type(exc).__name__}: {exc}"
                ) from None
            return _checked(ref, obj)
        if ":" not in ref:
            shipped = ", ".join(BUILTIN_PLUGINS)
            raise ConfigError(
                f"plugin {ref!r}: not a shipped backend ({shipped}), not an installed {ENTRY_POINT_GROUP} "
                "entry point, and not module:attribute"
            )
        target = ref
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"plugin {ref!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"plugin {ref!r}: module {module_name!r} has no attribute {attribute!r}") from None
    return _checked(ref, obj)


def _checked(ref: str, obj: object) -> ExecutorPlugin:
    if not isinstance(obj, ExecutorPlugin):
        raise ConfigError(f"plugin {ref!r}: is a {type(obj).__name__}, not a core.plugins.ExecutorPlugin")
    if not callable(obj.bind):
        raise ConfigError(f"plugin {ref!r}: bind is not callable")
    return obj


@dataclass
class ExecutorSetup:
    """Plugins found and their contracts merged; `bind` binds their tools for one run."""

    spec: ExecutorSpec
    plugins: list[ExecutorPlugin]
    registry: ToolContractRegistry
    bound: dict[str, str] = field(default_factory=dict)
    real_tools: list[str] = field(default_factory=list)

    def bind(self, executors: ExecutorRegistry, world: Path) -> None:
        """Ask every plugin for its bindings and check each against its tool's contract."""
        for plugin in self.plugins:
            context = PluginContext(plugin.name, self.spec.settings.get(plugin.name, {}), world, self.registry)
            try:
                bindings = list(plugin.bind(context))
            except ConfigError as exc:
                raise ConfigError(f"{self.spec.source}: {exc}") from None
            except Exception as exc:
                raise ConfigError(f"plugin {plugin.name!r}: bind failed: {type(exc).__name__}: {exc}") from None
            for binding in bindings:
                self._bind_one(executors, plugin, binding)

    def _bind_one(self, executors: ExecutorRegistry, plugin: ExecutorPlugin, binding: object) -> None:
        if not isinstance(binding, ToolBinding):
            raise ConfigError(f"plugin {plugin.name!r}: bind returned a {type(binding).__name__}, not a ToolBinding")
        other = self.bound.get(binding.tool)
        if other is not None:
            raise ConfigError(f"plugins {other!r} and {plugin.name!r} both bind tool {binding.tool!r}")
        steps = {"mock": binding.mock, "dry_run": binding.dry_run, "live": binding.live}
        for step, implementation in steps.items():
            if not callable(implementation):
                raise ConfigError(f"plugin {plugin.name!r}: tool {binding.tool!r}: {step} is not callable")
        try:
            executors.bind(binding.tool, binding)
        except ContractError as exc:
            raise ConfigError(f"plugin {plugin.name!r}: {exc}") from None
        self.bound[binding.tool] = plugin.name
        if not binding.simulated:
            self.real_tools.append(binding.tool)

    @property
    def real(self) -> bool:
        """True when a plugin bound a tool to a non-simulated executor."""
        return bool(self.real_tools)


def load_setup(spec: ExecutorSpec, base: Sequence[ToolContract] | None = None) -> ExecutorSetup:
    """Find every plugin, check its section names, and merge its contracts into the catalogue."""
    plugins = [find_plugin(ref) for ref in spec.plugins]
    names = [p.name for p in plugins]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"{spec.source}: two plugins are named {duplicate!r}")
    stray = sorted(set(spec.settings) - set(names))
    if stray:
        raise ConfigError(
            f"{spec.source}: [executors.{stray[0]}] configures a plugin that is not loaded (plugins = {names})"
        )
    registry = merge_contracts(standard_contracts() if base is None else base, plugins)
    return ExecutorSetup(spec, plugins, registry)


def read_record(run_dir: Path) -> ExecutorSpec | None:
    """The executors a run used (written at its start), for a resume; None for a simulated run."""
    path = run_dir / EXECUTORS_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable executors record: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: unreadable executors record")
    return spec_from_data(data, str(path))
