"""Python SDK for the Phase 24 gate service.

    async with connect("http://127.0.0.1:8724", token, agent="mail_agent") as gate:
        result = await gate.call("memory_search", {"query": "x"}, confidence=0.9)

        @gated_tool(risk="LOW", reversible=True)
        def append_note(text: str) -> dict: ...

        await gate.invoke(append_note, confidence=0.9, text="hello")

Denied, expired, locked and unknown outcomes raise distinct exceptions.
"""

from phase24_sdk.calls import Contract, GatedTool, GateResult, gated_tool
from phase24_sdk.client import Gate, connect
from phase24_sdk.errors import (
    GateAuthError,
    GateConnectionError,
    GateDenied,
    GateError,
    GateExpired,
    GateFailed,
    GateHttpError,
    GateLocked,
    GateTimeout,
    GateUnknown,
)
from phase24_sdk.sync import SyncGate, connect_sync

__all__ = [
    "Contract",
    "Gate",
    "GateAuthError",
    "GateConnectionError",
    "GateDenied",
    "GateError",
    "GateExpired",
    "GateFailed",
    "GateHttpError",
    "GateLocked",
    "GateResult",
    "GateTimeout",
    "GateUnknown",
    "GatedTool",
    "SyncGate",
    "connect",
    "connect_sync",
    "gated_tool",
]
