"""MCP annotations to contracts, overrides, names and the confidence argument (core/mcp_contracts.py)."""

from __future__ import annotations

import pytest

from core.contracts import RiskLevel
from core.errors import ConfigError
from core.mcp_contracts import (
    CONFIDENCE_ARG,
    Annotations,
    ToolOverride,
    contract_for,
    contract_name,
    split_confidence,
    with_confidence_arg,
)
from gateway.config import parse_config


def test_annotations_map_to_risk_as_documented() -> None:
    read_only = contract_for("look", "", Annotations(read_only=True))
    assert (read_only.risk_level, read_only.reversible, read_only.read_only) == (RiskLevel.LOW, True, True)
    assert not read_only.requires_approval
    for nothing in (None, Annotations(), Annotations(idempotent=True)):
        c = contract_for("act", "", nothing)
        assert (c.risk_level, c.reversible, c.requires_approval) == (RiskLevel.HIGH, False, True)
    additive = contract_for("add", "", Annotations(destructive=False))
    assert (additive.risk_level, additive.requires_approval) == (RiskLevel.MEDIUM, True)
    closed = contract_for("add", "", Annotations(destructive=False, open_world=False))
    assert (closed.risk_level, closed.requires_approval, closed.reversible) == (RiskLevel.MEDIUM, False, False)


def test_an_override_never_drops_an_approval_silently() -> None:
    lowered = contract_for("act", "", None, ToolOverride(risk=RiskLevel.MEDIUM))
    assert lowered.risk_level is RiskLevel.MEDIUM and lowered.requires_approval
    explicit = contract_for("act", "", None, ToolOverride(risk=RiskLevel.MEDIUM, requires_approval=False))
    assert not explicit.requires_approval
    with pytest.raises(ConfigError, match=r"^tool 'act': .*: act: HIGH risk tools must require approval$"):
        contract_for("act", "", None, ToolOverride(requires_approval=False))  # HIGH without approval
    with pytest.raises(ConfigError, match="act"):
        contract_for("act", "", None, ToolOverride(risk=RiskLevel.LOW, requires_approval=False))  # LOW irreversible


def test_contract_names_are_valid_and_distinct() -> None:
    taken: set[str] = set()
    a = contract_name("files__read-file", taken)
    taken.add(a)
    b = contract_name("files__read_file_x", taken)
    assert a != b and a.startswith("files__read_file_")
    assert contract_name("lookup", set()) == "lookup"
    assert contract_name("9Tool", set()).startswith("t_9tool_")


def test_confidence_argument_is_stripped_and_checked() -> None:
    assert split_confidence({"a": 1}, 0.9) == (0.9, {"a": 1})
    assert split_confidence({"a": 1, CONFIDENCE_ARG: 0.5}, 0.9) == (0.5, {"a": 1})
    for bad in (1.5, -0.1, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match=CONFIDENCE_ARG):
            split_confidence({CONFIDENCE_ARG: bad}, 0.9)
    schema = with_confidence_arg({"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]})
    assert set(schema["properties"]) == {"k", CONFIDENCE_ARG} and schema["required"] == ["k"]


def test_config_errors_name_the_file_and_field() -> None:
    with pytest.raises(ConfigError, match=r"gw.toml: upstreams.a.tools.t.risk: expected LOW, MEDIUM or HIGH"):
        parse_config({"upstreams": {"a": {"command": "x", "tools": {"t": {"risk": "NONE"}}}}}, "gw.toml")
    with pytest.raises(ConfigError, match=r"gw.toml: upstreams.a: give exactly one of"):
        parse_config({"upstreams": {"a": {"command": "x", "url": "http://h/mcp"}}}, "gw.toml")
    with pytest.raises(ConfigError, match=r"upstreams.a.confidence"):
        parse_config({"upstreams": {"a": {"command": "x", "confidence": 2}}}, "gw.toml")
    two = parse_config({"upstreams": {"a": {"command": "x"}, "b": {"url": "http://h/mcp", "prefix": "B."}}}, "f")
    assert [u.prefix for u in two.upstreams] == ["a__", "B."]


def test_the_example_config_parses_and_a_reversible_override_is_refused() -> None:
    from pathlib import Path

    import mcp_types as types

    from gateway.config import load_config
    from gateway.tools import gateway_tools
    from gateway.upstream import Upstream

    example = load_config(Path(__file__).resolve().parent.parent / "examples" / "mcp_gateway" / "gateway.toml")
    assert [u.name for u in example.upstreams] == ["test", "search"]
    cfg = parse_config({"upstreams": {"a": {"command": "x", "tools": {"t": {"reversible": True}}}}}, "f")
    upstream = Upstream(cfg.upstreams[0])
    upstream.tools = [types.Tool(name="t", input_schema={"type": "object"})]
    with pytest.raises(ConfigError, match=r"upstreams.a.tools.t: reversible = true needs an undo"):
        gateway_tools([upstream])
    upstream.tools = [types.Tool(name="other", input_schema={"type": "object"})]
    with pytest.raises(ConfigError, match=r"upstreams.a.tools.t: upstream has no such tool"):
        gateway_tools([upstream])
    plain = Upstream(parse_config({"upstreams": {"a": {"command": "x"}}}, "f").upstreams[0])
    plain.tools = [types.Tool(name="t", input_schema={"type": "object", "properties": {CONFIDENCE_ARG: {}}})]
    with pytest.raises(ConfigError, match=r"tool 't' has its own argument '_phase24_confidence'"):
        gateway_tools([plain])


def test_core_does_not_import_the_mcp_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, core.mcp_contracts, core.harness, core.controller\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_attached_an_override_only_tightens_and_an_approval_is_declared_high() -> None:
    from core.mcp_contracts import attached_judgement

    # what the annotations say stays the floor: the agent-side config cannot lower it
    lowered = attached_judgement(None, ToolOverride(risk=RiskLevel.LOW, read_only=True, requires_approval=False))
    assert (lowered.risk, lowered.requires_approval, lowered.read_only) == (RiskLevel.HIGH, True, False)
    # a MEDIUM tool that needs an approval is declared HIGH: the service asks for HIGH only
    additive = attached_judgement(Annotations(destructive=False))
    assert (additive.risk, additive.requires_approval) == (RiskLevel.HIGH, True)
    closed = attached_judgement(Annotations(destructive=False, open_world=False))
    assert (closed.risk, closed.requires_approval, closed.reversible) == (RiskLevel.MEDIUM, False, False)
    read_only = attached_judgement(Annotations(read_only=True))
    assert (read_only.risk, read_only.reversible, read_only.read_only) == (RiskLevel.LOW, True, True)
    # tightening applies
    pinned = attached_judgement(Annotations(read_only=True), ToolOverride(risk=RiskLevel.HIGH, read_only=False))
    assert (pinned.risk, pinned.requires_approval, pinned.read_only) == (RiskLevel.HIGH, True, False)
    assert "stricter" in pinned.source
    c = contract_for("act", "", Annotations(read_only=True), ToolOverride(requires_approval=True), attached=True)
    assert (c.risk_level, c.requires_approval) == (RiskLevel.HIGH, True)
