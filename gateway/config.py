"""The gateway's upstreams: from the command line (`-- COMMAND ARGS`) or a TOML file (`--config`).

```toml
agent = "claude_code"              # the agent name the gateway's calls are recorded under

[upstreams.files]                  # a stdio upstream
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "/tmp/share"]
prefix = "files__"                 # exposed as files__read_file, ... (default: "NAME__" when
                                   # there are several upstreams, "" when there is one)
confidence = 0.9                   # default confidence of this upstream's calls
timeout_s = 30                     # per-call limit (MOCK, DRY_RUN and LIVE each)

[upstreams.files.tools.write_file] # per-tool override (the upstream's own tool name)
risk = "HIGH"                      # LOW | MEDIUM | HIGH
reversible = false
requires_approval = true           # only an explicit `false` drops an approval
confidence = 0.95
timeout_s = 60

[upstreams.search]                 # a streamable HTTP upstream
url = "http://127.0.0.1:8931/mcp"
```

Every problem is one `ConfigError` line naming the file and the field.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contracts import RiskLevel
from core.errors import ConfigError
from core.mcp_contracts import DEFAULT_CONFIDENCE, DEFAULT_TIMEOUT_S, ToolOverride

MAX_RESULT_BYTES = 1_048_576
"""An upstream answer larger than this (as JSON) is withheld from the agent."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{0,32}$")
_UPSTREAM_KEYS = {"command", "args", "env", "cwd", "url", "prefix", "confidence", "timeout_s", "tools"}
_TOOL_KEYS = {"risk", "reversible", "read_only", "requires_approval", "confidence", "timeout_s"}
_TOP_KEYS = {"agent", "upstreams", "max_result_bytes"}


@dataclass(frozen=True)
class UpstreamSpec:
    """One upstream MCP server: a command (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    prefix: str = ""
    confidence: float = DEFAULT_CONFIDENCE
    timeout_s: float = DEFAULT_TIMEOUT_S
    tools: dict[str, ToolOverride] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.url if self.url is not None else " ".join([self.command or "", *self.args])


@dataclass(frozen=True)
class GatewayConfig:
    upstreams: tuple[UpstreamSpec, ...]
    agent: str = "mcp_agent"
    max_result_bytes: int = MAX_RESULT_BYTES


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{where}: expected a number within {low:g}..{high:g}, got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _override(table: Any, where: str) -> ToolOverride:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    _unknown(table, _TOOL_KEYS, where)
    risk = table.get("risk")
    if risk is not None:
        try:
            risk = RiskLevel(risk)
        except ValueError:
            raise ConfigError(f"{where}.risk: expected LOW, MEDIUM or HIGH, got {risk!r}") from None
    return ToolOverride(
        risk=risk,
        reversible=_bool(table["reversible"], f"{where}.reversible") if "reversible" in table else None,
        read_only=_bool(table["read_only"], f"{where}.read_only") if "read_only" in table else None,
        requires_approval=(
            _bool(table["requires_approval"], f"{where}.requires_approval") if "requires_approval" in table else None
        ),
        confidence=_number(table["confidence"], f"{where}.confidence", 0, 1) if "confidence" in table else None,
        timeout_s=_number(table["timeout_s"], f"{where}.timeout_s", 0.001, 3600) if "timeout_s" in table else None,
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _upstream(name: str, table: Any, where: str, prefix_default: str) -> UpstreamSpec:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: upstream name must be 1-32 letters, digits, '_' or '-'")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    _unknown(table, _UPSTREAM_KEYS, where)
    command, url = table.get("command"), table.get("url")
    if (command is None) == (url is None):
        raise ConfigError(f"{where}: give exactly one of `command` (stdio) or `url` (streamable HTTP)")
    if command is not None and (not isinstance(command, str) or not command):
        raise ConfigError(f"{where}.command: expected a non-empty string")
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ConfigError(f"{where}.env: expected a table of strings")
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError(f"{where}.cwd: expected a string")
    prefix = table.get("prefix", prefix_default)
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ConfigError(f"{where}.prefix: expected up to 32 letters, digits, '_', '.' or '-', got {prefix!r}")
    tools = table.get("tools", {})
    if not isinstance(tools, dict):
        raise ConfigError(f"{where}.tools: expected a table of tool tables")
    return UpstreamSpec(
        name=name,
        command=command,
        args=_strings(table.get("args", []), f"{where}.args"),
        env=dict(env),
        cwd=cwd,
        url=url,
        prefix=prefix,
        confidence=_number(table.get("confidence", DEFAULT_CONFIDENCE), f"{where}.confidence", 0, 1),
        timeout_s=_number(table.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}.timeout_s", 0.001, 3600),
        tools={tool: _override(t, f"{where}.tools.{tool}") for tool, t in tools.items()},
    )


def parse_config(data: dict[str, Any], source: str) -> GatewayConfig:
    """A GatewayConfig from a parsed TOML document; `source` names the file in errors."""
    _unknown(data, _TOP_KEYS, source)
    upstreams = data.get("upstreams")
    if not isinstance(upstreams, dict) or not upstreams:
        raise ConfigError(f"{source}: [upstreams.NAME]: at least one upstream is required")
    several = len(upstreams) > 1
    specs = tuple(
        _upstream(name, table, f"{source}: upstreams.{name}", f"{name}__" if several else "")
        for name, table in upstreams.items()
    )
    agent = data.get("agent", "mcp_agent")
    if not isinstance(agent, str) or not 1 <= len(agent) <= 128:
        raise ConfigError(f"{source}: agent: expected a name of 1-128 characters")
    limit = data.get("max_result_bytes", MAX_RESULT_BYTES)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1024 <= limit <= 64 * MAX_RESULT_BYTES:
        raise ConfigError(f"{source}: max_result_bytes: expected an integer within 1024..{64 * MAX_RESULT_BYTES}")
    return GatewayConfig(upstreams=specs, agent=agent, max_result_bytes=limit)


def load_config(path: Path) -> GatewayConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))


def command_line_upstream(command: list[str], confidence: float, timeout_s: float) -> UpstreamSpec:
    """The single upstream given after `--`: no prefix."""
    if not command:
        raise ConfigError("mcp-gateway: give an upstream after `--` (e.g. `-- python server.py`) or --config FILE")
    return UpstreamSpec(
        name="upstream", command=command[0], args=tuple(command[1:]), confidence=confidence, timeout_s=timeout_s
    )
