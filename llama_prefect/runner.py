"""LlamaTaskRunner: a Prefect task runner that tunes every task invocation.

Each task submitted with ``.submit()`` or ``.map()`` whose task is an op of the runner's
pipeline becomes an invocation of the scheduler in `llama_prefect.core.scheduler`. It
gets a speculative plan at once and a final one when a backend slot is free for it; the
chosen knob values are then written into the task's parameters, so they show in the
Prefect UI as the task run's parameters, and Prefect's own task engine runs it (states,
retries, caching and logs behave as with Prefect's thread pool runner).

A plain call ``op(x)`` inside a flow never reaches a task runner: pipelines must submit.

When the flow ends, the runner waits for every invocation submitted so far, unless it
ends by an interrupt (Ctrl-C, SIGTERM): then queued invocations are cancelled, running
task runs end Crashed at once, and op bodies still running are abandoned on daemon
threads (see `LlamaTaskRunner._abandon`).

Run settings come from the flow run's parameters when it has them (``slo_s``,
``objective``, ``accuracy_floor``), else from the constructor, so a deployment can set
them per run. The deadline is the moment the runner starts plus ``slo_s``. The same
holds for the blocks a run names (``backend_settings``, ``price_catalog``,
``profile_store``, see `llama_prefect.blocks`): they are read when the first task is
submitted, so a deployment switches backends, prices or profiles by a parameter.

Every invocation stays its own task run: the engine calls a proxy body
(`llama_prefect.proxy.InvocationBody`) that runs the invocation's attempts in worker
threads and returns the first result. That is where the scheduler's mechanisms act
inside the task run:

* a straggler (past its straggler time, and never before `STRAGGLER_MIN_S`) gets a
  duplicate, planned and committed again (the runner polls the scheduler when its
  next straggler check is due); the first result wins and the other attempt is
  cancelled: one that has not started never runs, one that runs (a thread cannot be
  stopped) runs on, keeps its slot until it ends, and its result is dropped;
* the task's own retries (Prefect's ``retries`` and ``retry_condition_fn``) call the
  body again, and each retry is planned again with fresh state; a failure the task
  does not retry fails the task run as with Prefect's own runners;
* invocations committed together in one batched call (a ``call_batch`` knob and an
  op with ``batch_fn``) share one call of the batched body, each taking its slice
  (in this process; on a remote backend each invocation makes its own call);
* remote backends (`RemoteBackend`: Lambda, a GPU work pool, given with
  ``backends=``) get the op body, its arguments and its configuration; when one
  throttles, times out or has no capacity the attempt is handed back and the
  invocation is planned again, on another backend where the plan says so, unless
  none is left or it was refused `MAX_REPLANS` times;
* injected failures and stragglers (``inject_*``) happen to first attempts.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import importlib
import inspect
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import TaskRunner
from prefect.utilities.collections import visit_collection

from llama_prefect import metering, s3
from llama_prefect.backends.base import Backend, RemoteBackend, RemoteCall
from llama_prefect.backends.cloud import backends_from_env
from llama_prefect.backends.local import LOCAL_CPU, LOCAL_GPU, local_cpu, local_gpu
from llama_prefect.core.clock import RealClock
from llama_prefect.core.pipeline import Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import (
    Attempt,
    BackendSlots,
    Invocation,
    Scheduler,
    Settings,
    State,
)
from llama_prefect.errors import ConfigurationError, ReplanError, is_deterministic
from llama_prefect.proxy import MAX_REPLANS, BatchCall, InvocationBody, proxy_task
from llama_prefect.retries import error_of
from llama_prefect.settings import RunSettings
from llama_prefect.wire import ref_of

logger = logging.getLogger(__name__)

#: Seconds before which no attempt is a straggler (ours): starting a task run takes
#: a fixed time that would make every short invocation look slow.
STRAGGLER_MIN_S = 1.0
#: Threads a pool may make (only when none is idle; Prefect's default too).
UNBOUNDED = sys.maxsize

#: Attribute on a task's function naming the pipeline op it implements.
OP_ATTRIBUTE = "__llama_op__"
#: Seconds a newly ready invocation waits for its siblings before commit (ours).
COALESCE_S = 0.02
#: Flow parameters the runner reads its run settings from.
RUN_PARAMETERS = ("slo_s", "objective", "accuracy_floor")
#: Flow parameters naming the blocks the runner is configured from.
BLOCK_PARAMETERS = ("backend_settings", "price_catalog", "profile_store")
#: Types of parameter values that are never a future nor hold one.
_ATOMS = (int, float, str, bytes, bool, type(None))
#: The backends this runner can build, by name.
BACKEND_FACTORIES = {LOCAL_CPU: local_cpu, LOCAL_GPU: local_gpu}


def resolve_pipeline(pipeline: Pipeline | str) -> Pipeline:
    """Returns a pipeline, importing it from ``"module:attribute"`` when given text."""
    if isinstance(pipeline, Pipeline):
        return pipeline
    module, _, attribute = pipeline.partition(":")
    if not attribute:
        raise ConfigurationError(
            f"pipeline must be a Pipeline or 'module:attribute', but got {pipeline!r}"
        )
    found = getattr(importlib.import_module(module), attribute)
    if not isinstance(found, Pipeline):
        raise ConfigurationError(
            f"{pipeline!r} is a {type(found).__name__}, not a Pipeline"
        )
    return found


class LlamaTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Runs a pipeline's task invocations with per-invocation targets and configs.

    Args:
        pipeline: The pipeline, or ``"module:attribute"`` naming it.
        profile_path: The profile store (a JSON file or an ``s3://`` URI) to plan
            from; default
            ``$LLAMA_PREFECT_PROFILES`` or ``runs/profiles/PIPELINE.json``.
        slo_s: End-to-end latency target of the run, in seconds, unless the flow run
            has an ``slo_s`` parameter.
        objective: ``cost`` (default), ``latency`` or ``cheapest``.
        accuracy_floor: Configurations less accurate than this are never chosen.
        cpu_slots: Slots of ``local-cpu`` (default: the usable cores).
        gpu_slots: Slots of ``local-gpu`` (default: one per CUDA device; none without).
        feedback: Correct profiles with what each invocation took.
        late_commit: Decide again when a slot is free, not only at submit.
        save_profiles: Write corrected profiles back to `profile_path` at the end.
        inject_failure_rate: Share of attempts made to fail once with a
            `TransientError` (for fault benchmarks; the task's retries handle it).
        inject_straggler_rate: Share of attempts made to run slower.
        inject_straggler_factor: How many times its own time a straggler takes.
        seed: Seed of the scheduler's injection draws.
        duplication: Duplicate stragglers.
        batching: Let configurations with a ``call_batch`` knob share one call.
        objective_fn: An objective callable (``(candidates, target_s) ->
            candidate``) that replaces ``objective``, for static plans.
        backends: More backends for this run, such as `LambdaBackend` or a GPU
            `WorkPoolBackend`; ops use them where the pipeline allows and the
            profiles know configurations on them. Default: those the environment
            names (`llama_prefect.backends.cloud`), usually none.
        backend_settings: Name of a saved `LlamaBackendSettings` block, unless the
            flow run has a ``backend_settings`` parameter.
        price_catalog: Name of a saved `LlamaPriceCatalog` block (default: the
            price file shipped with the package), likewise.
        profile_store: Name of a saved `LlamaProfileStore` block; it overrides
            `profile_path`, likewise.
    """

    def __init__(
        self,
        pipeline: Pipeline | str,
        *,
        profile_path: str | Path | None = None,
        slo_s: float = 120.0,
        objective: str = "cost",
        accuracy_floor: float = 0.0,
        cpu_slots: int | None = None,
        gpu_slots: int | None = None,
        feedback: bool = True,
        late_commit: bool = True,
        save_profiles: bool = True,
        inject_failure_rate: float = 0.0,
        inject_straggler_rate: float = 0.0,
        inject_straggler_factor: float = 5.0,
        seed: int = 0,
        backends: Sequence[Backend] = (),
        backend_settings: str | None = None,
        price_catalog: str | None = None,
        profile_store: str | None = None,
        duplication: bool = True,
        batching: bool = True,
        objective_fn: Any = None,
    ) -> None:
        super().__init__()
        self._args: dict[str, Any] = dict(
            pipeline=pipeline,
            profile_path=profile_path,
            slo_s=slo_s,
            objective=objective,
            accuracy_floor=accuracy_floor,
            cpu_slots=cpu_slots,
            gpu_slots=gpu_slots,
            feedback=feedback,
            late_commit=late_commit,
            save_profiles=save_profiles,
            inject_failure_rate=inject_failure_rate,
            inject_straggler_rate=inject_straggler_rate,
            inject_straggler_factor=inject_straggler_factor,
            seed=seed,
            backends=tuple(backends),
            backend_settings=backend_settings,
            price_catalog=price_catalog,
            profile_store=profile_store,
            duplication=duplication,
            batching=batching,
            objective_fn=objective_fn,
        )
        self.pipeline = resolve_pipeline(pipeline)
        location = str(
            profile_path
            or os.environ.get("LLAMA_PREFECT_PROFILES")
            or f"runs/profiles/{self.pipeline.name}.json"
        )
        self.profile_path: Path | str = (
            location if s3.is_s3_uri(location) else Path(location)
        )
        self.scheduler: Scheduler | None = None
        self.run_settings: dict[str, Any] = {}
        self.prices: PriceCatalog | None = None
        self.save_profiles = save_profiles
        self.started_s = 0.0
        self._lock = threading.RLock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._backends: dict[str, BackendSlots] = {}
        self._pending: dict[str, _Pending] = {}
        self._records: list[dict[str, Any]] = []
        self._missed_ops: set[str] = set()  # ops whose predicted miss was logged
        self._clock = RealClock()
        self._dispatch_timer: threading.Timer | None = None
        self._idle = threading.Condition(self._lock)
        self._remote: dict[str, RemoteBackend] = {}
        self._workers: _DaemonThreads | None = None
        self._closed = False
        self._bodies: dict[str, InvocationBody] = {}
        self._batches: dict[int, BatchCall] = {}
        self._poll_timer: threading.Timer | None = None
        self._poll_at = float("inf")
        self._decision_s: dict[str, float] = {}

    def duplicate(self) -> LlamaTaskRunner:
        """A new runner with the same configuration (Prefect makes one per flow run)."""
        return type(self)(**self._args)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> LlamaTaskRunner:
        super().__enter__()
        extra = list(self._args["backends"]) or backends_from_env()
        self._extra: list[Backend] = extra
        # The constructor's backends; a backend settings block that a flow run
        # names replaces them when the first task is submitted (see `_configure`).
        names = list(BACKEND_FACTORIES) + [b.name for b in extra]
        self._backends, self._remote = _build_backends(
            names,
            {LOCAL_CPU: self._args["cpu_slots"], LOCAL_GPU: self._args["gpu_slots"]},
            extra,
        )
        self.started_s = self._clock.now()
        return self

    def _ensure_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Configures the run on its first submit, inside the flow run's context.

        The flow run's parameters (run settings and block names) are only known
        once the flow runs, after Prefect entered the runner, so backends, prices
        and the profile location are settled here.
        """
        if self._executor is not None:  # configured: no lock needed to read it
            return self._executor
        with self._lock:
            if self._executor is None:
                self._configure()
                # The scheduler's slots bound what runs; the pools must never make
                # a committed attempt wait. An engine waits in its body while the
                # attempts run on the workers, and keeps waiting between the task's
                # retries (its slot goes to others meanwhile), so engines may
                # outnumber slots; a batched call has one worker per member. The
                # engines' pool makes threads only when none is idle, as Prefect's
                # ThreadPoolTaskRunner does by default; each attempt gets a daemon
                # thread of its own (see `_DaemonThreads`).
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=UNBOUNDED, thread_name_prefix="llama"
                )
                self._workers = _DaemonThreads("llama-attempt")
            return self._executor

    def _configure(self) -> None:
        from llama_prefect.blocks import load_run_blocks

        self.run_settings = self._read_run_settings()
        blocks = load_run_blocks(**self._read_block_names())
        if blocks.backends is not None:
            slots = {
                LOCAL_CPU: blocks.backends.cpu_slots,
                LOCAL_GPU: blocks.backends.gpu_slots,
            }
            self._backends, self._remote = _build_backends(
                blocks.backends.enabled, slots, self._extra
            )
        self.prices = blocks.prices.to_catalog() if blocks.prices else None
        if blocks.profiles is not None:
            self.profile_path = Path(blocks.profiles.path)
            self.save_profiles = blocks.profiles.save_corrected

    def __exit__(self, *exc_info: Any) -> None:
        # An interrupt (Ctrl-C, SIGTERM, SystemExit: no `Exception`) ends the run now;
        # any other exit runs what is still queued first, as the flow submitted it.
        interrupted = exc_info[0] is not None and not issubclass(exc_info[0], Exception)
        if interrupted:
            self._abandon()
        else:
            self._drain()
        with self._lock:
            for timer in (self._dispatch_timer, self._poll_timer):
                if timer is not None:
                    timer.cancel()
            self._dispatch_timer = self._poll_timer = None
        for pool in (self._executor, self._workers):
            if pool is not None:
                pool.shutdown(wait=not interrupted, cancel_futures=True)
        self._executor = self._workers = None
        if self.scheduler is not None and self.save_profiles and self._args["feedback"]:
            with self._lock:  # an attempt still running may end meanwhile
                s3.save_profiles(self.scheduler.store, self.profile_path)
        super().__exit__(*exc_info)

    def _drain(self) -> None:
        """Waits until every invocation submitted so far has ended."""
        # Invocations still queued here (not yet in the executor) must run before
        # the executor closes, as the thread pool runner runs all it was given.
        if self.scheduler is not None:
            self._dispatch()
            with self._idle:
                self._idle.wait_for(lambda: not self._pending)

    def _abandon(self) -> None:
        """Stops the run at an interrupt, without waiting for its invocations.

        Nothing is committed any more. An invocation still queued never starts: its
        future is cancelled. One whose task run has started ends at once: its body
        raises `KeyboardInterrupt` to Prefect's engine, which ends the task run
        Crashed, as it ends the flow run. An op body already running cannot be
        stopped (it is a thread): it runs on in a daemon thread, which does not keep
        the process from exiting, and its result is dropped.
        """
        with self._lock:
            self._closed = True
            queued = [p for i, p in self._pending.items() if i not in self._bodies]
            bodies = list(self._bodies.values())
        for pending in queued:
            pending.outer.cancel()
        for body in bodies:
            body.interrupt(KeyboardInterrupt("the run was interrupted"))
        logger.debug(
            "llama runner interrupted: %d queued invocations cancelled, %d running "
            "ones ended",
            len(queued),
            len(bodies),
        )

    # -- submission --------------------------------------------------------------------

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectConcurrentFuture[Any]:
        """Creates an invocation for `task` and returns its future at once."""
        if not self._started:
            raise RuntimeError("the task runner is not started; use it as a context")
        executor = self._ensure_executor()
        wait_for = list(wait_for or [])
        pending = _Pending(
            task=task,
            parameters=parameters,
            wait_for=wait_for,
            dependencies=dependencies,
            context=contextvars.copy_context(),
            outer=concurrent.futures.Future(),
            task_run_id=uuid.uuid4(),
            run_logger=_run_logger(),
        )
        future = PrefectConcurrentFuture(pending.task_run_id, pending.outer)
        op = self._op_of(task)
        if op is None:
            executor.submit(pending.context.run, self._run_untuned, pending)
            return future

        scheduler = self._ensure_scheduler()
        spec = self.pipeline.ops[op]
        concrete = _without_futures(parameters)
        with self._lock:
            units = _safe(spec.units, concrete, None)
            if units is None:
                units = scheduler.store.units_per_invocation(op)
            began_s = time.perf_counter()
            inv = scheduler.add(
                str(pending.task_run_id), op, units, _safe(spec.group, concrete, None)
            )
            self._decision_s[inv.id] = time.perf_counter() - began_s
            self._pending[inv.id] = pending
        self._when_done(wait_for + _futures_in(parameters), lambda: self._ready(inv.id))
        return future

    def _ensure_scheduler(self) -> Scheduler:
        if self.scheduler is not None:  # built once per run: no lock needed to read
            return self.scheduler
        with self._lock:
            if self.scheduler is None:
                self.scheduler = self._build_scheduler()
            return self.scheduler

    def _build_scheduler(self) -> Scheduler:
        store: ProfileStore = s3.load_profiles(self.profile_path)
        settings = Settings(
            deadline_s=self.started_s + float(self.run_settings["slo_s"]),
            objective=self._args["objective_fn"] or self.run_settings["objective"],
            accuracy_floor=float(self.run_settings["accuracy_floor"]),
            late_commit=self._args["late_commit"],
            feedback=self._args["feedback"],
            duplication=self._args["duplication"],
            straggler_min_s=STRAGGLER_MIN_S,
            batching=self._args["batching"],
            # The task's own retries decide whether a failed invocation is tried
            # again; the body asks for a re-planned attempt when they do.
            retries=0,
            inject_failure_rate=self._args["inject_failure_rate"],
            inject_straggler_rate=self._args["inject_straggler_rate"],
            inject_straggler_factor=self._args["inject_straggler_factor"],
            seed=self._args["seed"],
        )
        logger.info(
            "llama runner: SLO %.1f s, objective %s, accuracy floor %.2f, backends %s",
            settings.deadline_s - self.started_s,
            settings.objective,
            settings.accuracy_floor,
            sorted(self._backends),
        )
        return Scheduler(
            self.pipeline,
            store,
            self.prices or PriceCatalog.load(),
            self._backends,
            settings,
            clock=self._clock,
        )

    def _read_run_settings(self) -> dict[str, Any]:
        from prefect.context import FlowRunContext

        settings = {k: self._args[k] for k in RUN_PARAMETERS}
        ctx = FlowRunContext.get()
        if ctx is not None and ctx.flow_run is not None:
            for key in RUN_PARAMETERS:
                value = (ctx.flow_run.parameters or {}).get(key)
                if value is not None:
                    settings[key] = value
        return RunSettings.check(**settings).model_dump()

    def _read_block_names(self) -> dict[str, str | None]:
        """Block names from the flow run's parameters, else from the constructor."""
        from prefect.context import FlowRunContext

        names = {k: self._args[k] for k in BLOCK_PARAMETERS}
        ctx = FlowRunContext.get()
        if ctx is not None and ctx.flow_run is not None:
            for key in BLOCK_PARAMETERS:
                value = (ctx.flow_run.parameters or {}).get(key)
                if value is not None:
                    names[key] = value
        return names

    def _op_of(self, task: Any) -> str | None:
        name = getattr(task.fn, OP_ATTRIBUTE, None) or task.name
        return name if name in self.pipeline.ops else None

    # -- readiness, commit, execution --------------------------------------------------

    def _when_done(self, futures: list[PrefectFuture[Any]], callback: Any) -> None:
        """Calls `callback` once every future in `futures` is done."""
        remaining = [len(futures)]
        guard = threading.Lock()
        if not futures:
            callback()
            return

        def one_done(_: Any) -> None:
            with guard:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                callback()

        for fut in futures:
            wrapped = getattr(fut, "wrapped_future", None)
            if isinstance(wrapped, concurrent.futures.Future):
                wrapped.add_done_callback(one_done)
            else:
                waiter = threading.Thread(target=_wait_then, args=(fut, one_done))
                waiter.daemon = True  # a future never done must not block the exit
                waiter.start()

    def _ready(self, inv_id: str) -> None:
        with self._lock:
            assert self.scheduler is not None
            if self._closed:
                return
            self.scheduler.mark_ready(inv_id)
            if self._dispatch_timer is not None:
                return
            # A flow submits siblings in a burst (a fan-out loop); committing the
            # first before the others exist would plan it as if it were alone.
            self._dispatch_timer = threading.Timer(COALESCE_S, self._timed_dispatch)
            self._dispatch_timer.daemon = True
            self._dispatch_timer.start()

    def _timed_dispatch(self) -> None:
        with self._lock:
            self._dispatch_timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        """Polls for stragglers when due and starts every attempt committed now."""
        with self._lock:
            sched = self.scheduler
            if sched is None or self._executor is None or self._closed:
                return
            if sched.next_event_s() <= self._clock.now():
                sched.poll()
            began_s = time.perf_counter()
            committed = sched.commit_ready()
            if committed:
                share_s = (time.perf_counter() - began_s) / len(committed)
                for attempt in committed:
                    inv_id = attempt.invocation.id
                    spent_s = self._decision_s.get(inv_id, 0.0)
                    self._decision_s[inv_id] = spent_s + share_s
                    self._start(attempt)
            self._arm_poll()

    def _start(self, attempt: Attempt) -> None:
        """Hands a committed attempt to its invocation's body (a new engine first)."""
        inv = attempt.invocation
        pending = self._pending[inv.id]
        self._log_decision(attempt, pending)
        call = attempt.call
        batch_fn = self.pipeline.ops[inv.op].batch_fn
        # A batched call runs in this process; on a remote backend each member
        # makes its own call (a batched remote call is not built).
        shared = len(call.attempts) > 1 and call.backend not in self._remote
        if shared and batch_fn and id(call) not in self._batches:
            members = [a.invocation.id for a in call.attempts]
            batch = BatchCall(call, members, batch_fn, pending.task.fn)
            self._batches[id(call)] = batch
        body = self._bodies.get(inv.id)
        if body is not None:
            body.add_attempt(attempt)  # a duplicate, a re-plan or a retry
            return
        assert self._executor is not None and self._workers is not None
        hooks = _Hooks(self, pending)
        body = InvocationBody(
            invocation_id=inv.id,
            fn=pending.task.fn,
            hooks=hooks,
            workers=self._workers,
            straggler_factor=float(self._args["inject_straggler_factor"]),
            batches=self._batches,
        )
        hooks.body = body
        self._bodies[inv.id] = body
        body.add_attempt(attempt)
        self._executor.submit(pending.context.run, self._run, attempt, pending, body)

    def _arm_poll(self) -> None:
        """Makes sure `_dispatch` runs when the next straggler check is due."""
        assert self.scheduler is not None
        due_s = self.scheduler.next_event_s()
        if due_s == float("inf"):
            return
        if self._poll_timer is not None and self._poll_at <= due_s:
            return
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        self._poll_at = due_s
        delay_s = max(0.0, due_s - self._clock.now()) + 1e-3
        self._poll_timer = threading.Timer(delay_s, self._timed_poll)
        self._poll_timer.daemon = True
        self._poll_timer.start()

    def _timed_poll(self) -> None:
        with self._lock:
            self._poll_timer, self._poll_at = None, float("inf")
        self._dispatch()

    def _run(self, first: Attempt, pending: _Pending, body: InvocationBody) -> None:
        """Runs the invocation's task run: Prefect's engine calling its body."""
        from prefect.task_engine import run_task_sync

        parameters = dict(pending.parameters)
        parameters.update(_knobs_for(pending.task, first.plan.config.as_dict()))
        state: Any = None
        crash: BaseException | None = None
        with metering.metered() as meter:
            try:
                state = run_task_sync(
                    task=proxy_task(pending.task, body),
                    task_run_id=pending.task_run_id,
                    parameters=parameters,
                    wait_for=pending.wait_for,
                    return_type="state",
                    dependencies=pending.dependencies,
                )
            except BaseException as exc:  # the engine returns states; this is a crash
                crash = exc
        ok = crash is None and state is not None and bool(state.is_completed())
        failure: dict[str, Any] = {}
        if crash is not None:
            failure = _failure(crash)
        elif not ok:
            failure = _failure(error_of(state) if state is not None else None)
            said = (state.message or state.name) if state is not None else "no state"
            failure["error"] = failure.get("error") or said
        self._finish(first.invocation, body, ok=ok, meter=meter, failure=failure)
        if crash is not None:
            pending.outer.set_exception(crash)
        else:
            pending.outer.set_result(state)
        self._dispatch()

    def _backends_left(self, attempt: Attempt, avoid: Iterable[str]) -> list[str]:
        """Backends of this run the invocation may still be planned on."""
        assert self.scheduler is not None
        closed = set(attempt.invocation.avoid) | set(avoid)
        profiled = {c.backend for c in self.scheduler.store.configurations(attempt.op)}
        declared = self.pipeline.ops[attempt.op].backends
        return [
            b
            for b in declared
            if b in self._backends and b in profiled and b not in closed
        ]

    def _run_untuned(self, pending: _Pending) -> None:
        from prefect.task_engine import run_task_sync

        try:
            state = run_task_sync(
                task=pending.task,
                task_run_id=pending.task_run_id,
                parameters=pending.parameters,
                wait_for=pending.wait_for,
                return_type="state",
                dependencies=pending.dependencies,
            )
            pending.outer.set_result(state)
        except BaseException as exc:
            pending.outer.set_exception(exc)

    def _finish(
        self,
        inv: Invocation,
        body: InvocationBody,
        *,
        ok: bool,
        meter: Any,
        failure: dict[str, Any],
    ) -> None:
        """Settles the invocation with the scheduler and records it."""
        with self._lock:
            sched = self.scheduler
            assert sched is not None
            for attempt in inv.attempts:  # committed, but its task run ended first
                if attempt.finished_s is None and attempt.id not in body.started:
                    sched.withdraw(attempt.id)
            if not ok:
                sched.give_up(inv.id, failure.get("error") or "failed")
            elif inv.state is not State.DONE:
                sched.settle(inv.id)  # the engine did not need the body (a cache)
            self._stop_cancelled()
            if ok and inv.plan is not None:
                sched.store.observe_peak_mem(
                    inv.op, inv.plan.config, meter.peak_memory_mb
                )
            record = {**self._record(inv, body), **meter.as_record(), **failure}
            self._records.append(record)
            self._pending.pop(inv.id, None)
            self._bodies.pop(inv.id, None)
            self._idle.notify_all()

    # -- attempts, called from the bodies ----------------------------------------

    def _execute(
        self, attempt: Attempt, fn: Any, kwargs: dict[str, Any], body: InvocationBody
    ) -> Any:
        """Runs one attempt's body: here, or on its remote backend."""
        backend = self._remote.get(attempt.call.backend)
        if backend is None:
            return fn(**kwargs)
        call = RemoteCall(
            invocation_id=attempt.invocation.id,
            op=attempt.op,
            function=ref_of(fn),
            kwargs=kwargs,
            config=attempt.plan.config,
            predicted_s=attempt.plan.predicted_s,
            attempt=attempt.number - 1,
        )
        outcome = backend.run(call)
        body.billed[attempt.id] = outcome.cost_usd
        body.details[attempt.id] = dict(outcome.details)
        return outcome.value

    def _ended(
        self, attempt: Attempt, error: BaseException | None
    ) -> tuple[bool, bool]:
        """Reports an attempt's end: (its result wins, more attempts may come)."""
        with self._lock:
            sched = self.scheduler
            assert sched is not None
            said = None if error is None else f"{type(error).__name__}: {error}"
            sched.finish(
                attempt.id,
                ok=error is None,
                error=said,
                retriable=error is None or not is_deterministic(error),
                hold=True,
            )
            self._stop_cancelled()
            # A cancelled attempt's end says nothing about the invocation (it may
            # be held, or on its next attempt already): the body must not stop.
            cancelled = attempt.state is State.CANCELLED
            more = cancelled or attempt.invocation.state in (State.READY, State.RUNNING)
            won = attempt.won
        self._dispatch()
        return won, more

    def _stop_cancelled(self) -> None:
        """Tells the bodies which attempts the scheduler cancelled (under the lock).

        A cancelled attempt that has not started never runs; one that runs keeps
        its slots until it ends, and its result is dropped.
        """
        assert self.scheduler is not None
        for attempt in self.scheduler.take_cancelled():
            body = self._bodies.get(attempt.invocation.id)
            if body is not None:
                body.cancel(attempt.id)

    def _withdrawn(self, attempt: Attempt) -> None:
        """A cancelled attempt that never started gives back its slots."""
        with self._lock:
            assert self.scheduler is not None
            self.scheduler.withdraw(attempt.id)
        self._dispatch()

    def _refused(self, attempt: Attempt, exc: ReplanError, refusals: int) -> bool:
        """A backend refused the attempt; plans it again unless nowhere is left.

        Returns:
            False when the invocation must fail instead: no backend left to try, or
            refused more than `MAX_REPLANS` times.
        """
        with self._lock:
            sched = self.scheduler
            assert sched is not None
            avoid = () if exc.whole_backend else (exc.backend,)
            if refusals > MAX_REPLANS or not self._backends_left(attempt, avoid):
                return False
            if exc.whole_backend:
                sched.mark_unavailable(exc.backend, self._clock.now() + exc.cooldown_s)
                timer = threading.Timer(exc.cooldown_s, self._dispatch)
                timer.daemon = True
                timer.start()
            sched.release(attempt.id, error=str(exc), avoid=avoid)
        self._dispatch()
        return True

    def _again(self, inv_id: str) -> bool:
        """The task's own retry called the body again: plan another attempt.

        Returns:
            Whether an attempt will come: planned now, or still queued or running
            (the engine gave up waiting on it, as at a task timeout).
        """
        with self._lock:
            sched = self.scheduler
            assert sched is not None
            coming = sched.resume(inv_id)
            state = sched.invocations[inv_id].state
            coming = coming or state in (State.READY, State.RUNNING)
        self._dispatch()
        return coming

    # -- records and logs --------------------------------------------------------------

    def _record(self, inv: Invocation, body: InvocationBody) -> dict[str, Any]:
        plan, spec = inv.plan, inv.speculative
        assert plan is not None
        last = inv.winner or (inv.attempts[-1] if inv.attempts else None)
        first = inv.attempts[0] if inv.attempts else None
        cost_usd = sum(body.billed.get(a.id, a.cost_usd or 0.0) for a in inv.attempts)
        cost_usd += sum(r.cost_usd for r in body.refusals)
        return {
            "op": inv.op,
            "task_run_id": inv.id,
            "group": inv.group,
            "units": inv.units,
            "state": inv.state.value,
            "error": inv.error,
            "time_left_s": plan.time_left_s,
            "target_s": plan.target_s,
            "path": list(plan.path),
            "backend": plan.config.backend,
            "configuration": plan.config.as_dict(),
            "speculative_configuration": spec.config.as_dict() if spec else None,
            "speculative_backend": spec.config.backend if spec else None,
            "predicted_s": plan.predicted_s,
            # The prediction of its run, without the tail margin and the waits
            # that planning adds to `predicted_s`: what prediction fidelity compares.
            "predicted_run_s": plan.run_s + (last.startup_s if last else 0.0),
            "predicted_cost_usd": plan.cost_usd,
            "predicted_miss": plan.predicted_miss,
            "accuracy": plan.accuracy,
            "observed_s": last.observed_s if last is not None else None,
            # Of `observed_s`, the seconds in the op's body; the rest is the task
            # engine around it (a profile's fixed part must hold that too).
            "body_s": body.body_s.get(last.id) if last is not None else None,
            "cost_usd": cost_usd if inv.attempts else None,
            "started_s": _since(inv.started_s, self.started_s),
            "finished_s": _since(inv.finished_s, self.started_s),
            "attempts": len(inv.attempts),
            "duplicates": sum(1 for a in inv.attempts if a.kind == "duplicate"),
            "injected": first.injected if first is not None else None,
            "won_by": inv.winner.kind if inv.winner is not None else None,
            "batched_with": len(last.call.attempts) if last is not None else 1,
            "decision_ms": 1000 * self._decision_s.pop(inv.id, 0.0),
            "replans": [
                {"backend": r.backend, "error": r.error, "cost_usd": r.cost_usd}
                for r in body.refusals
            ],
            "backend_details": body.details.get(last.id, {}) if last else {},
        }

    def elapsed_s(self) -> float:
        """Seconds since the runner started (the run's latency so far)."""
        return self._clock.now() - self.started_s

    def records(self) -> list[dict[str, Any]]:
        """The plan records of every finished invocation so far, in finishing order."""
        with self._lock:
            return list(self._records)

    def _log_decision(self, inv: Attempt, pending: _Pending) -> None:
        """Logs a decision: at INFO when it is news, else at DEBUG.

        News is a duplicate, a retry or a re-plan, and the first decision of each
        op predicted to miss its target. A first attempt planned to meet its target,
        and an op's later predicted misses (once a deadline has passed, every
        invocation after it is one), log at DEBUG only: one line per task run would
        be shipped to the Prefect API for every invocation, which costs more than
        the run of a short op; its plan record (`records`, the run report) keeps
        every decision.
        """
        plan = inv.plan
        assert plan is not None
        news = inv.kind != "first"
        if plan.predicted_miss and inv.op not in self._missed_ops:
            self._missed_ops.add(inv.op)
            news = True
        level = logging.INFO if news else logging.DEBUG
        target = pending.run_logger or logger
        if not target.isEnabledFor(level):
            return
        knobs = "".join(f" {k}={v}" for k, v in plan.config.knobs)
        miss = " (predicted miss)" if plan.predicted_miss else ""
        line = (
            f"{inv.op}: target {plan.target_s:.2f} s of {plan.time_left_s:.1f} s left "
            f"-> {plan.config.backend}{knobs}, predicted {plan.predicted_s:.2f} s, "
            f"${plan.cost_usd:.7f}{miss}"
        )
        if inv.kind != "first":
            line += f" ({inv.kind})"
        target.log(level, line)


