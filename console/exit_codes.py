"""Exit codes of the `phase24` command."""

OK = 0
PLAN_FAILED = 1
BAD_INPUT = 2
VERIFY_FAILED = 3
