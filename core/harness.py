"""The end-to-end pipeline: load Phase 21 plans and Phase 22 validations, orchestrate each
plan, learn, monitor, and write the output files. Everything is published on one bus."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from core.approval import ApprovalGate, PolicyGate
from core.clock import Clock, SystemClock, iso
from core.conflicts import ConflictResolver
from core.contracts import ExecutionMode, ToolContractRegistry, standard_registry
from core.controller import ExecutionController
from core.errors import ConfigError, JournalError, Phase24Error
from core.events import (
    ApprovalDecided,
    Event,
    EventBus,
    HealthUpdated,
    PlanFinished,
    PlanStarted,
    RollbackPerformed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    SignalEmitted,
    SystemLocked,
    SystemUnlocked,
    ToolExecuted,
    UnknownOutcomes,
)
from core.executor_config import EXECUTORS_RECORD, WORLD_DIR, ExecutorSetup, load_setup, read_record
from core.executors import SIMULATED_EFFECTS, ExecutorRegistry, SimulatedEffectLedger
from core.feedback import FeedbackLoop
from core.gc_policy import run_gc_policy
from core.group_commit import GroupCommit
from core.journal import RUN_RECORD_DIGEST, RUN_RECORD_FILE, Journal
from core.json_pieces import model_json_pieces
from core.lock_state import LockStateError, SystemLockState
from core.loop_bridge import call_on_loop
from core.monitor import ExecutionMonitor
from core.orchestrator import OrchestrationResult, ToolOrchestrator, ToolResults
from core.outputs import OutputWriter, write_pieces_atomic, write_text_atomic
from core.plans import Phase22Validation, PlannedAction, ToolExecutionPlan
from core.resume import PriorRun
from core.run_status import RunStatus, RunStatusFile
from core.storage_report import storage_failure_report
from core.unsettled import UnsettledIntents

SIMULATION_NOTE = (
    "Every tool in this run is bound to the simulated executor: MOCK, DRY_RUN and LIVE "
    "results, latencies, failures, timeouts and rollbacks are simulated; no external "
    "system was touched."
)


def mixed_note(backends: dict[str, list[str]]) -> str:
    """The note for a run with real executors: which tools had real effects, and where."""
    real = "; ".join(f"{name}: {', '.join(tools)}" for name, tools in sorted(backends.items()))
    return f"Real executors were bound ({real}); their LIVE steps had real effects. Every other tool was simulated."


MAX_RETRY_DELAY_S = 3600.0


class Phase24ExecutionConfig(BaseModel):
    """The report's configuration, plus what a real run needs (timeouts, seed)."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Path("outputs/phase24")
    dry_run_only: bool = False
    max_live_escalations: int | None = Field(default=None, ge=0)
    approval_required_for_high_risk: bool = True
    confidence_threshold_for_live: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    enable_rollback_on_failure: bool = True
    approval_timeout_s: float = Field(default=120.0, gt=0, le=86_400, allow_inf_nan=False)
    retry_delay_range_s: tuple[float, float] = (5.0, 15.0)
    seed: int = 24
    health_every: int = Field(default=25, ge=1)
    health_min_interval_s: float = Field(default=0.2, ge=0, allow_inf_nan=False)
    durable_journal: bool = True
    # Where the system-wide lock lives (core/lock_state.py); None: $PHASE24_STATE_DIR or the
    # user's state directory.
    state_dir: Path | None = None
    lock_poll_s: float = Field(default=0.5, gt=0, le=60)

    @field_validator("approval_required_for_high_risk")
    @classmethod
    def _always_required(cls, value: bool) -> bool:
        if not value:
            raise ValueError("HIGH-risk LIVE execution always requires an approval; this switch cannot be turned off")
        return value

    @field_validator("retry_delay_range_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high <= MAX_RETRY_DELAY_S):
            raise ValueError(
                f"retry_delay_range_s must be finite (low, high) with 0 <= low <= high <= {MAX_RETRY_DELAY_S:g}"
            )
        return value


RUN_RECORD = RUN_RECORD_FILE

_encode_actions = TypeAdapter(list[PlannedAction]).dump_json


def make_run_id(clock: Clock) -> str:
    return "phase24_" + clock.now().strftime("%Y%m%d_%H%M%S")


def run_status(by_status: Mapping[str, int], *, interrupted: bool, unknown: bool) -> str:
    """The run reported by what happened, worst first (exit codes: console/exit_codes.py)."""
    if by_status.get("FAILED") or unknown:
        return "FAILED"
    if interrupted or by_status.get("INTERRUPTED"):
        return "INTERRUPTED"
    for status in ("LOCKED", "PARTIAL"):
        if by_status.get(status):
            return status
    return "SUCCEEDED"


class Phase24Harness:
    """Wires the core together for one run and exposes the operator's controls.

    `lock`, `unlock`, `pause`, `resume` and `stop` are safe to call from another thread
    (the console's): they take effect on the core's loop.
    """

    def __init__(
        self,
        config: Phase24ExecutionConfig | None = None,
        *,
        gate: ApprovalGate | None = None,
        clock: Clock | None = None,
        registry: ToolContractRegistry | None = None,
        run_id: str | None = None,
        write_outputs: bool = True,
        prior: PriorRun | None = None,
    ) -> None:
        self.config = config or Phase24ExecutionConfig()
        self.clock: Clock = clock or SystemClock()
        self.registry = registry or standard_registry()
        self.run_id = run_id or make_run_id(self.clock)
        self.gate: ApprovalGate = gate or PolicyGate()
        self.bus = EventBus(self.clock, self.run_id)
        self.rng = random.Random(self.config.seed)
        self.executors = ExecutorRegistry(self.registry, self.clock)
        self.controller = ExecutionController(
            self.registry,
            self.bus,
            self.gate,
            mode_ceiling=ExecutionMode.DRY_RUN if self.config.dry_run_only else ExecutionMode.LIVE,
            live_floor=self.config.confidence_threshold_for_live,
            max_live_escalations=self.config.max_live_escalations,
            approval_timeout_s=self.config.approval_timeout_s,
        )
        self.conflict_resolver = ConflictResolver(
            self.registry, rng=self.rng, delay_range_s=self.config.retry_delay_range_s
        )
        self.feedback_loop = FeedbackLoop()
        self.monitor = ExecutionMonitor(self.clock)
        self.orchestrator = ToolOrchestrator(
            self.registry,
            self.controller,
            self.conflict_resolver,
            self.executors,
            self.bus,
            enable_rollback_on_failure=self.config.enable_rollback_on_failure,
            pause_gate=self._pause_gate,
        )
        self.writer = OutputWriter(self.config.output_dir) if write_outputs else None
        self.plans: list[ToolExecutionPlan] = []
        self.validations: dict[str, Phase22Validation] = {}
        self.results: list[OrchestrationResult] = []
        self.statuses: list[PlanFinished] = []
        self.summary: dict[str, Any] = {}
        self.storage_error: str | None = None
        self.prior = prior
        self.journal: Journal | None = None
        self.intents: UnsettledIntents | None = None
        self.status_file: RunStatusFile | None = None
        self.effects: SimulatedEffectLedger | None = None
        self.executor_setup: ExecutorSetup | None = None
        self.unknown_outcomes: list[dict[str, Any]] = []
        # Events published before the run opens its outputs (a lock before the start):
        # replayed into the journal and the output files once they are open.
        self._before_start: list[Event] | None = []
        self._detach_journal: Callable[[], None] = lambda: None
        self._executions = 0
        self._last_health = float("-inf")
        self._health_cache: dict[str, Any] | None = None
        self._health_at = float("-inf")
        self._signals_at = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume = threading.Event()
        self._resume.set()
        self._stopping = False
        self._run_over = False
        self._journal_live = False
        self._stop_holding = self.bus.subscribe(self._hold_before_start)
        self.bus.subscribe(self.monitor.observe, self.monitor.OBSERVES)
        self.bus.subscribe(self.feedback_loop.observe, self.feedback_loop.OBSERVES)
        self.bus.subscribe(self._count_executions, (ToolExecuted, ApprovalDecided, RollbackPerformed))
        if self.writer is not None:
            self.bus.subscribe(self.writer.observe, self.writer.OBSERVES)
        self.bus.on_error = self._subscriber_failed
        self.controller.on_storage_failure = self._storage_failed
        self.lock_state = SystemLockState(self.config.state_dir, self.clock)
        self.controller.lock_store = self._store_lock
        self._lock_stamp = -1.0
        #: Every durability barrier (intent, outcome, decision, a LIVE start) of every agent
        #: waits for one shared commit: the journal, the simulated world and the output files.
        self.group = GroupCommit(self._commit_durably)

    @classmethod
    def from_interrupted_run(
        cls,
        run_dir: Path,
        *,
        gate: ApprovalGate | None = None,
        clock: Clock | None = None,
        registry: ToolContractRegistry | None = None,
    ) -> Phase24Harness:
        """A harness that continues the interrupted run in `run_dir` (see core.resume).

        `registry`: the contracts of a run whose tools are not the standard catalogue's nor
        an executor setup's (the MCP gateway's upstream tools)."""
        from core.journal import read_events
        from core.resume import load_run

        spec = read_record(run_dir)  # a run with real executors resumes with the same ones
        setup = load_setup(spec) if spec is not None else None
        loaded = load_run(run_dir)
        config = Phase24ExecutionConfig.model_validate({**loaded.config, "output_dir": str(run_dir)})
        registry = setup.registry if setup is not None else registry
        harness = cls(config, gate=gate, clock=clock, run_id=loaded.run_id, prior=loaded.prior, registry=registry)
        if setup is not None:
            harness.use_executors(setup)
        if loaded.locked:
            harness.controller.restore_lock(f"{loaded.locked} (lock survived a restart; unlock to continue)")
        harness.load_phase21_plans(loaded.remaining)
        harness.load_phase22_validations(loaded.validations)
        for event in read_events(run_dir):
            harness.monitor.observe(event)
            harness.feedback_loop.observe(event)
            harness.bus.start_after(event.seq)
        harness.feedback_loop.generate_signals()  # signals already written before the crash
        return harness

    # -- executors --------------------------------------------------------------------

    def use_executors(self, setup: ExecutorSetup) -> None:
        """Bind the setup's plugins; their effects go under OUTPUT_DIR/world.

        With a real executor bound, a gate that approves everything unasked is refused:
        HIGH-risk LIVE then needs a human answer (or a gate the caller wrote on purpose).
        """
        if setup.registry is not self.registry:
            raise ConfigError("use_executors: the harness must be built with the setup's contract registry")
        setup.bind(self.executors, self.config.output_dir / WORLD_DIR)
        if setup.real and isinstance(self.gate, PolicyGate) and self.gate.approve_all:
            tools = ", ".join(setup.real_tools)
            raise ConfigError(
                f"--approve-all is refused: real executors are bound ({tools}); HIGH-risk LIVE steps need a "
                "human answer (use `phase24 console`) or are denied (omit --approve-all)"
            )
        self.executor_setup = setup

    # -- inputs -----------------------------------------------------------------------

    def load_phase21_plans(self, plans: Iterable[ToolExecutionPlan | Mapping[str, Any]]) -> None:
        for plan in plans:
            self.plans.append(plan if isinstance(plan, ToolExecutionPlan) else ToolExecutionPlan.model_validate(plan))

    def load_phase22_validations(self, validations: Iterable[Phase22Validation | Mapping[str, Any]]) -> None:
        for item in validations:
            v = item if isinstance(item, Phase22Validation) else Phase22Validation.model_validate(item)
            self.validations[v.validation_id] = v

    def validation_for(self, plan: ToolExecutionPlan) -> Phase22Validation | None:
        if plan.phase22_validation_id is not None:
            return self.validations.get(plan.phase22_validation_id)
        for v in self.validations.values():
            if v.plan_id in (plan.plan_id, plan.phase21_plan_id):
                return v
        return None

    # -- operator controls (any thread) ----------------------------------------------

    def lock(self, reason: str = "operator lock", by: str = "operator") -> bool:
        return self.controller.lock_system(reason, by)

    def unlock(self, reason: str = "operator unlock", by: str = "operator") -> bool:
        return self.controller.unlock_system(reason, by)

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def pause(self, by: str = "operator") -> None:
        if self.paused:
            return
        self._resume.clear()
        self._on_core(lambda: self._set_paused(True, by))

    def resume(self, by: str = "operator") -> None:
        if not self.paused:
            return
        self._resume.set()
        self._on_core(lambda: self._set_paused(False, by))

    def stop(self, reason: str = "operator quit", by: str = "operator") -> None:
        """Start nothing new, escalate nothing more, deny what waits, and let the run finish
        its outputs. The flag is read by every escalation check at once (any thread)."""
        self._stopping = True
        self.controller.stop_reason = f"the run was stopped: {reason}"
        self._resume.set()
        self._on_core(lambda: self.controller.stop_run(f"the run was stopped: {reason}", by))

    def _set_paused(self, paused: bool, by: str) -> None:
        self.bus.emit(RunPaused if paused else RunResumed, by=by)

    def _on_core(self, fn: Callable[[], object]) -> None:
        call_on_loop(self._loop, fn)

    async def _pause_gate(self) -> str | None:
        # The flag flips on the operator's thread; the RunPaused event is published by a
        # callback on this loop, which runs at the first sleep below.
        while not self._resume.is_set():
            await asyncio.sleep(0.02)  # waiting for a human: real time, not the run's clock
        return "run stopped by the operator" if self._stopping else None

    # -- subscribers ------------------------------------------------------------------

    def _hold_before_start(self, event: Event) -> None:
        if self._before_start is not None:
            self._before_start.append(event)

    def _replay_before_start(self) -> None:
        held, self._before_start = self._before_start or [], None
        self._stop_holding()
        for event in held:
            if self.journal is not None:
                self.journal.observe(event)
            if self.writer is not None:
                self.writer.observe(event)

    def _count_executions(self, event: Event) -> None:
        """Publish health every `health_every` executions (at most every
        `health_min_interval_s` of the run's clock) and after each decision or rollback."""
        kind = type(event)
        if kind is ToolExecuted:
            self._executions += 1
            if self._executions % self.config.health_every == 0:
                now = self.clock.monotonic()
                if now - self._last_health >= self.config.health_min_interval_s:
                    self._last_health = now
                    self._emit_health()
        elif kind is ApprovalDecided or kind is RollbackPerformed:
            self._emit_health()

    def _subscriber_failed(self, subscriber: Callable[[Event], None], exc: BaseException) -> None:
        """Storage failed: fail closed. Lock once, say why, keep running MOCK only."""
        self._commit_failed(exc)

    def _commit_failed(self, exc: BaseException) -> None:
        if self.storage_error is None:
            self._storage_failed(f"{type(exc).__name__}: {exc}")
            self.controller.lock_system(f"storage failure, failing closed: {self.storage_error}", "system")

    def _store_lock(self, locked: bool, reason: str, by: str) -> None:
        """Record a lock or unlock durably: the system-wide state, and this run's journal.

        After the run has finished the journal and the decisions file are reopened for the
        record, so a lock or unlock at any moment is on file with who and why.
        """
        current = self.lock_state.read()
        if current.locked != locked or (locked and current.reason != reason):
            self.lock_state.lock(reason, by) if locked else self.lock_state.unlock(reason, by)
        self._lock_stamp = self.lock_state.stamp()
        if self.journal is not None and self._journal_live:
            self.journal.set_state("locked", reason if locked else "")
        elif self._run_over and self.writer is not None:
            self._record_after_run(locked, reason, by)

    def _record_after_run(self, locked: bool, reason: str, by: str) -> None:
        event_type = SystemLocked if locked else SystemUnlocked
        event = event_type(seq=self.bus.last_seq + 1, ts=self.clock.now(), run_id=self.run_id, reason=reason, by=by)
        out = self.config.output_dir
        if self.config.durable_journal and (out / "journal.sqlite3").exists():
            with Journal.open(out, self.run_id, clock=self.clock) as journal:
                self.bus.start_after(journal.last_seq)
                event = event.model_copy(update={"seq": journal.last_seq + 1})
                journal.observe(event)
                journal.set_state("locked", reason if locked else "")
        try:
            writer = OutputWriter(out)
            writer.open()
            try:
                writer.observe(event)
            finally:
                writer.close()
        except OSError as exc:
            raise LockStateError(f"{out}: cannot record the {event.kind} after the run: {exc.strerror or exc}") from exc
        self.bus.start_after(event.seq)

    async def _follow_system_lock(self) -> None:
        """A lock or unlock recorded elsewhere (`phase24 lock`, another console) takes effect here."""
        while True:
            await asyncio.sleep(self.config.lock_poll_s)
            stamp = self.lock_state.stamp()
            if stamp == self._lock_stamp:
                continue
            self._lock_stamp = stamp
            record = self.lock_state.read()
            if record.locked and not self.controller.locked:
                self.controller.lock_system(record.reason, record.by or "system")
            elif not record.locked and self.controller.locked:
                self.controller.unlock_system(record.reason, record.by or "operator")

    def _storage_failed(self, error: str) -> None:
        if self.storage_error is None:
            self.storage_error = error
            if self.status_file is not None:
                # The journal may be what failed: this in-place write keeps the lock for resume.
                self.status_file.mark(RunStatus.STORAGE_FAILED, error)

    def _streaming(self) -> bool:
        """True while serving a stream of one-action "plans" (the gate service, the MCP
        gateway): health and the learning analysis then run at most every
        `health_min_interval_s` instead of after every plan (the final ones always)."""
        return False

    def _emit_health(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        cached = self._health_cache
        if cached is not None and self._streaming() and now - self._health_at < self.config.health_min_interval_s:
            return cached
        self._health_at = now
        self._health_cache = self._publish_health()
        return self._health_cache

    def _publish_health(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = self.monitor.snapshot()
        self.bus.emit(
            HealthUpdated,
            health_score=snapshot["health_score"],
            health_assessment=snapshot["health_assessment"],
            metrics=snapshot["metrics"],
            anomalies=snapshot["anomalies"],
        )
        return snapshot

    # -- the pipeline -----------------------------------------------------------------

    def execute_orchestration_pipeline(self) -> dict[str, Any]:
        return asyncio.run(self.run_pipeline())

    async def run_pipeline(self) -> dict[str, Any]:
        with run_gc_policy():
            return await self._run_pipeline()

    async def _run_pipeline(self) -> dict[str, Any]:
        start, follower = await self._open_run()
        interrupted = False
        try:
            interrupted = await self._run_plans()
        except (OSError, JournalError) as exc:
            self._write_failed(exc)
            raise
        finally:
            self._finish_run(start, follower, interrupted)
        return self.summary

    # -- proposals one at a time (a live intake, e.g. the MCP gateway) -----------------

    @contextlib.asynccontextmanager
    async def proposal_session(self) -> AsyncIterator[Phase24Harness]:
        """Open the run (outputs, journal, system lock) for proposals that arrive one by one
        through `run_proposal`, and finish it (summaries, journal closed) on exit."""
        start, follower = await self._open_run()
        try:
            yield self
        except (OSError, JournalError) as exc:
            self._write_failed(exc)
            raise
        finally:
            self._finish_run(start, follower, False)

    async def run_proposal(self, plan: ToolExecutionPlan) -> OrchestrationResult:
        """Run one proposal (a plan, usually of one action) through the same pipeline as a
        plan file's: conflicts, escalation, approvals, lock, journal, outputs. Only inside
        `proposal_session`; concurrent calls are allowed."""
        if self._loop is None or self._run_over:
            raise Phase24Error("run_proposal: no open proposal session")
        index = len(self.plans) + (len(self.prior.statuses) if self.prior else 0)
        self.plans.append(plan)
        return await self._run_plan(index, plan)

    async def _open_run(self) -> tuple[Any, asyncio.Task[None]]:
        self._loop = asyncio.get_running_loop()
        self.controller.bind_loop(self._loop)
        if self.writer is not None:
            self.writer.open()
            self._open_durable_state()
        self._replay_before_start()
        if self.journal is not None:
            self._record_run_start(self.journal)
        system_lock = self.lock_state.read()
        self._lock_stamp = self.lock_state.stamp()
        if system_lock.locked and not self.controller.locked:
            # The lock is system-wide: a run started while the system is locked starts locked.
            reason = f"system-wide lock ({system_lock.reason}; by {system_lock.by or 'unknown'})"
            self.controller.restore_lock(reason)
            self.bus.emit(SystemLocked, reason=reason, by="system-wide lock")
        follower = asyncio.create_task(self._follow_system_lock())
        start = self.clock.now()
        self.bus.emit(
            RunStarted,
            plans_total=len(self.plans) + (len(self.prior.statuses) if self.prior else 0),
            actions_total=sum(len(p.actions) for p in self.plans),
            mode_ceiling=self.controller.mode_ceiling,
            simulated=self.executors.all_simulated,
            resumed=self.prior is not None,
        )
        if self.unknown_outcomes:
            self.bus.emit(UnknownOutcomes, intents=self.unknown_outcomes)
        return start, follower

    def _write_failed(self, exc: Exception) -> None:
        # A write outside the subscribers failed (a plan result, the simulated world):
        # fail closed like a subscriber failure, and let the caller report it.
        if self.storage_error is None:
            self._storage_failed(f"{type(exc).__name__}: {exc}")
            self.controller.lock_system(f"storage failure, failing closed: {self.storage_error}", "system")

    def _finish_run(self, start: Any, follower: asyncio.Task[None], interrupted: bool) -> None:
        follower.cancel()
        health = self._emit_health()
        self._collect_unknown_outcomes()
        self.summary = self._summary(start, interrupted or self._stopping)
        self.bus.emit(
            RunFinished,
            plans_processed=len(self.statuses),
            plans_successful=sum(s.status == "SUCCEEDED" for s in self.statuses),
            plans_failed=sum(s.status == "FAILED" for s in self.statuses),
            interrupted=interrupted or self._stopping,
            status=self.summary["status"],
        )
        try:
            if self.writer is not None:
                conflicts = self.conflict_resolver.summary()
                if self.prior is not None:
                    conflicts = self.prior.merge_conflicts(conflicts)
                simulated = {"simulated": self.executors.all_simulated}
                self.writer.write_summaries(self.summary, {**conflicts, **simulated}, {**health, **simulated})
                self.writer.close()
        except OSError as exc:
            self._storage_failed(f"{type(exc).__name__}: {exc}")
            self.summary = self._summary(start, interrupted or self._stopping)
            raise
        finally:
            self._close_durable_state()
            self._run_over = True

    async def _run_plans(self) -> bool:
        """Run the loaded plans in order (a gate service consumes a stream instead).
        Returns True when the operator stopped the run before every plan had run."""
        for index, plan in enumerate(self.plans):
            if self._stopping:
                return True
            await self._run_plan(index, plan)
        return False

    def _open_durable_state(self) -> None:
        """Journal, persisted lock, the run record (for resume) and the simulated world."""
        out = self.config.output_dir
        if self.prior is None and self.config.durable_journal:
            # First of all, so that how this run ends is always provable (core.run_status).
            self.status_file = RunStatusFile.create(out)
        self.effects = SimulatedEffectLedger(out / SIMULATED_EFFECTS)
        self.executors.effect_sink = self.effects
        if not self.config.durable_journal:
            self.bus.add_barrier(self.group.barrier)
            return
        journal = Journal.open(out, self.run_id, clock=self.clock)
        self.journal = journal
        self._detach_journal = journal.attach(self.bus)
        self.bus.replace_barrier(journal.barrier, self.group.barrier)
        journal.group_ledger = True
        journal.on_stage = self.group.schedule
        self._journal_live = True
        self.intents = UnsettledIntents(journal)
        self.controller.ledger = self.intents
        locked = journal.get_state("locked")
        if locked:
            self.controller.restore_lock(f"{locked} (lock survived a restart; unlock to continue)")

    def _commit_durably(self) -> None:
        """One group commit: the simulated world's new lines, the output files' lines (to the
        operating system), then the journal, fsynced. A failure fails every waiter closed."""
        try:
            if self.effects is not None:
                self.effects.sync()
            if self.writer is not None:
                self.writer.flush()
        except OSError as exc:
            raise JournalError(f"{self.config.output_dir}: cannot sync the run's files: {exc}") from exc
        if self.journal is not None and self._journal_live:
            try:
                self.journal.commit(durable=True)
            except Phase24Error as exc:
                # Whoever waited on this commit, the system fails closed here, once.
                self._commit_failed(exc)
                raise

    def _record_run_start(self, journal: Journal) -> None:
        """run.json and its digest (through the chain), or, resuming, the UNKNOWN intents.

        After the events held before the start are journalled: these are chained events too.
        """
        out = self.config.output_dir
        if self.prior is None:
            journal.set_state(RUN_RECORD_DIGEST, write_pieces_atomic(out / RUN_RECORD, self._run_record_pieces()))
            if self.executor_setup is not None:
                write_text_atomic(out / EXECUTORS_RECORD, self.executor_setup.spec.to_json())
        else:
            record = self.config.output_dir / RUN_RECORD
            if journal.get_state(RUN_RECORD_DIGEST) is None:
                # The first run was killed after writing run.json, before recording its
                # digest (so before it started anything): cover the file from now on.
                journal.set_state(RUN_RECORD_DIGEST, hashlib.sha256(record.read_bytes()).hexdigest())
            self.unknown_outcomes = journal.mark_unknown_intents()
            if self.controller.locked and not journal.get_state("locked"):
                # Locked by how the last run ended (run_status): make that lock durable first.
                journal.set_state("locked", self.controller.lock_reason)
            journal.commit(durable=True)
            # Only now: until that lock is durable, the old status must keep saying why.
            self.status_file = RunStatusFile.create(self.config.output_dir)

    def _collect_unknown_outcomes(self) -> None:
        """Every UNKNOWN intent, also those of this run (a LIVE step that raised or hung)."""
        if self.journal is None:
            return
        try:
            self.unknown_outcomes = self.journal.intents("UNKNOWN")
        except Phase24Error:
            pass  # the journal failed: the run has already failed closed and says why

    def _close_durable_state(self) -> None:
        if self.effects is not None:
            try:
                self.effects.close()
            except OSError as exc:
                self._storage_failed(f"{type(exc).__name__}: {exc}")
        if self.journal is not None:
            try:
                self.journal.commit()
            except Exception as exc:
                self.storage_error = self.storage_error or f"{type(exc).__name__}: {exc}"
            finally:
                self._detach_journal()
                self.journal.close()
                self.controller.ledger = None
                self._journal_live = False
        if self.status_file is not None:
            if self.storage_error is None:
                self.status_file.mark(RunStatus.FINISHED)
            self.status_file.close()

    def _run_record(self) -> str:
        """run.json (what a resume needs)."""
        return "".join(self._run_record_pieces())

    def _run_record_pieces(self) -> Iterator[str]:
        """run.json in pieces, encoded by pydantic: the plans can be large (100k actions are
        ~25 MB of text, never held whole)."""
        exclude = frozenset({"agent_assignments", "execution_order", "confidence_scores"})
        yield (
            f'{{"run_id":{json.dumps(self.run_id, ensure_ascii=False)},"config":{self.config.model_dump_json()},'
            '"plans":['
        )
        for index, plan in enumerate(self.plans):
            if index:
                yield ","
            yield from model_json_pieces(plan, "actions", _encode_actions, exclude=exclude)
        validations = ",".join(v.model_dump_json() for v in self.validations.values())
        yield f'],"validations":[{validations}]}}'

    async def _run_plan(self, index: int, plan: ToolExecutionPlan) -> OrchestrationResult:
        validation = self.validation_for(plan)
        self.bus.emit(
            PlanStarted,
            plan_id=plan.plan_id,
            plan_index=index,
            actions_total=len(plan.actions),
            agents=plan.agent_names,
            phase21_plan_id=plan.phase21_plan_id,
            phase22_validation_id=plan.phase22_validation_id,
        )
        if validation is not None and not validation.valid:
            reason = f"Phase 22 validation {validation.validation_id} rejected the plan"
            if validation.issues:
                reason += ": " + "; ".join(validation.issues)
            result = OrchestrationResult(
                plan_id=plan.plan_id,
                status="REJECTED",
                successful_executions=0,
                failed_executions=0,
                tool_results=[],
                conflicts_detected=0,
                conflicts_resolved=0,
                rollbacks_executed=0,
            )
            self._finish_plan(index, plan, result, reason)
            return result
        result = await self.orchestrator.orchestrate(plan)
        if validation is not None and validation.predicted_success is not None:
            executed = result.successful_executions + result.failed_executions
            actual = result.successful_executions / executed if executed else 0.0
            self.feedback_loop.record_validation(plan.plan_id, validation.predicted_success, actual)
        self._emit_signals()
        self._emit_health()
        self._finish_plan(index, plan, result, "")
        return result

    def _emit_signals(self) -> None:
        """The learning loop's new signals (after every plan, or see `_streaming`), as events."""
        now = self.clock.monotonic()
        if self._streaming() and now - self._signals_at < self.config.health_min_interval_s:
            return
        self._signals_at = now
        for signal in self.feedback_loop.generate_signals():
            self.bus.emit(
                SignalEmitted,
                signal_type=signal.signal_type.value,
                tool_name=signal.tool_name,
                insight=signal.insight,
                recommended_action=signal.recommended_action,
                confidence=signal.confidence,
                target_phase=signal.target_phase,
            )

    def _finish_plan(self, index: int, plan: ToolExecutionPlan, result: OrchestrationResult, reason: str) -> None:
        self.results.append(result)
        if self.writer is not None:
            self.writer.write_plan_result(index, plan.plan_id, result.json_chunks())
        self.statuses.append(
            self.bus.emit(
                PlanFinished,
                plan_id=plan.plan_id,
                plan_index=index,
                status=result.status,
                successful=result.successful_executions,
                failed=result.failed_executions,
                held=result.held_executions,
                cancelled=result.cancelled_executions,
                conflicts_detected=result.conflicts_detected,
                conflicts_resolved=result.conflicts_resolved,
                rollbacks=result.rollbacks_executed,
                reason=reason,
            )
        )

    def _summary(self, start: Any, interrupted: bool) -> dict[str, Any]:
        statuses = [*(self.prior.statuses if self.prior else []), *self.statuses]
        results = [*(self.prior.results if self.prior else []), *self.results]
        ok = sum(s.status == "SUCCEEDED" for s in statuses)
        rejected = sum(s.status == "REJECTED" for s in statuses)
        states: dict[str, int] = {}
        live = 0
        for result in results:
            records = result.tool_results
            if isinstance(records, ToolResults):  # counted when the plan finished
                for state, n in records.final_states.items():
                    states[state] = states.get(state, 0) + n
                live += records.live
                continue
            for r in records:
                states[r["final_state"]] = states.get(r["final_state"], 0) + 1
                live += r["mode"] == "LIVE"
        by_status: dict[str, int] = {}
        for s in statuses:
            by_status[s.status] = by_status.get(s.status, 0) + 1
        return {
            "pipeline_id": self.run_id,
            "status": run_status(by_status, interrupted=interrupted, unknown=bool(self.unknown_outcomes)),
            "plans_by_status": dict(sorted(by_status.items())),
            "start_time": iso(start),
            "end_time": iso(self.clock.now()),
            "plans_processed": len(statuses),
            "plans_successful": ok,
            "plans_failed": sum(s.status == "FAILED" for s in statuses),
            "plans_rejected": rejected,
            "plans_total": len(self.plans) + (len(self.prior.statuses) if self.prior else 0),
            "total_tools_executed": sum(
                r.successful_executions + r.failed_executions + r.held_executions for r in results
            ),
            "total_conflicts": sum(r.conflicts_detected for r in results),
            "total_rollbacks": sum(r.rollbacks_executed for r in results),
            "actions_by_final_state": dict(sorted(states.items())),
            "live_executions": live,
            "locked": self.controller.locked,
            "interrupted": interrupted,
            "storage_error": self.storage_error,
            **(
                storage_failure_report(results, self.intents.unsettled() if self.intents else [])
                if self.storage_error
                else {}
            ),
            "resumed": self.prior is not None,
            "unknown_outcomes": self.unknown_outcomes,
            "simulated": self.executors.all_simulated,
            "backends": self.executors.real_backends(),
            "simulation_note": (
                SIMULATION_NOTE if self.executors.all_simulated else mixed_note(self.executors.real_backends())
            ),
            "plans": [
                {
                    "plan_id": s.plan_id,
                    "status": s.status,
                    "successful": s.successful,
                    "failed": s.failed,
                    "held": s.held,
                    "cancelled": s.cancelled,
                    "conflicts": s.conflicts_detected,
                    "rollbacks": s.rollbacks,
                    **({"reason": s.reason} if s.reason else {}),
                }
                for s in statuses
            ],
        }
