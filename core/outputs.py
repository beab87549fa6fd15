"""The report's seven output files (plus the operator's decisions), written from events.

JSONL files are append-only: one line per event or plan, flushed at plan boundaries and
barriers. JSON summaries are written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from core.clock import iso
from core.events import (
    ApprovalDecided,
    Event,
    RollbackPerformed,
    RunPaused,
    RunResumed,
    SignalEmitted,
    StateTransition,
    SystemLocked,
    SystemUnlocked,
    event_json,
)

TOOL_EXECUTION_LOG = "tool_execution_log.jsonl"
ORCHESTRATION_SUMMARY = "orchestration_summary.json"
STATE_TRANSITIONS = "execution_state_transitions.jsonl"
TOOL_CONFLICTS = "tool_conflicts.json"
ROLLBACK_EVENTS = "rollback_events.jsonl"
LEARNING_SIGNALS = "learning_signals.jsonl"
SYSTEM_HEALTH = "system_health.json"
OPERATOR_DECISIONS = "operator_decisions.jsonl"

JSONL_FILES = (
    TOOL_EXECUTION_LOG,
    STATE_TRANSITIONS,
    ROLLBACK_EVENTS,
    LEARNING_SIGNALS,
    OPERATOR_DECISIONS,
)
JSON_FILES = (ORCHESTRATION_SUMMARY, TOOL_CONFLICTS, SYSTEM_HEALTH)
REPORT_FILES = (
    TOOL_EXECUTION_LOG,
    ORCHESTRATION_SUMMARY,
    STATE_TRANSITIONS,
    TOOL_CONFLICTS,
    ROLLBACK_EVENTS,
    LEARNING_SIGNALS,
    SYSTEM_HEALTH,
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def write_json_atomic(path: Path, data: Any) -> None:
    """Write indented JSON so a reader sees the old file or the new one, never half of one.

    For large records, encode them without indentation (indentation forces Python's slow
    pure-Python encoder) and use `write_text_atomic`, as run.json does.
    """
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    """Write already-encoded JSON text atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_pieces_atomic(path: Path, pieces: Iterable[str]) -> str:
    """`write_text_atomic` for text given in pieces (never held whole); returns the SHA-256
    of the bytes written (the text and its final newline)."""
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        for piece in pieces:
            data = piece.encode("utf-8")
            digest.update(data)
            fh.write(data)
        digest.update(b"\n")
        fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return digest.hexdigest()


class OutputWriter:
    """Subscriber that turns events into the output files in `out_dir`."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._files: dict[str, IO[str]] = {}
        self._dirty: set[IO[str]] = set()
        self.lines_written: dict[str, int] = dict.fromkeys(JSONL_FILES, 0)

    def open(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in JSONL_FILES:
            self._files[name] = open(self.out_dir / name, "a", encoding="utf-8", buffering=1 << 16)

    def _line(self, name: str, record: dict[str, Any] | str) -> None:
        """Append one line: a record to encode, or a line already encoded."""
        fh = self._files[name]
        fh.write((record if isinstance(record, str) else _dumps(record)) + "\n")
        self._dirty.add(fh)
        self.lines_written[name] += 1

    #: The event classes `observe` writes (the bus routes only these to it).
    OBSERVES: tuple[type[Event], ...] = (
        StateTransition,
        RollbackPerformed,
        SignalEmitted,
        ApprovalDecided,
        SystemLocked,
        SystemUnlocked,
        RunPaused,
        RunResumed,
    )

    def observe(self, event: Event) -> None:
        if not self._files:
            return
        if type(event) is StateTransition:
            # The event's own JSON (shared with the journal) with the schema's "timestamp" in
            # front: from_state, to_state and reason are already fields of the event.
            body = event_json(event)
            start = body.index('"ts":') + 5
            stamp = body[start : body.index(",", start)]
            self._line(STATE_TRANSITIONS, '{"timestamp":' + stamp + "," + body[1:])
        elif isinstance(event, RollbackPerformed):
            self._line(
                ROLLBACK_EVENTS,
                {
                    "total_rollbacks": event.total_rollbacks,
                    "timestamp": iso(event.ts),
                    "plan_id": event.plan_id,
                    "trigger_action_id": event.trigger_action_id,
                    "undone": event.undone,
                    "failed_to_undo": event.failed_to_undo,
                    "simulated": True,
                },
            )
        elif isinstance(event, SignalEmitted):
            self._line(
                LEARNING_SIGNALS,
                {
                    "signal_type": event.signal_type,
                    "tool_name": event.tool_name,
                    "insight": event.insight,
                    "recommended_action": event.recommended_action,
                    "confidence": event.confidence,
                    "target_phase": event.target_phase,
                    "timestamp": iso(event.ts),
                },
            )
        elif isinstance(event, ApprovalDecided):
            self._line(
                OPERATOR_DECISIONS,
                {
                    "timestamp": iso(event.ts),
                    "decision": event.outcome or ("APPROVE" if event.approved else "DENY"),
                    "by": event.decided_by,
                    "why": event.reason,
                    "request_id": event.request_id,
                    "plan_id": event.plan_id,
                    "action_id": event.action_id,
                    "agent": event.agent,
                    "tool": event.tool,
                    "action_hash": event.action_hash,
                    "args_fully_visible": event.args_fully_visible,
                    **(
                        {
                            "operator_modified": True,
                            "original_action_hash": event.original_action_hash,
                            "edited_args": event.edited_args,
                        }
                        if event.original_action_hash
                        else {}
                    ),
                    "seq": event.seq,
                },
            )
        elif isinstance(event, SystemLocked | SystemUnlocked | RunPaused | RunResumed):
            decision = {
                SystemLocked: "LOCK",
                SystemUnlocked: "UNLOCK",
                RunPaused: "PAUSE",
                RunResumed: "RESUME",
            }[type(event)]
            self._line(
                OPERATOR_DECISIONS,
                {
                    "timestamp": iso(event.ts),
                    "decision": decision,
                    "by": event.by,
                    "why": getattr(event, "reason", ""),
                    "seq": event.seq,
                },
            )

    def write_plan_result(self, plan_index: int, plan_id: str, result_json: str | Iterable[str]) -> None:
        """One line per plan; `result_json` is the plan's result, already encoded, whole or
        in pieces (a large plan's result is written as it is encoded, never held whole)."""
        head = f'{{"plan_index":{plan_index},"plan_id":{_dumps(plan_id)},"result":'
        if isinstance(result_json, str):
            self._line(TOOL_EXECUTION_LOG, f"{head}{result_json}}}")
        else:
            fh = self._files[TOOL_EXECUTION_LOG]
            fh.write(head)
            self._dirty.add(fh)
            for piece in result_json:
                fh.write(piece)
            fh.write("}\n")
            self.lines_written[TOOL_EXECUTION_LOG] += 1
        self.flush()

    def flush(self) -> None:
        """Hand the lines written since the last flush to the operating system (only the
        files that have new lines: a flush per call of each of five files costs)."""
        dirty = self._dirty
        for fh in list(dirty):
            fh.flush()
            dirty.discard(fh)  # after the flush: a file that failed to flush is tried again

    def write_summaries(self, summary: dict[str, Any], conflicts: dict[str, Any], health: dict[str, Any]) -> None:
        self.flush()
        write_json_atomic(self.out_dir / ORCHESTRATION_SUMMARY, summary)
        write_json_atomic(self.out_dir / TOOL_CONFLICTS, conflicts)
        write_json_atomic(self.out_dir / SYSTEM_HEALTH, health)

    def close(self) -> None:
        for fh in self._files.values():
            try:
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fh.close()
        self._files.clear()
