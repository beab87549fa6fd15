"""What the async and sync clients share: request bodies, answers, and the tool decorator."""

from __future__ import annotations

import inspect
import json
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from phase24_sdk.errors import GateAuthError, GateHttpError

Risk = Literal["LOW", "MEDIUM", "HIGH"]
LONG_POLL_S = 30.0
TIMEOUT_S = 10.0
"""Connect, write and read timeout of a request that does not wait (a long-poll adds its wait)."""


@dataclass(frozen=True, slots=True)
class Contract:
    """A tool's declared contract. Declaring nothing means HIGH risk and irreversible."""

    risk: Risk = "HIGH"
    reversible: bool = False
    read_only: bool = False
    description: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "risk": self.risk,
            "reversible": self.reversible,
            "read_only": self.read_only,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class GateResult:
    """How a gated call ended. `ran` is True when your function ran (a LIVE grant);
    `value` is its return value, or the service's result for a tool the service runs."""

    proposal_id: str
    mode: str | None
    decision: str
    ran: bool
    value: Any = None
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatedTool:
    """A function the agent executes itself, behind the gate, with a declared contract."""

    fn: Callable[..., Any]
    name: str
    contract: Contract

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


def gated_tool(
    *, risk: Risk = "HIGH", reversible: bool = False, read_only: bool = False, name: str | None = None
) -> Callable[[Callable[..., Any]], GatedTool]:
    """Decorator: `@gated_tool(risk="LOW", reversible=True)` makes `fn` a `GatedTool`;
    run it with `await gate.invoke(tool, confidence, **kwargs)` (or `gate.invoke` on SyncGate)."""

    def wrap(fn: Callable[..., Any]) -> GatedTool:
        return GatedTool(fn, name or fn.__name__, Contract(risk, reversible, read_only, (fn.__doc__ or "")[:1024]))

    return wrap


def proposal_body(
    agent: str,
    tool: str,
    args: dict[str, Any],
    confidence: float,
    *,
    plan_id: str | None,
    action_id: str | None,
    contract: Contract | None,
    resource: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agent": agent,
        "tool": tool,
        "args": args,
        "confidence": confidence,
        "action_id": action_id or uuid.uuid4().hex,
    }
    if plan_id is not None:
        body["plan_id"] = plan_id
    if contract is not None:
        body["contract"] = contract.body()
    if resource is not None:
        body["resource"] = resource
    return body


def dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON (what `json=` would send, without its spaces)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Wire:
    """What the async and sync clients send with every request, built once per client.

    The clients hand each request straight to their httpx transport (its connection pool
    keeps one keep-alive connection): the client layer above it (URL merging, cookies,
    redirects, auth flows, event hooks) is work a gate call never needs, done per request.
    """

    __slots__ = ("_timeouts", "_urls", "base", "headers")

    def __init__(self, url: str, token: str) -> None:
        self.base = url.rstrip("/")
        self.headers = httpx.Headers(
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
        )
        self._timeouts: dict[float, dict[str, float | None]] = {}
        self._urls: dict[str, httpx.URL] = {}

    def request(
        self, method: str, path: str, content: bytes | None, params: dict[str, float] | None, timeout: float | None
    ) -> httpx.Request:
        target = self.base + path
        if params:
            target += "?" + "&".join(f"{key}={value!r}" for key, value in params.items())
        url = self._urls.get(target)
        if url is None:
            url = httpx.URL(target)
            if len(self._urls) >= 64:  # a proposal's own URL (GET /v1/proposals/{id}) is used a few times at most
                self._urls.clear()
            self._urls[target] = url
        seconds = timeout or TIMEOUT_S
        timeouts = self._timeouts.get(seconds)
        if timeouts is None:
            timeouts = self._timeouts[seconds] = httpx.Timeout(seconds).as_dict()
        return httpx.Request(method, url, headers=self.headers, content=content, extensions={"timeout": timeouts})


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY / ALL_PROXY, unless NO_PROXY
    covers its host), as httpx's client would use it."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    bypass: Callable[[str, dict[str, str]], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if not proxy or bypass(parsed.host, proxies):
        return None
    return proxy


def outcome_body(value: Any) -> dict[str, Any]:
    result = value if isinstance(value, dict) else {"value": value}
    return {"ok": True, "result": result}


def failure_body(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:4096]}


def checked(status: int, content: bytes) -> dict[str, Any]:
    """The JSON body of a 2xx answer; a GateHttpError naming the field otherwise."""
    if status >= 400:
        try:
            body = json.loads(content)
            message, field_name = str(body.get("error")), body.get("field")
        except (ValueError, AttributeError):
            message, field_name = content[:200].decode("utf-8", "replace"), None
        cls = GateAuthError if status == 401 else GateHttpError
        raise cls(status, message, field_name)
    try:
        data = json.loads(content)
    except ValueError:
        raise GateHttpError(status, f"the answer is not JSON: {content[:200]!r}") from None
    if not isinstance(data, dict):
        raise GateHttpError(status, "the answer is not a JSON object")
    return data


def granted_args(status: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """The arguments a LIVE grant is for: the operator's edit when there was one (the approval
    binds to its hash), else the proposed ones."""
    granted = status.get("grant_args")
    return dict(granted) if isinstance(granted, dict) else args
