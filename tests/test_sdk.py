"""The Python SDK against a real `phase24 serve`: sync and async, the decorator, and one
distinct exception per way a call ends without running."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from phase24_sdk import (
    GateAuthError,
    GateDenied,
    GateExpired,
    GateHttpError,
    GateLocked,
    connect,
    connect_sync,
    gated_tool,
)
from tests.service_fixtures import Service, add_token, running_service

ran: list[str] = []


@gated_tool(risk="LOW", reversible=True)
def note(text: str) -> dict[str, Any]:
    """Append to a list (this test's side effect)."""
    ran.append(text)
    return {"n": len(ran)}


@gated_tool()  # nothing declared: HIGH risk, irreversible
def wire_money(amount: int) -> str:
    ran.append(f"wire {amount}")
    return "sent"


def answer_next(service: Service, tool: str, decision: str) -> threading.Thread:
    def run() -> None:
        request = service.wait_for_request(service.operator, tool)
        with service.client(service.operator) as http:
            http.post(f"/v1/approvals/{request['request_id']}", json={"decision": decision, "reason": "test"})

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sync_sdk_runs_only_what_the_gate_allows(tmp_path: Path) -> None:
    ran.clear()
    out = tmp_path / "gate"
    with running_service(out, "--approval-timeout", "1.5") as service:
        token = add_token(out, "agent", "bot")
        with connect_sync(service.url, token, agent="bot") as gate:
            searched = gate.call("memory_search", {"query": "x"}, 0.9)
            assert (searched.decision, searched.mode, searched.ran) == ("allowed", "LIVE", False)
            assert searched.value["final_state"] == "COMPLETED"  # the service ran it

            low = gate.invoke(note, 0.9, text="hello")
            assert (low.ran, low.value, low.decision) == (True, {"n": 1}, "allowed")
            unsure = gate.invoke(note, 0.6, text="unsure")  # LOW at 0.6: DRY_RUN only
            assert (unsure.ran, unsure.mode) == (False, "DRY_RUN") and ran == ["hello"]

            approver = answer_next(service, "wire_money", "approve")
            approved = gate.invoke(wire_money, 0.95, amount=5)
            approver.join()
            assert (approved.ran, approved.decision, approved.value) == (True, "approved", "sent")

            denier = answer_next(service, "wire_money", "deny")
            with pytest.raises(GateDenied) as denied:
                gate.invoke(wire_money, 0.95, amount=6)
            denier.join()
            assert denied.value.status["decision"] == "denied"

            with pytest.raises(GateExpired):  # nobody answers within --approval-timeout
                gate.invoke(wire_money, 0.95, amount=7)
            assert ran == ["hello", "wire 5"]

            with service.client(service.operator) as http:
                http.post("/v1/lock", json={"reason": "stop"})
            with pytest.raises(GateLocked):
                gate.invoke(note, 0.9, text="after lock")

            with pytest.raises(GateHttpError) as bad:
                gate.call("memory_search", {}, 1.5)
            assert (bad.value.http_status, bad.value.field) == (422, "confidence")
        with connect_sync(service.url, "p24_wrong", agent="bot") as stranger, pytest.raises(GateAuthError):
            stranger.call("memory_search", {}, 0.9)
        assert ran == ["hello", "wire 5"]
        service.stop()


def test_async_sdk_decorator_and_failure_report(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        token = add_token(out, "agent", "bot")

        async def main() -> None:
            async with connect(service.url, token, agent="bot") as gate:

                @gate.tool(confidence=0.9, risk="MEDIUM", reversible=True)
                async def fetch(page: int) -> dict[str, Any]:
                    await asyncio.sleep(0)
                    return {"page": page}

                result = await fetch(page=3)
                assert (result.ran, result.value, result.status["state"]) == (True, {"page": 3}, "COMPLETED")

                @gate.tool(confidence=0.9, risk="MEDIUM", reversible=True)
                def broken() -> None:
                    raise RuntimeError("disk on fire")

                with pytest.raises(RuntimeError):
                    await broken()
                results = await asyncio.gather(*(fetch(page=i) for i in range(10)))
                assert [r.value["page"] for r in results] == list(range(10))

        asyncio.run(main())
        with service.client(service.operator) as http:
            assert 'phase24_grants_total{status="failed"} 1.0' in http.get("/metrics").text
        service.stop()
    failed = [line for line in (out / "tool_execution_log.jsonl").read_text().splitlines() if "disk on fire" in line]
    assert len(failed) == 1


def test_a_proposal_can_wait_for_its_decision_in_the_same_request(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        token = add_token(out, "agent", "bot")
        body = {"agent": "bot", "tool": "memory_search", "args": {"q": 1}, "confidence": 0.9, "action_id": "w1"}
        with service.client(token) as http:
            bad = http.post("/v1/proposals?wait=abc", json=body)
            assert (bad.status_code, bad.json()["field"]) == (422, "wait")
            too_long = http.post("/v1/proposals?wait=61", json=body)
            assert (too_long.status_code, too_long.json()["field"]) == (422, "wait")
            decided = http.post("/v1/proposals?wait=10", json=body)
            assert decided.status_code == 201
            status = decided.json()
            assert (status["state"], status["mode"], status["decision"], status["decided"]) == (
                "COMPLETED",
                "LIVE",
                "allowed",
                True,
            )
            assert status["duplicate"] is False and status["result"]["final_state"] == "COMPLETED"
            again = http.post("/v1/proposals?wait=10", json=body)  # the same action_id: the same proposal
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert again.json()["proposal_id"] == status["proposal_id"]
            # A HIGH-risk call is not decided within a short wait: the status says so.
            held = http.post("/v1/proposals?wait=0.2", json=body | {"tool": "database_write", "action_id": "w2"})
            assert held.status_code == 201 and held.json()["decided"] is False
            assert held.json()["state"] == "AWAITING_APPROVAL"
            plain = http.post("/v1/proposals", json=body | {"action_id": "w3"})
            assert plain.status_code == 201 and set(plain.json()) == {"proposal_id", "duplicate"}
        with service.client(service.operator) as http:
            assert http.get("/v1/state").json()["proposals"] == 3  # the refused waits journaled nothing
        assert service.stop()[0] == 0


def test_an_operator_edit_is_what_the_sdk_runs(tmp_path: Path) -> None:
    ran.clear()
    out = tmp_path / "gate"
    with running_service(out) as service:
        token = add_token(out, "agent", "bot")

        def edit() -> None:
            request = service.wait_for_request(service.operator, "wire_money")
            with service.client(service.operator) as http:
                http.post(
                    f"/v1/approvals/{request['request_id']}",
                    json={"decision": "approve", "edited_args": {"amount": 2}, "args_fully_visible": True},
                )

        editor = threading.Thread(target=edit)
        editor.start()
        with connect_sync(service.url, token, agent="bot") as gate:
            result = gate.invoke(wire_money, 0.95, amount=500)
        editor.join()
        assert (result.ran, result.decision) == (True, "approved")
        assert ran == ["wire 2"]  # the approved (edited) arguments, never the proposed 500


Seen = list[tuple[str, str, dict[str, Any]]]


def _scripted_gate(answers: dict[str, dict[str, Any]], seen: Seen) -> httpx.MockTransport:
    """A stand-in service (httpx's MockTransport): a canned JSON answer per path, every request kept."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        seen.append((request.method, request.url.path, body))
        return httpx.Response(200, json=answers[request.url.path])

    return httpx.MockTransport(handle)


GRANTED = {"proposal_id": "p1", "decided": True, "decision": "approved", "mode": "LIVE", "grant_id": "g1"}


def test_both_clients_report_a_failing_function_and_reraise_it() -> None:
    """The flow both clients drive (phase24_sdk/flows.py): a function that raises on a LIVE
    grant is reported to the gate as failed, with its error, and the error reaches the caller."""
    answers = {"/v1/proposals": GRANTED, "/v1/grants/g1/outcome": {**GRANTED, "decision": "failed"}}

    def broken(**_: Any) -> None:
        raise RuntimeError("disk on fire")

    seen: Seen = []
    with connect_sync("http://gate.test", "p24_x", agent="bot") as gate:
        gate._transport = _scripted_gate(answers, seen)
        with pytest.raises(RuntimeError, match="disk on fire"):
            gate.call("crm_write", {"n": 1}, 0.9, broken)
    assert [(m, p) for m, p, _ in seen] == [("POST", "/v1/proposals"), ("POST", "/v1/grants/g1/outcome")]
    assert seen[1][2]["ok"] is False and "disk on fire" in seen[1][2]["error"]

    async def run_async() -> None:
        async with connect("http://gate.test", "p24_x", agent="bot", transport=_scripted_gate(answers, seen)) as gate:
            with pytest.raises(RuntimeError, match="disk on fire"):
                await gate.call("crm_write", {"n": 1}, 0.9, broken)

    seen.clear()
    asyncio.run(run_async())
    assert [(m, p) for m, p, _ in seen] == [("POST", "/v1/proposals"), ("POST", "/v1/grants/g1/outcome")]
    assert seen[1][2]["ok"] is False and "disk on fire" in seen[1][2]["error"]


def test_both_clients_run_the_granted_arguments_and_report_the_result() -> None:
    edited = {**GRANTED, "grant_args": {"n": 2}}
    answers = {"/v1/proposals": edited, "/v1/grants/g1/outcome": {**GRANTED, "decision": "approved"}}
    ran: list[dict[str, Any]] = []

    def fn(**kwargs: Any) -> dict[str, Any]:
        ran.append(kwargs)
        return {"done": kwargs["n"]}

    seen: Seen = []
    with connect_sync("http://gate.test", "p24_x", agent="bot") as gate:
        gate._transport = _scripted_gate(answers, seen)
        result = gate.call("crm_write", {"n": 1}, 0.9, fn)
    assert result.ran and result.value == {"done": 2} and ran == [{"n": 2}]
    assert seen[1][2] == {"ok": True, "result": {"done": 2}, "error": None}

    async def coroutine_fn(**kwargs: Any) -> dict[str, Any]:
        return fn(**kwargs)

    async def run_async() -> Any:
        async with connect("http://gate.test", "p24_x", agent="bot", transport=_scripted_gate(answers, seen)) as gate:
            return await gate.call("crm_write", {"n": 1}, 0.9, coroutine_fn)

    seen.clear()
    result = asyncio.run(run_async())
    assert result.ran and result.value == {"done": 2} and ran == [{"n": 2}, {"n": 2}]
    assert seen[1][2] == {"ok": True, "result": {"done": 2}, "error": None}
