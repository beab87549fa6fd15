"""The random crash sweep in CI: at least 50 SIGKILLs from outside at random moments.

`python -m tests.crash_sweep --kills 1000` runs any number (see tests/crash_sweep.py for
what each trial checks). The seed is random per run and printed on failure.
"""

from __future__ import annotations

import os
import random
import shutil

from tests.crash_sweep import run_sweep, sweep_base

CI_KILLS = 50


def test_random_sigkill_sweep_never_repeats_loses_or_leaves_undone() -> None:
    seed = int(os.environ.get("PHASE24_SWEEP_SEED", random.SystemRandom().randrange(1 << 31)))
    base = sweep_base()
    try:
        result = run_sweep(CI_KILLS, seed, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert result.kills >= CI_KILLS, result
    assert not result.failures, f"seed {seed} (PHASE24_SWEEP_SEED={seed} to repeat): " + "\n".join(result.failures)
