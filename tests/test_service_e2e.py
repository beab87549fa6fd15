"""End to end: a real `phase24 serve` on a free loopback port, agents in other processes
(the SDK example and raw HTTP), the operator answering over the API."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.conftest import read_jsonl
from tests.service_fixtures import ROOT, add_token, env, phase24, running_service

RAW_AGENT = textwrap.dedent(
    """
    # An agent in "any language": plain HTTP (urllib), no SDK.
    import json, sys, urllib.request
    url, token, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        req = urllib.request.Request(url + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=70) as resp:
            return json.loads(resp.read())
    pid = call("POST", "/v1/proposals", {"agent": "data_agent", "tool": tool, "args": {"table": "t"},
                                         "confidence": 0.9, "action_id": "raw-1"})["proposal_id"]
    status = call("GET", f"/v1/proposals/{pid}?wait=0")
    while not status["decided"]:
        status = call("GET", f"/v1/proposals/{pid}?wait=30")
    print(json.dumps(status))
    """
)


def raw_agent(url: str, token: str, tool: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RAW_AGENT, url, token, tool], env=env(), stdout=subprocess.PIPE, text=True
    )


def events_until(service_url: str, token: str, kind: str, since: int = 0) -> list[dict[str, object]]:
    """Read the SSE stream from `since` until an event of `kind` arrives."""
    seen: list[dict[str, object]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{service_url}/v1/events", params={"since": since}, headers=headers, timeout=30) as resp:
        assert resp.status_code == 200
        current: dict[str, str] = {}
        for line in resp.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
            elif not line and "data" in current:
                event = json.loads(current["data"])
                assert str(event["seq"]) == current["id"] and event["kind"] == current["event"]
                seen.append(event)
                current = {}
                if event["kind"] == kind:
                    return seen
    raise AssertionError(f"stream ended before {kind}")


def test_two_agents_one_approved_one_denied_then_locked(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out, "--lease", "30") as service:
        mail = add_token(out, "agent", "mail_agent")
        data = add_token(out, "agent", "data_agent")
        viewer = add_token(out, "viewer", "dashboard")
        sdk_agent = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples" / "agent.py"),
                "--url",
                service.url,
                "--token",
                mail,
                "--agent",
                "mail_agent",
            ],
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        http_agent = raw_agent(service.url, data, "database_write")
        op = service.operator

        email = service.wait_for_request(op, "msgraph_send_email")
        with service.client(op) as http:
            answer = http.post(f"/v1/approvals/{email['request_id']}", json={"decision": "approve", "reason": "ok"})
            assert answer.status_code == 200 and answer.json()["approved"] is True
            status = service.wait_for_request(op, "post_status")
            denied = http.post(f"/v1/approvals/{status['request_id']}", json={"decision": "deny", "reason": "no"})
            assert denied.json()["approved"] is False
            service.wait_for_request(op, "database_write")
            locked = http.post("/v1/lock", json={"reason": "end of shift"})
            assert locked.json() == {"locked": True, "reason": "end of shift"}

        sdk_out, _ = sdk_agent.communicate(timeout=60)
        http_out, _ = http_agent.communicate(timeout=60)
        assert sdk_agent.returncode == 1, sdk_out  # one call was denied
        lines = {line.split()[0]: line for line in sdk_out.splitlines() if line and not line.startswith(" ")}
        assert "approved" in lines["msgraph_send_email"] and "run by the service" in lines["msgraph_send_email"]
        assert "ran here" in lines["append_note"]
        assert "GateDenied" in lines["post_status"] and "[post_status]" not in sdk_out
        assert (tmp_path / "agent_notes.jsonl").read_text().count("\n") == 1
        final = json.loads(http_out)
        assert (final["state"], final["decision"]) == ("LOCKED", "locked")

        # A watcher sees every event from the start, and can resume after any seq.
        watched = events_until(service.url, viewer, "system_locked")
        kinds = [e["kind"] for e in watched]
        # The journal's own state records (run_state) may come first; then the run starts.
        assert next(k for k in kinds if k != "run_state") == "run_started" and kinds.count("proposal_received") == 7
        assert [e["seq"] for e in watched] == list(range(1, len(watched) + 1))
        tail = events_until(service.url, viewer, "system_locked", since=int(str(watched[-3]["seq"])))
        assert [e["seq"] for e in tail] == [e["seq"] for e in watched[-2:]]

        with service.client(viewer) as http:
            metrics = http.get("/metrics").text
        assert "phase24_locked 1.0" in metrics
        assert 'phase24_approvals_total{answer="approved"} 1.0' in metrics
        assert "phase24_proposals_total 7.0" in metrics and "phase24_pending_approvals 0.0" in metrics
        assert "phase24_system_health_score" in metrics and "phase24_tool_success_rate" in metrics

        code, said = service.stop(signal.SIGTERM)
    assert code == 0 and "stopped; 7 proposals" in said

    assert phase24("verify", str(out)).returncode == 0
    decisions = read_jsonl(out / "operator_decisions.jsonl")
    assert [(d["decision"], d["by"]) for d in decisions] == [
        ("APPROVE", "operator:operator"),
        ("DENY", "operator:operator"),
        ("LOCK", "operator:operator"),
        ("DENY", "lock"),
    ]
    assert len(read_jsonl(out / "tool_execution_log.jsonl")) == 7
    summary = json.loads((out / "orchestration_summary.json").read_text())
    assert summary["plans_processed"] == 7 and summary["locked"] is True
    effects = read_jsonl(out / "simulated_effects.jsonl")
    assert [e["tool"] for e in effects if e["tool"] == "msgraph_send_email"] == ["msgraph_send_email"]
    assert not any(e["tool"] == "database_write" for e in effects)


def test_roles_are_enforced_by_the_service(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        agent = add_token(out, "agent", "data_agent")
        viewer = add_token(out, "viewer", "dash")
        with service.client(agent) as http:
            pid = http.post(
                "/v1/proposals", json={"agent": "data_agent", "tool": "database_write", "confidence": 0.9}
            ).json()["proposal_id"]
        request = service.wait_for_request(service.operator, "database_write")
        path = f"/v1/approvals/{request['request_id']}"
        with service.client(agent) as http:
            assert http.post(path, json={"decision": "approve"}).status_code == 403
            assert http.post("/v1/unlock", json={"reason": "x"}).status_code == 403
            assert http.post("/v1/lock", json={"reason": "x"}).status_code == 403
            assert http.get("/v1/events").status_code == 403
            other = http.post("/v1/proposals", json={"agent": "mail_agent", "tool": "memory_search", "confidence": 1})
            assert other.status_code == 403 and other.json()["field"] == "agent"
        stranger = add_token(out, "agent", "mail_agent")
        with service.client(stranger) as http:
            assert http.get(f"/v1/proposals/{pid}").status_code == 404  # another agent's proposal
        with service.client(viewer) as http:
            assert http.post(path, json={"decision": "approve"}).status_code == 403
            assert http.post("/v1/lock", json={"reason": "x"}).status_code == 403
            assert http.post("/v1/pause").status_code == 403
            assert http.post("/v1/proposals", json={}).status_code == 403
            assert http.get(f"/v1/proposals/{pid}").json()["state"] == "AWAITING_APPROVAL"
        for token in ("p24_wrong", service.operator + "x"):
            with service.client(token) as http:
                response = http.post(path, json={"decision": "approve"})
                assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert httpx.post(service.url + path, json={"decision": "approve"}).status_code == 401  # no token at all
        with service.client(service.operator) as http:
            assert [r["request_id"] for r in http.get("/v1/approvals").json()["pending"]] == [request["request_id"]]
            state = http.get("/v1/state").json()
            assert state["locked"] is False and state["pending_approvals"] == 1
        code, _ = service.stop()
    assert code == 0
    conn = sqlite3.connect(out / "journal.sqlite3")
    decided = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records WHERE kind = 'approval_decided'")]
    # Nothing was decided by any refused request: the only decision is the stop's denial.
    assert [(d["approved"], d["decided_by"]) for d in decided] == [(False, "service")]
    assert read_jsonl(out / "operator_decisions.jsonl")[0]["by"] == "service"


def test_bad_requests_get_a_4xx_naming_the_field(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        agent = add_token(out, "agent", "a1")
        with service.client(agent) as http:
            deep: list[object] = []
            for _ in range(40):
                deep = [deep]
            cases = [
                (b"{not json", 400, "body"),
                (b"[1, 2]", 400, "body"),
                (b'{"agent": "a1", "tool": "memory_search", "confidence": 0.5, "args": {"x": NaN}}', 400, "body"),
                (b'{"args": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400, "body"),
                (
                    b'{"agent": "a1", "tool": "x1", "confidence": 0.5, "args": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}",
                    422,
                    "args",
                ),
                (json.dumps({"agent": "a1", "tool": "memory_search", "confidence": 2}).encode(), 422, "confidence"),
                (json.dumps({"agent": "a1", "tool": "Bad Tool", "confidence": 0.5}).encode(), 422, "tool"),
                (json.dumps({"agent": "a1", "tool": "memory_search"}).encode(), 422, "confidence"),
                (json.dumps({"agent": "a1", "tool": "x1", "confidence": 0.5, "extra": 1}).encode(), 422, "extra"),
                (
                    b'{"agent": "a1", "tool": "memory_search", "confidence": 0.5, "args": "' + b"x" * 70_000 + b'"}',
                    413,
                    "body",
                ),
            ]
            for body, status, field in cases:
                response = http.post("/v1/proposals", content=body)
                assert (response.status_code, response.json()["field"]) == (status, field), body[:60]
            assert http.get("/v1/proposals/prop-999").status_code == 404
            assert http.get("/v1/proposals/prop-1?wait=abc").status_code in (404, 422)
            ok = http.post("/v1/proposals", json={"agent": "a1", "tool": "memory_search", "confidence": 0.9})
            assert ok.status_code == 201
            bad_wait = http.get(f"/v1/proposals/{ok.json()['proposal_id']}?wait=500")
            assert (bad_wait.status_code, bad_wait.json()["field"]) == (422, "wait")
        document = httpx.get(f"{service.url}/v1/openapi.json").json()
        for path in (
            "/v1/proposals",
            "/v1/proposals/{proposal_id}",
            "/v1/grants/{grant_id}/outcome",
            "/v1/approvals/{request_id}",
            "/v1/lock",
            "/v1/unlock",
            "/v1/events",
            "/v1/seat",
            "/v1/seat/{seat_id}",
            "/metrics",
        ):
            assert path in document["paths"]
        assert document["components"]["schemas"]["ProposalIn"]["required"] == ["agent", "tool", "confidence"]
        code, _ = service.stop()
    assert code == 0
    # Only the one valid proposal was journaled.
    conn = sqlite3.connect(out / "journal.sqlite3")
    assert conn.execute("SELECT count(*) FROM records WHERE kind = 'proposal_received'").fetchone() == (1,)


def test_sigkill_mid_approval_loses_nothing_and_resume_settles_it(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out, "--lease", "60") as service:
        agent = add_token(out, "agent", "a1")
        with service.client(agent) as http:
            waiting = http.post("/v1/proposals", json={"agent": "a1", "tool": "database_write", "confidence": 0.9})
            granted = http.post(
                "/v1/proposals",
                json={
                    "agent": "a1",
                    "tool": "post_note",
                    "confidence": 0.9,
                    "contract": {"risk": "LOW", "reversible": True},
                },
            )
            status = http.get(f"/v1/proposals/{granted.json()['proposal_id']}?wait=10").json()
        assert waiting.status_code == 201 and status["state"] == "GRANTED"
        service.wait_for_request(service.operator, "database_write")
        code, _ = service.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL

    verified = phase24("verify", str(out))
    assert verified.returncode == 0, verified.stdout
    conn = sqlite3.connect(out / "journal.sqlite3")
    kinds = [k for (k,) in conn.execute("SELECT kind FROM records ORDER BY seq")]
    assert kinds.count("proposal_received") == 2
    assert "approval_requested" in kinds and "grant_issued" in kinds  # both durable before the agent saw them
    assert conn.execute("SELECT tool, status FROM intents").fetchall() == [("post_note", "PENDING")]
    conn.close()

    resumed = phase24("resume", str(out))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "UNKNOWN outcome, not retried: post_note" in resumed.stdout
    conn = sqlite3.connect(out / "journal.sqlite3")
    assert conn.execute("SELECT status FROM intents").fetchall() == [("UNKNOWN",)]
    assert phase24("verify", str(out)).returncode == 0


def test_a_non_loopback_address_is_refused_without_allow_remote(tmp_path: Path) -> None:
    done = phase24("serve", "--host", "0.0.0.0", "--port", "0", "--out", str(tmp_path / "g"))
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--allow-remote" in done.stderr
    assert not (tmp_path / "g" / "journal.sqlite3").exists()


def test_a_dropped_connection_neither_loses_nor_duplicates_a_proposal(tmp_path: Path) -> None:
    out = tmp_path / "gate"
    with running_service(out) as service:
        agent = add_token(out, "agent", "a1")
        body = json.dumps({"agent": "a1", "tool": "memory_search", "confidence": 0.9, "action_id": "once"}).encode()
        host, port = service.url.removeprefix("http://").split(":")
        request = (
            f"POST /v1/proposals HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {agent}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)  # and hang up without reading the answer
        # A slow client: half its body sent, then it stalls (it holds its connection open
        # while the others go on); nothing is recorded for it.
        slow = socket.create_connection((host, int(port)))
        slow.sendall(request[: len(request) - 10])
        with service.client(service.operator) as http:
            deadline = time.monotonic() + 10
            while http.get("/v1/state").json()["proposals"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        with service.client(agent) as http:
            retry = http.post("/v1/proposals", content=body)  # the SDK's retry: same action_id
            assert retry.status_code == 200 and retry.json() == {"proposal_id": "prop-1", "duplicate": True}
            assert http.get("/v1/proposals/prop-1?wait=10").json()["decision"] == "allowed"
        code, _ = service.stop()
        slow.close()
    assert code == 0
    conn = sqlite3.connect(out / "journal.sqlite3")
    assert conn.execute("SELECT count(*) FROM records WHERE kind = 'proposal_received'").fetchone() == (1,)
