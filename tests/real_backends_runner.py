"""Run (or resume) a plan on the real local backends with an approving gate, for the crash tests.

    python tests/real_backends_runner.py run PLAN CONFIG RUN_DIR
    python tests/real_backends_runner.py resume RUN_DIR

The in-process API with a CallbackGate that approves: `--approve-all` is refused when real
executors are bound, on purpose. A resume binds the executors the run recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.approval import CallbackGate
from core.clock import SystemClock
from core.executor_config import combined_spec, load_setup
from core.harness import Phase24ExecutionConfig, Phase24Harness
from core.plans import load_plans


def main(argv: list[str]) -> int:
    gate = CallbackGate(lambda tool, confidence: True, name="test-approver")
    if argv[0] == "run":
        plan, config, run_dir = Path(argv[1]), Path(argv[2]), Path(argv[3])
        spec = combined_spec(config, [])
        assert spec is not None
        setup = load_setup(spec)
        harness = Phase24Harness(
            Phase24ExecutionConfig(output_dir=run_dir, retry_delay_range_s=(0.0, 0.0)),
            gate=gate,
            clock=SystemClock(),
            registry=setup.registry,
        )
        harness.use_executors(setup)
        harness.load_phase21_plans(load_plans([plan], setup.registry))
    else:
        harness = Phase24Harness.from_interrupted_run(Path(argv[1]), gate=gate, clock=SystemClock())
    summary = harness.execute_orchestration_pipeline()
    return 1 if summary["plans_failed"] or summary["unknown_outcomes"] else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
