"""The event loop: one policy over one archive, on simulated time.

The simulator plays the caller of `core.scheduler.Scheduler` exactly as the runner
does: it creates invocations as their inputs appear (a video's split when the video
arrives, its segments' motion invocations when the split ends, people where motion
fired, faces where people were seen, the aggregate when every segment is done),
marks them ready, commits what the scheduler commits, runs every call on a
simulated backend for its true latency, makes injected failures fail and injected
stragglers straggle, stops cancelled attempts, and reports each end with `finish`.
The clock only moves from event to event.

A video meets its SLO when its aggregate ends within the SLO of its arrival and none
of its invocations failed for good.
"""

from __future__ import annotations

import gc
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pricing import MEMORY_KNOB, PriceCatalog
from llama_prefect.core.scheduler import (
    Attempt,
    BackendSlots,
    Call,
    Scheduler,
    Settings,
    State,
)
from llama_prefect.sim.backends import FixedPoolModel, GpuPoolModel, LambdaModel
from llama_prefect.sim.workload import GPU, LAMBDA, VM, Video, Workload

INF = float("inf")
_ARRIVE, _END, _WAKE, _STOP, _READY = 0, 1, 2, 3, 4
#: An attempt marked to fail fails this far into its run (ours).
FAIL_AT = 0.5
#: Simulated seconds between two looks at how many GPU tasks the scheduler wants
#: up (ours: short against a task's start-up).
WARM_EVERY_S = 1.0


@dataclass
class RunSpec:
    """What one simulated run is: backends, their sizes and the scheduler settings.

    Attributes:
        name: A label for reports.
        backends: The backends the run has (``lambda``, ``ecs-gpu``, ``vm-cpu``).
        settings: Keyword arguments of `Settings` (the deadline is set per video).
        published: Start from `Settings.published` (the method as published).
        gpu_slots: GPU tasks of the pool.
        gpu_always_on: Keep the GPU pool up for the whole run.
        vm_slots: vCPUs of the fixed CPU pool.
        slo_s: Every video's SLO.
    """

    name: str
    backends: tuple[str, ...]
    settings: dict[str, Any]
    slo_s: float
    published: bool = False
    gpu_slots: int = 4
    gpu_always_on: bool = False
    vm_slots: int = 64


@dataclass
class VideoOutcome:
    """How one video went."""

    index: int
    arrival_s: float
    end_s: float | None = None
    failed: bool = False
    cost_usd: float = 0.0

    @property
    def latency_s(self) -> float:
        """Seconds from arrival to the end of its aggregate (inf: never ended)."""
        return INF if self.end_s is None else self.end_s - self.arrival_s


@dataclass
class RunResult:
    """What one simulated run measured.

    Attributes:
        name: The run's label.
        slo_s: The SLO of every video.
        videos: One outcome per video.
        billed_usd: What each backend billed (idle GPU time and the fixed pool's
            whole run included).
        invocations: Invocations created.
        attempts: Attempts started (duplicates and retries included).
        duplicates: Duplicates started.
        retries: Retries started.
        calls: Calls started (a batched call counts once).
        sim_s: Simulated seconds from the first arrival to the last end.
        wall_s: Seconds the run took on this machine.
        cpu_s: CPU seconds the run took.
    """

    name: str
    slo_s: float
    videos: list[VideoOutcome]
    billed_usd: dict[str, float]
    invocations: int = 0
    attempts: int = 0
    duplicates: int = 0
    retries: int = 0
    calls: int = 0
    sim_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        """The run's whole bill."""
        return sum(self.billed_usd.values())

    def met(self, slo_s: float | None = None) -> list[bool]:
        """Per video, whether it met `slo_s` (default: the run's SLO)."""
        limit = self.slo_s if slo_s is None else slo_s
        return [not v.failed and v.latency_s <= limit + 1e-9 for v in self.videos]


@dataclass(eq=False)
class _Progress:
    video: Video
    outcome: VideoOutcome
    outstanding: int = 0
    split_done: bool = False
    aggregated: bool = False


@dataclass(eq=False)
class _Running:
    call: Call
    backend: str
    started_s: float
    startup_s: float = 0.0
    end_s: float = 0.0
    slot: int = -1
    memory_mb: float = 0.0


