"""A live agent behind the gate, no LLM needed: run it against `phase24 serve`.

    .venv/bin/phase24 serve --out /tmp/gate                      # prints an operator token
    TOKEN=$(.venv/bin/phase24 token add --out /tmp/gate --role agent mail_agent)
    .venv/bin/python examples/agent.py --url http://127.0.0.1:8724 --token "$TOKEN" --agent mail_agent

It makes six calls through the SDK: a LOW read-only tool the service runs (auto-approved),
two preparatory steps, a HIGH-risk email the operator must approve, and two tools the agent
runs itself (its own functions, run only when the gate grants LIVE; the outcome is reported; the
second declares no contract, so it is HIGH risk and needs an approval too).
Each line it prints says how the call ended: ran, allowed below LIVE, denied, expired, locked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from phase24_sdk import GateError, GateResult, connect, gated_tool

NOTES = Path("agent_notes.jsonl")


@gated_tool(risk="MEDIUM", reversible=True)
def append_note(text: str) -> dict[str, Any]:
    """Append a note to agent_notes.jsonl (this agent's own side effect)."""
    with NOTES.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": text}) + "\n")
    return {"written": str(NOTES)}


@gated_tool()  # declares nothing: HIGH risk, irreversible, so LIVE needs the operator's approval
def post_status(text: str) -> dict[str, Any]:
    """Post a status line (here: print it; a real agent would call a chat API)."""
    print(f"    [post_status] {text}")
    return {"posted": True}


def show(step: str, outcome: GateResult | GateError) -> None:
    if isinstance(outcome, GateError):
        print(f"{step:<24} {type(outcome).__name__}: {outcome}")
    else:
        if outcome.ran:
            how = "ran here (LIVE grant, outcome reported)"
        elif outcome.status.get("executed_by") == "service":
            how = "run by the service (simulated executor)"
        else:
            how = "not run: the gate allowed only " + str(outcome.mode)
        print(f"{step:<24} {outcome.decision:<9} mode {outcome.mode or '-':<8} {how}")
    sys.stdout.flush()


async def main(url: str, token: str, agent: str, to: str) -> int:
    async with connect(url, token, agent=agent) as gate:
        steps: list[tuple[str, Any]] = [
            ("memory_search", lambda: gate.call("memory_search", {"query": f"last mail to {to}"}, 0.92)),
            ("msgraph_get_user", lambda: gate.call("msgraph_get_user", {"user": to}, 0.95)),
            ("msgraph_create_draft", lambda: gate.call("msgraph_create_draft", {"to": to, "body": "Welcome"}, 0.95)),
            ("msgraph_send_email", lambda: gate.call("msgraph_send_email", {"to": to, "body": "Welcome"}, 0.95)),
            ("append_note (own tool)", lambda: gate.invoke(append_note, 0.9, text=f"wrote to {to}")),
            ("post_status (own tool)", lambda: gate.invoke(post_status, 0.95, text=f"welcomed {to}")),
        ]
        failures = 0
        for step, run in steps:
            try:
                show(step, await run())
            except GateError as exc:
                failures += 1
                show(step, exc)
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8724")
    parser.add_argument("--token", required=True, help="an agent token for --agent")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--to", default="ada@example.com")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.url, args.token, args.agent, args.to)))
