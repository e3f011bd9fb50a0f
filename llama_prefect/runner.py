"""LlamaTaskRunner: a Prefect task runner that tunes every task invocation.

Each task submitted with ``.submit()`` or ``.map()`` whose task is an op of the runner's
pipeline becomes an invocation of the scheduler in `llama_prefect.core.scheduler`. It
gets a speculative plan at once and a final one when a backend slot is free for it; the
chosen knob values are then written into the task's parameters, so they show in the
Prefect UI as the task run's parameters, and Prefect's own task engine runs it (states,
retries, caching and logs behave as with Prefect's thread pool runner).

A plain call ``op(x)`` inside a flow never reaches a task runner: pipelines must submit.

Run settings come from the flow run's parameters when it has them (``slo_s``,
``objective``, ``accuracy_floor``), else from the constructor, so a deployment can set
them per run. The deadline is the moment the runner starts plus ``slo_s``. The same
holds for the blocks a run names (``backend_settings``, ``price_catalog``,
``profile_store``, see `llama_prefect.blocks`): they are read when the first task is
submitted, so a deployment switches backends, prices or profiles by a parameter.

Remote backends (`RemoteBackend`: Lambda, a GPU work pool) are given with
``backends=``. Their invocations still run through the local task engine; the engine
calls a proxy body (`llama_prefect.proxy`) that sends the op body, its arguments and
its configuration to the backend. When the backend throttles, times out or has no
capacity, the proxy hands the invocation back to the scheduler, which plans it again,
on another backend where the plan says so, inside the same task run.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import importlib
import inspect
import logging
import os
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
from llama_prefect.backends.base import Backend, RemoteBackend
from llama_prefect.backends.cloud import backends_from_env
from llama_prefect.backends.local import LOCAL_CPU, LOCAL_GPU, local_cpu, local_gpu
from llama_prefect.core.clock import RealClock
from llama_prefect.core.pipeline import Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import Attempt, BackendSlots, Scheduler, Settings
from llama_prefect.errors import (
    ConfigurationError,
    ReplanError,
    TransientError,
    is_deterministic,
)
from llama_prefect.proxy import ReplanningBody, proxy_task
from llama_prefect.retries import error_of
from llama_prefect.settings import RunSettings

logger = logging.getLogger(__name__)

#: Attribute on a task's function naming the pipeline op it implements.
OP_ATTRIBUTE = "__llama_op__"
#: Seconds a newly ready invocation waits for its siblings before commit (ours).
COALESCE_S = 0.02
#: Flow parameters the runner reads its run settings from.
RUN_PARAMETERS = ("slo_s", "objective", "accuracy_floor")
#: Flow parameters naming the blocks the runner is configured from.
BLOCK_PARAMETERS = ("backend_settings", "price_catalog", "profile_store")
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
        self._clock = RealClock()
        self._dispatch_timer: threading.Timer | None = None
        self._idle = threading.Condition(self._lock)
        self._remote: dict[str, RemoteBackend] = {}
        self._recommitted: dict[str, threading.Event] = {}
        self._bodies: dict[str, ReplanningBody] = {}
        self._current: dict[str, Attempt] = {}

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
        with self._lock:
            if self._executor is None:
                self._configure()
                workers = sum(b.capacity for b in self._backends.values()) + 2
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="llama"
                )
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
        # Invocations still queued here (not yet in the executor) must run before
        # the executor closes, as the thread pool runner runs all it was given.
        if self._dispatch_timer is not None:
            self._dispatch_timer.cancel()
            self._dispatch_timer = None
        if self.scheduler is not None:
            self._dispatch()
            with self._idle:
                self._idle.wait_for(lambda: not self._pending)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.scheduler is not None and self.save_profiles and self._args["feedback"]:
            s3.save_profiles(self.scheduler.store, self.profile_path)
        super().__exit__(*exc_info)

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
            inv = scheduler.add(
                str(pending.task_run_id), op, units, _safe(spec.group, concrete, None)
            )
            self._pending[inv.id] = pending
        self._when_done(wait_for + _futures_in(parameters), lambda: self._ready(inv.id))
        return future

    def _ensure_scheduler(self) -> Scheduler:
        with self._lock:
            if self.scheduler is None:
                self.scheduler = self._build_scheduler()
            return self.scheduler

    def _build_scheduler(self) -> Scheduler:
        store: ProfileStore = s3.load_profiles(self.profile_path)
        settings = Settings(
            deadline_s=self.started_s + float(self.run_settings["slo_s"]),
            objective=self.run_settings["objective"],
            accuracy_floor=float(self.run_settings["accuracy_floor"]),
            late_commit=self._args["late_commit"],
            feedback=self._args["feedback"],
            # Duplicates and retries need a proxy body in the task run; until the
            # runner has one, a failed invocation fails its task run.
            duplication=False,
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
                threading.Thread(target=_wait_then, args=(fut, one_done)).start()

    def _ready(self, inv_id: str) -> None:
        with self._lock:
            assert self.scheduler is not None
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
        with self._lock:
            if self.scheduler is None or self._executor is None:
                return
            committed = self.scheduler.commit_ready()
            for attempt in committed:
                inv_id = attempt.invocation.id
                pending = self._pending[inv_id]
                self._log_decision(attempt, pending)
                self._current[inv_id] = attempt
                waiting = self._recommitted.pop(inv_id, None)
                if waiting is not None:  # a re-planned invocation: its body goes on
                    waiting.set()
                    continue
                self._executor.submit(pending.context.run, self._run, attempt, pending)

    def _run(self, inv: Attempt, pending: _Pending) -> None:
        from prefect.task_engine import run_task_sync

        assert inv.plan is not None
        parameters = dict(pending.parameters)
        parameters.update(_knobs_for(pending.task, inv.plan.config.as_dict()))
        task = pending.task
        if inv.injected is not None:
            factor = float(self._args["inject_straggler_factor"])
            task = _injecting(task, inv.injected, factor)
        task = self._engine_task(inv, pending, task)
        with metering.metered() as meter:
            try:
                state = run_task_sync(
                    task=task,
                    task_run_id=pending.task_run_id,
                    parameters=parameters,
                    wait_for=pending.wait_for,
                    return_type="state",
                    dependencies=pending.dependencies,
                )
            except BaseException as exc:  # the engine returns states; this is a crash
                failure = _failure(exc)
                self._finish(inv, ok=False, error=failure["error"], extra=failure)
                pending.outer.set_exception(exc)
                self._dispatch()
                return
        ok = state is not None and bool(state.is_completed())
        extra: dict[str, Any] = {**meter.as_record(), "injected": inv.injected}
        if ok and self.scheduler is not None:
            with self._lock:
                self.scheduler.store.observe_peak_mem(
                    inv.op, inv.plan.config, meter.peak_memory_mb
                )
        error = None
        if not ok:
            failure = _failure(error_of(state) if state is not None else None)
            said = (state.message or state.name) if state else "no state"
            error = failure.get("error") or said
            extra.update(failure, error=error)
        self._finish(inv, ok=ok, error=error, extra=extra)
        pending.outer.set_result(state)
        self._dispatch()

    # -- remote backends ---------------------------------------------------------------

    def _engine_task(self, first: Attempt, pending: _Pending, task: Any) -> Any:
        """The task the engine runs: a proxy of `task` when there are remote backends.

        `task` is the submitted task, or its fault-injecting copy; a remote backend
        runs the op body itself, so injected faults happen on local backends only.
        """
        if not self._remote:
            return task
        inv_id = first.invocation.id
        body = ReplanningBody(
            task=task,
            op=first.op,
            invocation_id=inv_id,
            remote=self._remote,
            current=lambda: self._current_plan(inv_id),
            replan=lambda exc: self._replan(inv_id, exc),
            knobs_for=lambda config: _knobs_for(pending.task, config.as_dict()),
        )
        self._bodies[inv_id] = body
        return proxy_task(task, body)

    def _current_plan(self, inv_id: str) -> tuple[Any, float]:
        with self._lock:
            plan = self._current[inv_id].plan
            return plan.config, plan.predicted_s

    def _replan(self, inv_id: str, exc: ReplanError) -> None:
        """Hands the attempt back to the scheduler; waits for the invocation's next."""
        recommitted = threading.Event()
        with self._lock:
            assert self.scheduler is not None
            if exc.whole_backend:
                until_s = self._clock.now() + exc.cooldown_s
                self.scheduler.mark_unavailable(exc.backend, until_s)
                timer = threading.Timer(exc.cooldown_s, self._dispatch)
                timer.daemon = True
                timer.start()
            avoid = () if exc.whole_backend else (exc.backend,)
            attempt = self._current[inv_id]
            if not self._backends_left(attempt, avoid):
                raise exc  # nowhere else to go: the task run fails with the reason
            self._recommitted[inv_id] = recommitted
            self.scheduler.release(attempt.id, error=str(exc), avoid=avoid)
        self._dispatch()
        recommitted.wait()

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
        inv: Attempt,
        *,
        ok: bool,
        error: str | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            assert self.scheduler is not None
            inv_id = inv.invocation.id
            attempt = self._current.pop(inv_id, inv)  # the last, after re-plans
            self.scheduler.finish(attempt.id, ok=ok, error=error)
            record = {**self._record(attempt), **(extra or {})}
            body = self._bodies.pop(inv_id, None)
            if body is not None:
                record.update(_remote_fields(attempt, body), task_run_id=inv_id)
            self._records.append(record)
            self._pending.pop(inv_id, None)
            self._idle.notify_all()

    # -- records and logs --------------------------------------------------------------

    def _record(self, inv: Attempt) -> dict[str, Any]:
        plan, spec = inv.plan, inv.speculative
        assert plan is not None
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
            # The mean prediction of its run, without the tail margin and the waits
            # that planning adds to `predicted_s`: what prediction fidelity compares.
            "predicted_run_s": plan.run_s + getattr(inv, "startup_s", 0.0),
            "predicted_cost_usd": plan.cost_usd,
            "predicted_miss": plan.predicted_miss,
            "accuracy": plan.accuracy,
            "observed_s": inv.observed_s,
            "cost_usd": inv.cost_usd,
            "started_s": _since(inv.started_s, self.started_s),
            "finished_s": _since(inv.finished_s, self.started_s),
        }

    def elapsed_s(self) -> float:
        """Seconds since the runner started (the run's latency so far)."""
        return self._clock.now() - self.started_s

    def records(self) -> list[dict[str, Any]]:
        """The plan records of every finished invocation so far, in finishing order."""
        with self._lock:
            return list(self._records)

    def _log_decision(self, inv: Attempt, pending: _Pending) -> None:
        plan = inv.plan
        assert plan is not None
        knobs = "".join(f" {k}={v}" for k, v in plan.config.knobs)
        miss = " (predicted miss)" if plan.predicted_miss else ""
        line = (
            f"{inv.op}: target {plan.target_s:.2f} s of {plan.time_left_s:.1f} s left "
            f"-> {plan.config.backend}{knobs}, predicted {plan.predicted_s:.2f} s, "
            f"${plan.cost_usd:.7f}{miss}"
        )
        (pending.run_logger or logger).info(line)


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
    accepted = inspect.signature(task.fn).parameters
    return {k: v for k, v in knobs.items() if k in accepted}


