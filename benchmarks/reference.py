"""The design note's own journal measurement, repeated on this machine.

`shared/design/durability-and-speed.md` sets the core's bar (>= 20,000 actions/s with the
durable journal on) from a measurement "on a machine like yours (2 cores)": hash-chained
rows in SQLite (WAL, `synchronous=FULL`) reach ~8,000 events/s with one transaction per
event, ~245,000 with one per 256 events and ~270,000 with one per 1,024. This module runs
that workload (the journal's own SHA-256 link, `chain_hash`, over a ~300-byte JSON body, one row
per event, nothing else: no events built, no core) so a run's figures can be read against
the machine the bars were set on: `factor` is how many times slower this machine ran it.

    python -m benchmarks.reference
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from core.journal import GENESIS_HASH, chain_hash

#: Events per second in the design note's table, by events per transaction.
DESIGN_NOTE_EVENTS_PER_S = {1: 8_000, 256: 245_000, 1024: 270_000}
_BODY = json.dumps(
    {
        "kind": "state_transition",
        "seq": 0,
        "ts": "2026-12-01T21:00:00.000000Z",
        "run_id": "run-20261201-210000-0001",
        "plan_id": "large_plan",
        "action_id": "a000001",
        "agent": "agent_01",
        "tool": "memory_search",
        "from_state": "MOCK",
        "to_state": "DRY_RUN",
        "reason": "MOCK succeeded; confidence 0.72 allows DRY_RUN",
    },
    separators=(",", ":"),
)


def chained_rows(directory: Path, batch: int, events: int) -> float:
    """Events per second for `events` hash-chained rows, one transaction per `batch` rows."""
    conn = sqlite3.connect(directory / f"reference-{batch}.sqlite3", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, kind TEXT, body TEXT, prev TEXT, hash TEXT)")
        prev = GENESIS_HASH
        rows: list[tuple[int, str, str, str, str]] = []
        t0 = time.perf_counter()
        for seq in range(1, events + 1):
            digest = chain_hash(prev, seq, "state_transition", _BODY)
            rows.append((seq, "state_transition", _BODY, prev, digest))
            prev = digest
            if len(rows) >= batch or seq == events:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
                rows.clear()
        return events / (time.perf_counter() - t0)
    finally:
        conn.close()


def measure(repeats: int = 3) -> dict[str, Any]:
    """The median of `repeats` runs per commit policy, and this machine's factor against the note."""
    sizes = {1: 600, 256: 40_000, 1024: 40_000}
    per_s: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp:
        for batch, events in sizes.items():
            runs = []
            for k in range(repeats):
                run_dir = Path(tmp) / f"{batch}-{k}"
                run_dir.mkdir()
                runs.append(chained_rows(run_dir, batch, events))
            per_s[batch] = statistics.median(runs)
    factors = {batch: DESIGN_NOTE_EVENTS_PER_S[batch] / value for batch, value in per_s.items()}
    return {
        "events_per_s": {str(batch): round(value) for batch, value in per_s.items()},
        "design_note_events_per_s": {str(batch): value for batch, value in DESIGN_NOTE_EVENTS_PER_S.items()},
        "factor": {str(batch): round(value, 2) for batch, value in factors.items()},
        # The group-commit policies are what the journal uses; per-event commits measure the disk.
        "cpu_factor": round(statistics.mean([factors[256], factors[1024]]), 2),
    }


def describe(result: dict[str, Any]) -> str:
    """One line for results.md."""
    eps, factor = result["events_per_s"], result["factor"]
    return (
        f"{eps['256']:,} events/s with one transaction per 256 events (design note: 245,000), "
        f"{eps['1024']:,} per 1,024 (270,000), {eps['1']:,} with one per event (8,000): this machine ran "
        f"the note's workload {result['cpu_factor']:.1f}x slower than the machine the bars were set on "
        f"(commit per event: {factor['1']:.1f}x, the disk's fsync)"
    )


def main() -> None:
    result = measure()
    print(json.dumps(result))
    print(describe(result))


if __name__ == "__main__":
    main()
