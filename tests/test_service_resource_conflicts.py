"""RESOURCE conflicts across live agents' proposals, against a real `phase24 serve`: a
proposal on a resource another agent's unfinished proposal uses is a ConflictDetected
(RESOURCE, DELAY) and waits its turn; one agent's own proposals, and other resources, do not."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from core.events import ConflictDetected, ConflictResolved
from core.journal import read_events
from tests.service_fixtures import Service, add_token, phase24, running_service


def propose(http: httpx.Client, agent: str, tool: str, resource: str | None, n: int) -> str:
    body: dict[str, Any] = {"agent": agent, "tool": tool, "args": {"n": n}, "confidence": 0.9}
    if resource is not None:
        body["resource"] = resource
    response = http.post("/v1/proposals", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["proposal_id"])


def until(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def approve(service: Service, op: httpx.Client, tool: str) -> str:
    request = service.wait_for_request(service.operator, tool)
    answer = op.post(f"/v1/approvals/{request['request_id']}", json={"decision": "approve"})
    assert answer.status_code == 200 and answer.json()["approved"], answer.text
    return str(request["proposal_id"] if "proposal_id" in request else request["plan_id"])


def test_proposals_of_two_agents_on_one_resource_run_one_after_the_other(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        ada = service.client(add_token(out, "agent", "ada"))
        bob = service.client(add_token(out, "agent", "bob"))
        op = service.client(service.operator)
        first = propose(ada, "ada", "database_write", "orders/42", 1)  # HIGH: waits for the operator
        until(lambda: op.get("/v1/approvals").json()["pending"], "ada's approval request")
        mine = propose(ada, "ada", "memory_search", "orders/42", 4)  # ada's own: no conflict with ada's
        assert ada.get(f"/v1/proposals/{mine}?wait=10").json()["decision"] == "allowed"
        second = propose(bob, "bob", "database_write", "orders/42", 2)  # the same resource: waits for ada's
        other = propose(bob, "bob", "memory_search", "orders/7", 3)  # another resource: runs now
        assert bob.get(f"/v1/proposals/{other}?wait=10").json()["decision"] == "allowed"
        waiting = bob.get(f"/v1/proposals/{second}?wait=0.5").json()
        assert (waiting["state"], waiting["decided"]) == ("RECEIVED", False)
        assert f"waits for {first}" in waiting["reason"] and "orders/42" in waiting["reason"]
        pending = op.get("/v1/approvals").json()["pending"]
        assert [r["agent"] for r in pending] == ["ada"]  # bob's is not even asked yet

        approve(service, op, "database_write")
        assert ada.get(f"/v1/proposals/{first}?wait=10").json()["decision"] == "approved"
        # Now bob's turn: its approval request comes, and it completes once approved.
        until(lambda: [r for r in op.get("/v1/approvals").json()["pending"] if r["agent"] == "bob"], "bob's request")
        approve(service, op, "database_write")
        done = bob.get(f"/v1/proposals/{second}?wait=10").json()
        assert (done["state"], done["decision"]) == ("COMPLETED", "approved")
        metrics = op.get("/metrics").text
        for client in (ada, bob, op):
            client.close()
        assert service.stop()[0] == 0

    events = list(read_events(out))
    detected = [e for e in events if isinstance(e, ConflictDetected)]
    resolved = [e for e in events if isinstance(e, ConflictResolved)]
    assert len(detected) == 1 and len(resolved) == 1  # only bob's database_write conflicted
    assert (detected[0].conflict_type, detected[0].resource) == ("RESOURCE", "orders/42")
    assert detected[0].agents == ["ada", "bob"] and detected[0].plan_id == second
    assert resolved[0].strategy == "DELAY"
    conflicts = json.loads((out / "tool_conflicts.json").read_text())
    assert conflicts["by_type"]["RESOURCE"] == 1 and conflicts["by_resolution_strategy"]["DELAY"] == 1
    assert "phase24_conflict_rate" in metrics
    assert phase24("verify", str(out)).returncode == 0


def test_a_bad_resource_is_refused_naming_the_field(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        with service.client(add_token(out, "agent", "ada")) as ada:
            for bad in ("", "a\nb", "x" * 513):
                body = {"agent": "ada", "tool": "memory_search", "confidence": 0.9, "resource": bad}
                response = ada.post("/v1/proposals", json=body)
                assert (response.status_code, response.json()["field"]) == (422, "resource"), bad
        assert service.stop()[0] == 0


def test_stopping_the_service_while_a_proposal_waits_for_a_resource_finishes_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        ada = service.client(add_token(out, "agent", "ada"))
        bob = service.client(add_token(out, "agent", "bob"))
        op = service.client(service.operator)
        propose(ada, "ada", "database_write", "inbox", 1)
        until(lambda: op.get("/v1/approvals").json()["pending"], "ada's approval request")
        waiting = propose(bob, "bob", "database_write", "inbox", 2)
        assert "waits for" in bob.get(f"/v1/proposals/{waiting}?wait=0.3").json()["reason"]
        for client in (ada, bob, op):
            client.close()
        code, said = service.stop()
    assert code == 0 and "stopped; 2 proposals" in said
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["status"] != "SUCCEEDED"  # nothing ran LIVE: ada's was denied by the stop, bob's never asked
    assert phase24("verify", str(out)).returncode == 0