class _Hooks:
    """The runner's side of one invocation's body (see `proxy.AttemptHooks`)."""

    def __init__(self, runner: LlamaTaskRunner, pending: _Pending) -> None:
        self.runner, self.pending = runner, pending
        self.body: InvocationBody | None = None

    def execute(self, attempt: Any, fn: Any, kwargs: dict[str, Any]) -> Any:
        assert self.body is not None
        return self.runner._execute(attempt, fn, kwargs, self.body)

    def withdrawn(self, attempt: Any) -> None:
        self.runner._withdrawn(attempt)

    def knobs(self, attempt: Any) -> dict[str, Any]:
        return _knobs_for(self.pending.task, attempt.plan.config.as_dict())

    def ended(self, attempt: Any, error: BaseException | None) -> tuple[bool, bool]:
        return self.runner._ended(attempt, error)

    def refused(self, attempt: Any, error: ReplanError, refusals: int) -> bool:
        return self.runner._refused(attempt, error, refusals)

    def again(self, invocation_id: str) -> bool:
        return self.runner._again(invocation_id)


class _DaemonThreads:
    """Runs each call on a daemon thread of its own (the attempts of invocations).

    An op body cannot be stopped once it runs. On daemon threads, one that still runs
    when the run is interrupted does not keep the process from exiting, as the
    threads of a `ThreadPoolExecutor` would (they are joined at exit).

    A call never waits for another: it goes to an idle thread when there is one (a
    thread whose last call ended less than `IDLE_S` ago), else to a new thread.
    Starting a thread per call would cost more than a short op's body.

    Args:
        name: Prefix of the threads' names.
    """

    #: Seconds an idle thread waits for its next call before it ends (ours).
    IDLE_S = 10.0

    def __init__(self, name: str) -> None:
        self.name = name
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._count = 0
        self._idle = 0  # threads waiting for a call that no call was promised to
        self._closed = False
        self._calls: queue.SimpleQueue[tuple[Any, tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )

    def submit(self, fn: Any, *args: Any) -> None:
        """Starts `fn(*args)` on an idle daemon thread, or on a new one."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._calls.put((fn, args))
                return
            self._count += 1
            thread = threading.Thread(
                target=self._serve,
                args=((fn, args),),
                name=f"{self.name}_{self._count}",
                daemon=True,
            )
            self._threads.add(thread)
        thread.start()

    def _serve(self, call: tuple[Any, tuple[Any, ...]] | None) -> None:
        try:
            while call is not None:
                fn, args = call
                fn(*args)
                del fn, args, call  # an idle thread keeps no call's arguments alive
                call = self._next_call()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next_call(self) -> tuple[Any, tuple[Any, ...]] | None:
        """Waits as an idle thread for a call; None when the thread is to end."""
        with self._lock:
            if self._closed:
                return None
            self._idle += 1
        try:
            return self._calls.get(timeout=self.IDLE_S)
        except queue.Empty:
            pass
        with self._lock:  # a call may have been promised to it meanwhile
            try:
                return self._calls.get_nowait()
            except queue.Empty:
                self._idle -= 1
                return None

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Ends the threads once idle; waits for the running ones when `wait`.

        Nothing is queued: every call has a thread already. A call submitted later
        gets a new thread, which ends with it.
        """
        with self._lock:
            self._closed = True
            for _ in range(self._idle):
                self._calls.put(None)
            self._idle = 0
            running = list(self._threads)
        if not wait:
            return
        for thread in running:
            thread.join()


class _Pending:
    """A submitted task waiting for its turn, with what its engine call needs."""

    def __init__(self, **fields: Any) -> None:
        self.task = fields["task"]
        self.parameters: dict[str, Any] = fields["parameters"]
        self.wait_for: list[PrefectFuture[Any]] = fields["wait_for"]
        self.dependencies = fields["dependencies"]
        self.context: contextvars.Context = fields["context"]
        self.outer: concurrent.futures.Future[Any] = fields["outer"]
        self.task_run_id: uuid.UUID = fields["task_run_id"]
        self.run_logger: logging.LoggerAdapter[Any] | None = fields["run_logger"]


def _run_logger() -> Any:
    """The flow run's logger when called inside a flow run (its lines reach the UI)."""
    from prefect.context import FlowRunContext
    from prefect.logging import get_run_logger

    return get_run_logger() if FlowRunContext.get() is not None else None


def _wait_then(future: PrefectFuture[Any], callback: Any) -> None:
    future.wait()
    callback(future)


def _futures_in(parameters: dict[str, Any]) -> list[PrefectFuture[Any]]:
    if all(type(v) in _ATOMS for v in parameters.values()):
        return []  # nothing to walk: the common case, at every submit
    found: list[PrefectFuture[Any]] = []

    def visit(value: Any) -> Any:
        if isinstance(value, PrefectFuture):
            found.append(value)
        return value

    visit_collection(parameters, visit_fn=visit, return_data=False)
    return found


def _without_futures(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if not isinstance(v, PrefectFuture)}


def _safe(fn: Any, parameters: dict[str, Any], default: Any) -> Any:
    """Calls an op's `units`/`group` helper, falling back when inputs are not known."""
    try:
        return fn(parameters)
    except (KeyError, AttributeError, TypeError):
        return default


def _knobs_for(task: Any, knobs: dict[str, Any]) -> dict[str, Any]:
    """The knob values the task's function accepts as parameters."""
    accepted = _accepted(task.fn)
    return {k: v for k, v in knobs.items() if k in accepted}


@functools.lru_cache(maxsize=256)
def _accepted(fn: Any) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


def _failure(error: BaseException | None) -> dict[str, Any]:
    """Record fields of a failed invocation: its error's kind and whether it repeats."""
    if error is None:
        return {"error_type": None, "deterministic": False}
    return {
        "error": f"{type(error).__name__}: {error}",
        "error_type": type(error).__name__,
        "deterministic": is_deterministic(error),
    }


def _build_backends(
    enabled: list[str], slots: dict[str, int | None], extra: Sequence[Backend]
) -> tuple[dict[str, BackendSlots], dict[str, RemoteBackend]]:
    """The enabled backends this run has: their slots, and the remote ones by name.

    Args:
        enabled: Backend names to use, in order.
        slots: Slots of the local backends (None: what the machine has).
        extra: The run's cloud backends (from the constructor or the environment).

    Raises:
        ConfigurationError: For a name that is neither a local backend nor one of
            the run's cloud backends, or when none of the enabled ones is available.
    """
    known: dict[str, Backend] = {
        name: factory(slots.get(name)) for name, factory in BACKEND_FACTORIES.items()
    }
    known.update({b.name: b for b in extra})
    unknown = [name for name in enabled if name not in known]
    if unknown:
        raise ConfigurationError(
            f"backends {unknown} are not configured for this run; it has "
            f"{sorted(known)}. Cloud backends come from the environment "
            "(llama_prefect.backends.cloud); edit the backend settings block."
        )
    chosen = [known[name] for name in enabled if known[name].available()]
    if not chosen:
        raise ConfigurationError(
            f"none of the enabled backends {enabled} is available on this machine "
            "(local-gpu needs a CUDA device); enable local-cpu"
        )
    remote = {b.name: b for b in chosen if isinstance(b, RemoteBackend)}
    return {b.name: b.slots() for b in chosen}, remote


def _since(value: float | None, origin: float) -> float | None:
    return None if value is None else value - origin
