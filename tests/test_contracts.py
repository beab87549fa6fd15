"""Tool contracts and the registry: invariants, the 18 standard tools, permissions, requests."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.contracts import (
    STANDARD_TOOL_NAMES,
    ExecutionMode,
    RiskLevel,
    ToolContract,
    ToolContractRegistry,
    standard_contracts,
    standard_registry,
)
from core.errors import ContractError

DEPENDENCY_TOOLS = {"ghl_search", "mployer_search", "msgraph_get_user", "msgraph_create_draft"}
HIGH_TOOLS = {
    "ghl_create_contact",
    "ghl_update_contact",
    "mployer_add_contact",
    "msgraph_send_email",
    "file_operation",
    "database_write",
}
MEDIUM_TOOLS = {"form_fill", "button_click", "msgraph_create_draft"}
LOW_TOOLS = {
    "vision_inspect",
    "screenshot_capture",
    "memory_search",
    "goal_query",
    "text_extract",
    "math_compute",
    "ghl_search",
    "mployer_search",
    "msgraph_get_user",
}
READ_ONLY_TOOLS = {
    "vision_inspect",
    "screenshot_capture",
    "memory_search",
    "goal_query",
    "ghl_search",
    "mployer_search",
    "msgraph_get_user",
}


def test_tool_contract_creation_low_risk():
    contract = ToolContract(
        name="vision_probe",
        description="Look at the screen",
        risk_level=RiskLevel.LOW,
        reversible=True,
        read_only=True,
        required_permissions=("screen.read",),
    )
    assert contract.risk_level is RiskLevel.LOW
    assert contract.requires_approval is False
    assert contract.reversible and contract.read_only
    assert contract.compensable is False  # read-only leaves nothing to undo
    assert contract.max_concurrency == 4
    assert contract.timeout_seconds == 30.0
    assert contract.dependencies == ()
    with pytest.raises(ValidationError):
        contract.risk_level = RiskLevel.HIGH  # frozen

    writer = ToolContract(name="scratch_write", description="x", risk_level=RiskLevel.LOW, reversible=True)
    assert writer.compensable is True


def test_tool_contract_creation_high_risk():
    contract = ToolContract(
        name="wire_money",
        description="Send money",
        risk_level=RiskLevel.HIGH,
        reversible=False,
        requires_approval=True,
        required_permissions=("bank.write",),
    )
    assert contract.requires_approval is True
    assert contract.compensable is False

    with pytest.raises(ValidationError, match="HIGH risk tools must require approval"):
        ToolContract(name="wire_money", description="x", risk_level=RiskLevel.HIGH, reversible=False)
    with pytest.raises(ValidationError, match="HIGH risk tools must require approval"):
        ToolContract(
            name="wire_money",
            description="x",
            risk_level=RiskLevel.HIGH,
            reversible=False,
            requires_approval=False,
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad-Name", "risk_level": "LOW", "reversible": True}, "lower_snake_case"),
        ({"name": "x", "risk_level": "LOW", "reversible": True}, "lower_snake_case"),
        ({"name": "delete_all", "risk_level": "LOW", "reversible": False}, "irreversible tool cannot be LOW"),
        (
            {"name": "peek", "risk_level": "MEDIUM", "reversible": False, "read_only": True},
            "read-only tool is reversible",
        ),
        (
            {"name": "loop_tool", "risk_level": "LOW", "reversible": True, "dependencies": ("loop_tool",)},
            "cannot depend on itself",
        ),
        (
            {"name": "perm_tool", "risk_level": "LOW", "reversible": True, "required_permissions": ("dbwrite",)},
            "scope.action",
        ),
        ({"name": "conc_tool", "risk_level": "LOW", "reversible": True, "max_concurrency": 0}, "max_concurrency"),
        ({"name": "slow_tool", "risk_level": "LOW", "reversible": True, "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "extra_tool", "risk_level": "LOW", "reversible": True, "colour": "red"}, "colour"),
    ],
)
def test_tool_contract_invariants_reject(fields, message):
    with pytest.raises(ValidationError, match=message):
        ToolContract(description="d", **fields)


def test_tool_contract_registry_registration():
    registry = standard_registry()
    assert len(registry) == 18
    assert len(STANDARD_TOOL_NAMES) == 14
    assert set(registry.names) == set(STANDARD_TOOL_NAMES) | DEPENDENCY_TOOLS
    assert registry.names == sorted(registry.names)
    for name in STANDARD_TOOL_NAMES:
        assert name in registry
        assert registry.get(name).name == name
    assert registry.dependency_problems() == []
    assert registry.get("button_click").dependencies == ("vision_inspect", "form_fill")
    assert registry.get("ghl_create_contact").dependencies == ("ghl_search",)
    assert registry.get("mployer_add_contact").dependencies == ("mployer_search",)
    assert registry.get("msgraph_send_email").dependencies == ("msgraph_get_user", "msgraph_create_draft")

    with pytest.raises(ContractError, match="already registered"):
        registry.register(registry.get("vision_inspect"))
    assert len(registry) == 18
    with pytest.raises(ContractError, match="already registered"):
        ToolContractRegistry([*standard_contracts(), standard_contracts()[0]])
    with pytest.raises(ContractError, match="unknown tool"):
        registry.get("teleport")
    assert "teleport" not in registry
    # ContractError is a ValueError as well as a Phase24Error
    assert issubclass(ContractError, ValueError)


def test_tool_contract_registry_dependency_problems():
    def tool(name, deps=()):
        return ToolContract(name=name, description="d", risk_level="LOW", reversible=True, dependencies=deps)

    unknown = ToolContractRegistry([tool("alpha", ("ghost",))])
    assert unknown.dependency_problems() == ["alpha depends on unknown tool 'ghost'"]
    cyclic = ToolContractRegistry([tool("alpha", ("beta",)), tool("beta", ("alpha",))])
    problems = cyclic.dependency_problems()
    assert problems and all("cycle" in p for p in problems)
    assert ToolContractRegistry([tool("alpha"), tool("beta", ("alpha",))]).dependency_problems() == []


def test_tool_contract_registry_list_by_risk():
    registry = standard_registry()
    low = {c.name for c in registry.list_by_risk(RiskLevel.LOW)}
    medium = {c.name for c in registry.list_by_risk(RiskLevel.MEDIUM)}
    high = {c.name for c in registry.list_by_risk(RiskLevel.HIGH)}
    assert low == LOW_TOOLS
    assert medium == MEDIUM_TOOLS
    assert high == HIGH_TOOLS
    assert low | medium | high == set(registry.names)
    assert all(c.requires_approval for c in registry.list_by_risk(RiskLevel.HIGH))
    assert not any(c.requires_approval for c in registry.list_by_risk(RiskLevel.LOW))
    assert all(not c.reversible for c in registry.list_by_risk(RiskLevel.HIGH))
    assert ToolContractRegistry().list_by_risk(RiskLevel.HIGH) == []


def test_tool_contract_permission_validation():
    registry = standard_registry()
    assert registry.validate_permissions("database_write", ["db.write"]) is True
    assert registry.validate_permissions("database_write", []) is False
    assert registry.validate_permissions("database_write", ["db.read", "crm.write"]) is False
    assert registry.missing_permissions("database_write", ["crm.write"]) == ["db.write"]
    assert registry.missing_permissions("button_click", []) == ["screen.write"]
    # math_compute needs nothing
    assert registry.get("math_compute").required_permissions == ()
    assert registry.validate_permissions("math_compute", []) is True
    # permissions are matched exactly, not by prefix
    assert registry.validate_permissions("msgraph_send_email", ["mail"]) is False
    assert registry.validate_permissions("msgraph_send_email", iter(["mail.send"])) is True
    with pytest.raises(ContractError):
        registry.validate_permissions("teleport", [])


def test_tool_contract_statistics():
    stats = standard_registry().statistics()
    assert stats["total_tools"] == 18
    assert stats["by_risk"] == {"LOW": 9, "MEDIUM": 3, "HIGH": 6}
    assert stats["approval_required"] == 6
    assert stats["irreversible"] == 7  # the six HIGH tools and button_click
    assert stats["reversible"] == 11
    assert stats["read_only"] == len(READ_ONLY_TOOLS)
    permissions = stats["permissions"]
    assert permissions["screen.read"] == 3  # vision_inspect, screenshot_capture, text_extract
    assert permissions["screen.write"] == 2  # form_fill, button_click
    assert permissions["crm.write"] == 2
    assert list(permissions) == sorted(permissions)

    empty = ToolContractRegistry().statistics()
    assert empty["total_tools"] == 0
    assert empty["by_risk"] == {"LOW": 0, "MEDIUM": 0, "HIGH": 0}


def test_tool_contract_validation_request():
    registry = standard_registry()
    unknown = registry.validate_request("teleport", ExecutionMode.MOCK)
    assert unknown.allowed is False
    assert unknown.problems == ("unknown tool 'teleport'",)

    bare = registry.validate_request("database_write", ExecutionMode.LIVE)
    assert bare.allowed is False
    assert set(bare.problems) == {"missing permission db.write", "LIVE execution requires an explicit approval"}

    no_approval = registry.validate_request("database_write", ExecutionMode.LIVE, granted=["db.write"])
    assert no_approval.allowed is False
    assert no_approval.problems == ("LIVE execution requires an explicit approval",)

    approved = registry.validate_request("database_write", ExecutionMode.LIVE, granted=["db.write"], approved=True)
    assert approved.allowed is True and approved.problems == ()

    # below LIVE no approval is needed, even for HIGH risk
    dry = registry.validate_request("database_write", ExecutionMode.DRY_RUN, granted=["db.write"])
    assert dry.allowed is True
    # LOW/MEDIUM LIVE needs only the permissions
    low_live = registry.validate_request("vision_inspect", ExecutionMode.LIVE, granted=["screen.read"])
    assert low_live.allowed is True
    missing = registry.validate_request("vision_inspect", ExecutionMode.MOCK)
    assert missing.allowed is False and missing.problems == ("missing permission screen.read",)


def test_execution_mode_rank_and_lowest():
    assert [m.rank for m in (ExecutionMode.MOCK, ExecutionMode.DRY_RUN, ExecutionMode.LIVE)] == [0, 1, 2]
    assert ExecutionMode.lowest(ExecutionMode.LIVE, ExecutionMode.DRY_RUN) is ExecutionMode.DRY_RUN
    assert ExecutionMode.lowest(ExecutionMode.LIVE, ExecutionMode.MOCK, ExecutionMode.DRY_RUN) is ExecutionMode.MOCK
