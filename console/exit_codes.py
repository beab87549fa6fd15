"""Exit codes of the `phase24` command."""

OK = 0
PLAN_FAILED = 1
BAD_INPUT = 2
VERIFY_FAILED = 3
STORAGE_FAILED = 4
"""The journal or an output file could not be written: the run failed closed (never 0)."""
