"""Run (or resume) a plan with recording bindings and an approving gate, for the crash tests.

    python tests/live_only_runner.py run PLAN RUN_DIR CALLS_FILE
    python tests/live_only_runner.py resume RUN_DIR CALLS_FILE

The in-process API with a CallbackGate that approves: `--approve-all` is refused when real
(non-simulated) executors are bound, and these count as real.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.approval import CallbackGate
from core.clock import SystemClock
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import load_plans
from tests.recording_bindings import CallLog, bind_recording


def main(argv: list[str]) -> int:
    gate = CallbackGate(lambda tool, confidence: True, name="test-approver")
    if argv[0] == "run":
        plan, run_dir, calls = Path(argv[1]), Path(argv[2]), Path(argv[3])
        harness = Phase24Harness(
            Phase24ExecutionConfig(output_dir=run_dir, retry_delay_range_s=(0.0, 0.0)),
            gate=gate,
            clock=SystemClock(),
        )
        harness.load_phase21_plans(load_plans([plan], harness.registry))
    else:
        run_dir, calls = Path(argv[1]), Path(argv[2])
        harness = Phase24Harness.from_interrupted_run(run_dir, gate=gate, clock=SystemClock())
    bind_recording(harness.executors, harness.registry, harness.bus, CallLog(calls))
    summary = harness.execute_orchestration_pipeline()
    return 1 if summary["plans_failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