def _injecting(task: Any, kind: str, straggler_factor: float) -> Any:
    """A copy of `task` whose body makes the scheduler's injected fault happen once.

    ``failure``: the first try raises a `TransientError` before the body runs, so the
    task's own retries (see `llama_prefect.retries`) try again. ``straggler``: the
    first try sleeps after the body until it has taken `straggler_factor` times its
    own time. Later tries run the body as it is.
    """
    body = task.fn
    fired = threading.Event()

    def injected(**kwargs: Any) -> Any:
        first = not fired.is_set()
        fired.set()
        if first and kind == "failure":
            raise TransientError(
                f"injected failure of a {task.name} try (inject_failure_rate); the "
                "task's retries try again"
            )
        start_s = time.monotonic()
        result = body(**kwargs)
        if first and kind == "straggler":
            time.sleep(max(0.0, straggler_factor - 1) * (time.monotonic() - start_s))
        return result

    return proxy_task(task, injected)


def _failure(error: BaseException | None) -> dict[str, Any]:
    """Record fields of a failed invocation: its error's kind and whether it repeats."""
    if error is None:
        return {"error_type": None, "deterministic": False}
    return {
        "error": f"{type(error).__name__}: {error}",
        "error_type": type(error).__name__,
        "deterministic": is_deterministic(error),
    }


def _remote_fields(attempt: Attempt, body: ReplanningBody) -> dict[str, Any]:
    """Plan-record fields of an invocation that ran through a proxy body.

    A remote backend's billed cost replaces the scheduler's estimate from the price
    file, and what refused attempts were billed (a timed-out function) is added.
    """
    if body.cost_usd is not None:
        attempt.cost_usd = body.cost_usd
    failed_usd = body.failed_cost_usd()
    if attempt.cost_usd is not None:
        attempt.cost_usd += failed_usd
        attempt.invocation.cost_usd = attempt.cost_usd
    return {
        "cost_usd": attempt.cost_usd,
        "backend_details": body.details,
        "replans": [
            {"backend": a.backend, "error": a.error, "cost_usd": a.cost_usd}
            for a in body.attempts
        ],
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
