"""Tool contracts: what each tool is allowed to do, how risky it is, and what it needs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ContractError


class RiskLevel(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ExecutionMode(StrEnum):
    MOCK = "MOCK"
    DRY_RUN = "DRY_RUN"
    LIVE = "LIVE"

    @property
    def rank(self) -> int:
        return _MODE_RANK[self]

    @classmethod
    def lowest(cls, *modes: ExecutionMode) -> ExecutionMode:
        return min(modes, key=lambda m: _MODE_RANK[m])


_MODE_RANK = {ExecutionMode.MOCK: 0, ExecutionMode.DRY_RUN: 1, ExecutionMode.LIVE: 2}
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_PERMISSION = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


class ToolContract(BaseModel):
    """The 10 fields of a tool's contract, with the invariants that keep it safe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    risk_level: RiskLevel
    reversible: bool
    read_only: bool = False
    requires_approval: bool = False
    required_permissions: tuple[str, ...] = ()
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    dependencies: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _invariants(self) -> ToolContract:
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be lower_snake_case, 2-64 characters")
        if self.risk_level is RiskLevel.HIGH and not self.requires_approval:
            raise ValueError(f"{self.name}: HIGH risk tools must require approval")
        if not self.reversible and self.risk_level is RiskLevel.LOW:
            raise ValueError(f"{self.name}: an irreversible tool cannot be LOW risk")
        if self.read_only and not self.reversible:
            raise ValueError(f"{self.name}: a read-only tool is reversible by definition")
        for permission in self.required_permissions:
            if not _PERMISSION.match(permission):
                raise ValueError(f"{self.name}: permission {permission!r} must look like 'scope.action'")
        if self.name in self.dependencies:
            raise ValueError(f"{self.name}: a tool cannot depend on itself")
        return self

    @property
    def compensable(self) -> bool:
        """True when a completed execution leaves an effect that rollback can undo."""
        return self.reversible and not self.read_only


class RequestValidation(BaseModel):
    """The answer to "may this agent run this tool in this mode?"."""

    model_config = ConfigDict(frozen=True)

    tool_name: str
    allowed: bool
    problems: tuple[str, ...] = ()