class Simulation:
    """Runs one `RunSpec` over one archive of a `Workload`.

    Args:
        workload: Pipeline, profiles and truth.
        videos: The archive.
        spec: Backends and settings of the run.
        drift: True latencies against the profiles.
        prices: The price catalog (default: the shipped file).
        objective: Overrides the objective of `spec.settings` (a static plan's
            callable, which a spec cannot hold as plain data).
        forget: Let the scheduler forget each video once it ended (keeps memory
            flat over long archives); False keeps every invocation for inspection.
    """

    def __init__(
        self,
        workload: Workload,
        videos: Sequence[Video],
        spec: RunSpec,
        *,
        drift: float = 1.0,
        prices: PriceCatalog | None = None,
        objective: Callable[..., Any] | None = None,
        forget: bool = True,
    ) -> None:
        self.workload, self.videos, self.spec = workload, videos, spec
        self.drift, self.forget = drift, forget
        self.prices = prices or PriceCatalog.load()
        self.clock = SimClock()
        a = workload.assumptions
        self.lam = LambdaModel(self.prices, a.lambda_cold_start_s, a.lambda_keep_warm_s)
        self.gpu = GpuPoolModel(
            self.prices,
            spec.gpu_slots,
            a.gpu_start_s,
            a.gpu_idle_stop_s,
            always_on=spec.gpu_always_on,
        )
        self.vm = FixedPoolModel(self.prices, spec.vm_slots)
        self.scheduler = self._scheduler(objective)
        self._has_lambda = LAMBDA in self.scheduler.backends
        self._has_gpu = GPU in self.scheduler.backends
        self._warmup = (
            self._has_gpu and not spec.gpu_always_on and self.scheduler.warms_pools
        )
        self._next_warm_s = 0.0
        self._memory_mb: dict[str, float] = {}
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._progress: dict[str, _Progress] = {}
        self._running: dict[int, _Running] = {}
        self._next_wake = INF
        self._counts = {"invocations": 0, "calls": 0}
        self._lost: set[str] = set()
        self._ended: list[_Progress] = []
        self._attempts = {"attempts": 0, "duplicate": 0, "retry": 0}

    def _scheduler(self, objective: Callable[..., Any] | None) -> Scheduler:
        a, spec = self.workload.assumptions, self.spec
        slots = {
            LAMBDA: BackendSlots(LAMBDA, a.lambda_concurrency, per_invocation=True),
            GPU: BackendSlots(GPU, spec.gpu_slots),
            VM: BackendSlots(VM, spec.vm_slots),
        }
        backends = {n: slots[n] for n in spec.backends}
        values = {"target_scope": "group", **spec.settings}
        if objective is not None:
            values["objective"] = objective
        if spec.published:
            settings = Settings.published(INF, **values)
        else:
            settings = Settings(INF, **values)
        return Scheduler(
            self.workload.pipeline,
            self.workload.fresh_profiles(),
            self.prices,
            backends,
            settings,
            clock=self.clock,
        )

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> RunResult:
        """Simulates the whole archive; returns what it measured.

        The cycle collector is off while the loop runs: the loop makes millions of
        short-lived objects, the scheduler cuts the cycles among those of a video
        when it forgets the video, and the collector would only walk the live ones
        again and again (about a tenth of the run's time). It is on again after.
        """
        wall0, cpu0 = time.perf_counter(), time.process_time()
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._loop()
        finally:
            if collecting:
                gc.enable()
        return self._result(time.perf_counter() - wall0, time.process_time() - cpu0)

    def _loop(self) -> None:
        for video in self.videos:
            self._push(video.arrival_s, _ARRIVE, video)
        self._update_startups()
        events, clock, pop = self._events, self.clock, heapq.heappop
        while events:
            at_s, _, kind, item = pop(events)
            clock.advance(max(0.0, at_s - clock.now()))
            if kind == _ARRIVE:
                self._arrive(item)
            elif kind == _END:
                self._end(item)
                if len(self._ended) > 200:
                    self._forget()
            elif kind == _STOP:
                self._check_stop(item)
                continue
            elif kind == _WAKE:
                if at_s != self._next_wake:
                    continue  # superseded by an earlier wake-up
                self._next_wake = INF
            elif kind == _READY:
                self._update_startups()  # a GPU task finished its start-up
            self._step()

    def _push(self, at_s: float, kind: int, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at_s, self._seq, kind, item))

    def _step(self) -> None:
        """After an event: stragglers, commits, and the next wake-up."""
        sched = self.scheduler
        now = self.clock.now()
        if sched.next_event_s() <= now:
            sched.poll()
        if sched.queued():
            self._update_startups()
            self._commit()
        if self._warmup and now >= self._next_warm_s:
            self._warm_pool(now)
        wake = sched.next_event_s()
        if wake < self._next_wake and wake < INF:
            self._next_wake = wake
            self._push(wake, _WAKE, None)

    def _check_stop(self, index: int) -> None:
        """Stops an idle GPU task, unless the scheduler wants every task up."""
        keep = self.scheduler.pool_wanted(GPU) if self._warmup else 0
        again = self.gpu.check_stop(self.clock.now(), index, keep)
        if again is not None:
            self._push(again, _STOP, index)

    def _warm_pool(self, now: float) -> None:
        """Starts GPU tasks up to what the scheduler says the pool should keep up."""
        self._next_warm_s = now + WARM_EVERY_S
        wanted = self.scheduler.pool_wanted(GPU)
        while self.gpu.up() < wanted:
            started = self.gpu.warm(now)
            if started is None:
                return
            self._push(self.gpu.tasks[started[0]].ready_s, _READY, None)
            self._push(started[1], _STOP, started[0])

    def _commit(self) -> None:
        for attempt in self.scheduler.commit_ready():
            self._attempts["attempts"] += 1
            if attempt.kind != "first":
                self._attempts[attempt.kind] = self._attempts.get(attempt.kind, 0) + 1
            if attempt.call.attempts[0] is attempt:
                self._start(attempt.call)

    def _update_startups(self) -> None:
        now, sched = self.clock.now(), self.scheduler
        if self._has_lambda:
            sched.set_startup(LAMBDA, self.lam.startup_hint_s(now))
        if self._warmup:  # calls take tasks that are up; only warm-ups start them
            sched.set_up_slots(GPU, self.gpu.ready(now))
        elif self._has_gpu:
            sched.set_startup(GPU, self.gpu.startup_hint_s(now))

    # -- videos and invocations --------------------------------------------------------

    def _arrive(self, video: Video) -> None:
        progress = _Progress(video, VideoOutcome(video.index, video.arrival_s))
        self._progress[video.name] = progress
        self.scheduler.open_group(video.name, slo_s=self.spec.slo_s)
        self._add(progress, [("split", 0)])

    def _add(self, progress: _Progress, items: list[tuple[str, int]]) -> None:
        """Creates invocations of one instant, then marks them ready."""
        video = progress.video
        sched = self.scheduler
        ids = []
        for op, segment in items:
            inv_id = f"{video.index}:{op}:{segment}"
            sched.add(inv_id, op, video.units[op], video.name, speculate=False)
            ids.append(inv_id)
            if op in ("motion", "people", "faces"):
                progress.outstanding += 1
        for inv_id in ids:
            sched.mark_ready(inv_id)
        self._counts["invocations"] += len(ids)

    def _delivered(self, attempt: Attempt) -> None:
        """An invocation's result arrived: create what it leads to."""
        inv = attempt.invocation
        progress = self._progress[inv.group]
        video = progress.video
        segment = int(inv.id.rsplit(":", 1)[1])
        op = inv.op
        if op == "split":
            progress.split_done = True
            self._add(progress, [("motion", s) for s in range(video.segments)])
        elif op == "motion" and video.moving[segment]:
            self._add(progress, [("people", segment)])
        elif op == "people" and video.faces[segment]:
            self._add(progress, [("faces", segment)])
        elif op == "aggregate":
            progress.outcome.end_s = self.clock.now()
            self._ended.append(progress)
        if op in ("motion", "people", "faces"):
            self._segment_done(progress)

    def _segment_done(self, progress: _Progress) -> None:
        progress.outstanding -= 1
        if progress.outstanding == 0 and progress.split_done:
            progress.aggregated = True
            self._add(progress, [("aggregate", 0)])

    def _failed(self, attempt: Attempt) -> None:
        """An invocation failed for good: its video fails; its segment still ends."""
        inv = attempt.invocation
        progress = self._progress[inv.group]
        progress.outcome.failed = True
        if inv.op in ("motion", "people", "faces"):
            self._segment_done(progress)
        elif inv.op == "split":
            self.scheduler.drop_group(inv.group)

    # -- calls on backends -------------------------------------------------------------

    def _start(self, call: Call) -> None:
        now = self.clock.now()
        backend = call.backend
        run = _Running(call, backend, now)
        if backend == LAMBDA:
            run.memory_mb = self._memory_of(call)
            run.startup_s = self.lam.start(now, run.memory_mb)
        elif backend == GPU:
            run.slot, run.startup_s = self.gpu.start(now)
        run_s = self._true_run_s(call)
        for attempt in call.attempts:
            if attempt.injected != "failure":
                break
        else:  # every attempt of the call is marked to fail
            run_s *= FAIL_AT
        run.end_s = now + run.startup_s + run_s
        self._running[id(call)] = run
        self._counts["calls"] += 1
        self._push(run.end_s, _END, run)

    def _memory_of(self, call: Call) -> float:
        """Memory in MB of a Lambda call's configuration."""
        config = call.option.config
        memory_mb = self._memory_mb.get(config.key)
        if memory_mb is None:
            memory_mb = float(config.as_dict().get(MEMORY_KNOB, 1769))
            self._memory_mb[config.key] = memory_mb
        return memory_mb

    def _true_run_s(self, call: Call) -> float:
        """The call's true run time: its invocations' truths, a partial batch padded."""
        key = call.option.config.key
        total = 0.0
        slow = 1.0
        factor = self.scheduler.settings.inject_straggler_factor
        for attempt in call.attempts:
            inv = attempt.invocation
            progress = self._progress[inv.group]
            segment = int(inv.id.rsplit(":", 1)[1])
            total += self.workload.true_s(
                progress.video, inv.op, key, segment, self.drift
            )
            if attempt.injected == "straggler":
                slow = factor
        batch = call.option.call_batch
        return total * max(1.0, batch / len(call.attempts)) * slow

    def _end(self, run: _Running) -> None:
        if self._running.pop(id(run.call), None) is None:
            return
        now = self.clock.now()
        if run.backend == LAMBDA:
            self.lam.end(now, run.memory_mb, now - run.started_s)
        elif run.backend == GPU:
            stop = self.gpu.end(now, run.slot)
            if stop is not None:
                self._push(stop, _STOP, run.slot)
        for attempt in list(run.call.attempts):
            self._finish(attempt)

    def _finish(self, attempt: Attempt) -> None:
        sched = self.scheduler
        if attempt.finished_s is not None:
            return
        ok = attempt.injected != "failure"
        sched.finish(attempt.id, ok=ok, error=None if ok else "injected failure")
        inv = attempt.invocation
        if attempt.won:
            self._delivered(attempt)
        elif inv.state is State.FAILED and inv.id not in self._lost:
            self._lost.add(inv.id)
            self._failed(attempt)
        for cancelled in sched.take_cancelled():
            self._stop(cancelled)

    def _stop(self, attempt: Attempt) -> None:
        """Stops a cancelled attempt: pools at once; Lambda runs on to its end."""
        run = self._running.get(id(attempt.call))
        if run is None or attempt.call.backend == LAMBDA:
            return
        if any(a.state is State.RUNNING for a in attempt.call.attempts):
            return  # others of its batch still run: the call goes on
        self._running.pop(id(attempt.call))
        if run.backend == GPU:
            stop = self.gpu.end(self.clock.now(), run.slot)
            if stop is not None:
                self._push(stop, _STOP, run.slot)
        for other in attempt.call.attempts:
            if other.finished_s is None:
                self._finish_stopped(other)

    def _finish_stopped(self, attempt: Attempt) -> None:
        self.scheduler.finish(attempt.id, ok=False, error="cancelled")
        inv = attempt.invocation
        if inv.state is State.FAILED and inv.id not in self._lost:
            self._lost.add(inv.id)
            self._failed(attempt)

    def _forget(self) -> None:
        """Collects the costs of videos that ended; the scheduler forgets them."""
        if not self.forget:
            return
        keep = []
        sched = self.scheduler
        for progress in self._ended:
            name = progress.video.name
            invs = sched.group_invocations(name)
            if not sched.forget_group(name):  # an attempt of it has not ended
                keep.append(progress)
                continue
            progress.outcome.cost_usd = sum(inv.cost_usd or 0.0 for inv in invs)
        self._ended = keep

    # -- results -----------------------------------------------------------------------

    def _result(self, wall_s: float, cpu_s: float) -> RunResult:
        now = self.clock.now()
        self.gpu.close(now)
        billed = {LAMBDA: self.lam.cost_usd}
        if GPU in self.spec.backends:
            billed[GPU] = self.gpu.cost_usd
        if VM in self.spec.backends:
            start = min((v.arrival_s for v in self.videos), default=0.0)
            self.vm.close(now - start)
            billed[VM] = self.vm.cost_usd
        self._forget()
        forgotten = {p.video.name for p in self._ended}
        for progress in self._progress.values():
            name = progress.video.name
            if progress.outcome.end_s is None or name in forgotten:
                invs = self.scheduler.group_invocations(name)
                progress.outcome.cost_usd = sum(inv.cost_usd or 0.0 for inv in invs)
        return RunResult(
            name=self.spec.name,
            slo_s=self.spec.slo_s,
            videos=[self._progress[v.name].outcome for v in self.videos],
            billed_usd=billed,
            invocations=self._counts["invocations"],
            attempts=self._attempts["attempts"],
            duplicates=self._attempts["duplicate"],
            retries=self._attempts["retry"],
            calls=self._counts["calls"],
            sim_s=now,
            wall_s=wall_s,
            cpu_s=cpu_s,
            extra={
                "lambda_cold_starts": self.lam.cold_starts,
                "gpu_task_starts": self.gpu.starts,
            },
        )
