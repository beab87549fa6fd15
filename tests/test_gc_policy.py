"""The collector policy a run executes under: applied for the run, undone after it, shared."""

from __future__ import annotations

import gc

import pytest

from core.events import Event
from core.gc_policy import RUN_THRESHOLDS, run_gc_policy
from tests.conftest import act, plan


def test_policy_applies_inside_and_restores_after():
    before = gc.get_threshold()
    assert before != RUN_THRESHOLDS
    with run_gc_policy():
        assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_nested_policies_restore_only_when_the_last_one_ends():
    before = gc.get_threshold()
    with run_gc_policy():
        with run_gc_policy():
            assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_threshold() == RUN_THRESHOLDS  # the outer run still executes
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_policy_is_undone_when_the_run_raises():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), run_gc_policy():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_run_executes_under_the_policy_and_leaves_none_behind(make_harness):
    before = gc.get_threshold()
    harness = make_harness([plan([act("a1"), act("a2", agent="agent_b")])])
    seen: list[tuple[int, int, int]] = []

    def during(_event: Event) -> None:
        seen.append(gc.get_threshold())

    harness.bus.subscribe(during)
    harness.execute_orchestration_pipeline()
    assert seen and all(t == RUN_THRESHOLDS for t in seen)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    # Cycles made during the run are still collected: nothing was disabled.
    assert gc.isenabled()