class ToolContractRegistry:
    """The catalogue of tools an agent may call, keyed by name."""

    def __init__(self, contracts: Iterable[ToolContract] = ()) -> None:
        self._contracts: dict[str, ToolContract] = {}
        for contract in contracts:
            self.register(contract)

    def register(self, contract: ToolContract) -> None:
        if contract.name in self._contracts:
            raise ContractError(f"tool {contract.name!r} is already registered")
        self._contracts[contract.name] = contract

    def get(self, name: str) -> ToolContract:
        try:
            return self._contracts[name]
        except KeyError:
            raise ContractError(f"unknown tool {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._contracts

    def __len__(self) -> int:
        return len(self._contracts)

    @property
    def names(self) -> list[str]:
        return sorted(self._contracts)

    def list_by_risk(self, risk: RiskLevel) -> list[ToolContract]:
        return [c for c in self._contracts.values() if c.risk_level is risk]

    def missing_permissions(self, tool_name: str, granted: Iterable[str]) -> list[str]:
        held = set(granted)
        return [p for p in self.get(tool_name).required_permissions if p not in held]

    def validate_permissions(self, tool_name: str, granted: Iterable[str]) -> bool:
        return not self.missing_permissions(tool_name, granted)

    def validate_request(
        self,
        tool_name: str,
        mode: ExecutionMode,
        granted: Iterable[str] = (),
        approved: bool = False,
    ) -> RequestValidation:
        """Check a request against the contract: known tool, permissions, approval for LIVE."""
        if tool_name not in self._contracts:
            return RequestValidation(tool_name=tool_name, allowed=False, problems=(f"unknown tool {tool_name!r}",))
        contract = self._contracts[tool_name]
        problems = [f"missing permission {p}" for p in self.missing_permissions(tool_name, granted)]
        if mode is ExecutionMode.LIVE and contract.requires_approval and not approved:
            problems.append("LIVE execution requires an explicit approval")
        return RequestValidation(tool_name=tool_name, allowed=not problems, problems=tuple(problems))

    def dependency_problems(self) -> list[str]:
        """Unknown dependencies and cycles; empty when the graph is closed and acyclic."""
        problems = [
            f"{c.name} depends on unknown tool {d!r}"
            for c in self._contracts.values()
            for d in c.dependencies
            if d not in self._contracts
        ]
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done or name not in self._contracts:
                return
            if name in visiting:
                problems.append(f"dependency cycle through {name}")
                return
            visiting.add(name)
            for dep in self._contracts[name].dependencies:
                visit(dep)
            visiting.discard(name)
            done.add(name)

        for name in self._contracts:
            visit(name)
        return problems

    def statistics(self) -> dict[str, object]:
        contracts = list(self._contracts.values())
        return {
            "total_tools": len(contracts),
            "by_risk": {r.value: sum(c.risk_level is r for c in contracts) for r in RiskLevel},
            "reversible": sum(c.reversible for c in contracts),
            "irreversible": sum(not c.reversible for c in contracts),
            "read_only": sum(c.read_only for c in contracts),
            "approval_required": sum(c.requires_approval for c in contracts),
            "permissions": dict(sorted(Counter(p for c in contracts for p in c.required_permissions).items())),
        }


def _tool(
    name: str,
    description: str,
    risk: RiskLevel,
    *,
    reversible: bool,
    read_only: bool = False,
    permissions: tuple[str, ...] = (),
    max_concurrency: int = 4,
    timeout: float = 30.0,
    dependencies: tuple[str, ...] = (),
) -> ToolContract:
    return ToolContract(
        name=name,
        description=description,
        risk_level=risk,
        reversible=reversible,
        read_only=read_only,
        requires_approval=risk is RiskLevel.HIGH,
        required_permissions=permissions,
        max_concurrency=max_concurrency,
        timeout_seconds=timeout,
        dependencies=dependencies,
    )


LOW, MEDIUM, HIGH = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH

#: The report's 14 standard tools, in its order.
STANDARD_TOOL_NAMES: tuple[str, ...] = (
    "vision_inspect",
    "screenshot_capture",
    "memory_search",
    "goal_query",
    "form_fill",
    "text_extract",
    "math_compute",
    "button_click",
    "ghl_create_contact",
    "ghl_update_contact",
    "mployer_add_contact",
    "msgraph_send_email",
    "file_operation",
    "database_write",
)


def standard_contracts() -> list[ToolContract]:
    """The 14 standard tools plus the four they depend on, so the dependency graph is closed."""
    return [
        _tool(
            "vision_inspect",
            "Inspect the screen",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("screen.read",),
            max_concurrency=8,
        ),
        _tool(
            "screenshot_capture",
            "Capture a screenshot",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("screen.read",),
            max_concurrency=8,
        ),
        _tool(
            "memory_search",
            "Search agent memory",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("memory.read",),
            max_concurrency=16,
        ),
        _tool(
            "goal_query",
            "Query the goal store",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("goals.read",),
            max_concurrency=16,
        ),
        _tool(
            "form_fill",
            "Fill a form field",
            MEDIUM,
            reversible=True,
            permissions=("screen.write",),
            max_concurrency=2,
        ),
        _tool(
            "text_extract",
            "Extract text into the scratch store",
            LOW,
            reversible=True,
            permissions=("screen.read",),
            max_concurrency=8,
        ),
        _tool("math_compute", "Compute and store a value", LOW, reversible=True, max_concurrency=16),
        _tool(
            "button_click",
            "Click a button",
            MEDIUM,
            reversible=False,
            permissions=("screen.write",),
            max_concurrency=1,
            dependencies=("vision_inspect", "form_fill"),
        ),
        _tool(
            "ghl_create_contact",
            "Create a GoHighLevel CRM contact",
            HIGH,
            reversible=False,
            permissions=("crm.write",),
            max_concurrency=2,
            dependencies=("ghl_search",),
        ),
        _tool(
            "ghl_update_contact",
            "Update a GoHighLevel CRM contact",
            HIGH,
            reversible=False,
            permissions=("crm.write",),
            max_concurrency=2,
        ),
        _tool(
            "mployer_add_contact",
            "Add a contact in Mployer",
            HIGH,
            reversible=False,
            permissions=("mployer.write",),
            max_concurrency=2,
            dependencies=("mployer_search",),
        ),
        _tool(
            "msgraph_send_email",
            "Send an email through Microsoft Graph",
            HIGH,
            reversible=False,
            permissions=("mail.send",),
            max_concurrency=1,
            dependencies=("msgraph_get_user", "msgraph_create_draft"),
        ),
        _tool(
            "file_operation",
            "Write, move or delete a file",
            HIGH,
            reversible=False,
            permissions=("files.write",),
            max_concurrency=2,
        ),
        _tool(
            "database_write",
            "Write to a database",
            HIGH,
            reversible=False,
            permissions=("db.write",),
            max_concurrency=1,
        ),
        _tool(
            "ghl_search",
            "Search GoHighLevel contacts",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("crm.read",),
            max_concurrency=8,
        ),
        _tool(
            "mployer_search",
            "Search Mployer contacts",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("mployer.read",),
            max_concurrency=8,
        ),
        _tool(
            "msgraph_get_user",
            "Look up a user in Microsoft Graph",
            LOW,
            reversible=True,
            read_only=True,
            permissions=("directory.read",),
            max_concurrency=8,
        ),
        _tool(
            "msgraph_create_draft",
            "Create an email draft",
            MEDIUM,
            reversible=True,
            permissions=("mail.draft",),
            max_concurrency=2,
        ),
    ]


def standard_registry() -> ToolContractRegistry:
    return ToolContractRegistry(standard_contracts())
