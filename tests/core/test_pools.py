"""Tests of `llama_prefect.core.pools` and of the scheduler's pool warm-up, by hand."""

from __future__ import annotations

import pytest

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pools import PoolDemand
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import BackendSlots, Scheduler, Settings

CPU, GPU = "local-cpu", "local-gpu"
SPLIT = Configuration(CPU)
DETECT_CPU = Configuration(CPU)
DETECT_GPU = Configuration(GPU)
MERGE = Configuration(CPU)


class TestPoolDemand:
    def test_wanted_tasks_run_the_windows_rate_at_the_utilisation(self):
        demand = PoolDemand(window_s=10.0, utilisation=0.8)
        assert demand.wanted(GPU, 0.0, capacity=4) == 0
        for t in range(10):
            demand.add(GPU, float(t), 1.6)  # 16 slot-s in 10 s: 1.6 per second
        assert demand.rate(GPU, 9.0) == pytest.approx(1.6)
        assert demand.wanted(GPU, 9.0, capacity=4) == 2  # 1.6 / 0.8
        assert demand.wanted(GPU, 9.0, capacity=1) == 1  # capped

    def test_a_task_is_wanted_only_for_work_that_fills_most_of_it(self):
        demand = PoolDemand(window_s=10.0, utilisation=0.8)
        demand.add(GPU, 0.0, 7.0)  # 0.7 per second: a task would idle 30%
        assert demand.wanted(GPU, 1.0, capacity=4) == 0
        demand.add(GPU, 1.0, 1.0)
        assert demand.wanted(GPU, 1.0, capacity=4) == 1

    def test_old_work_leaves_the_window(self):
        demand = PoolDemand(window_s=10.0, utilisation=0.8)
        demand.add(GPU, 0.0, 20.0)
        demand.add(GPU, 5.0, 10.0)
        assert demand.wanted(GPU, 9.0, capacity=8) == 3  # 3.0 per second
        assert demand.rate(GPU, 12.0) == pytest.approx(1.0)  # the first left
        assert demand.rate(GPU, 16.0) == 0.0
        assert demand.wanted(GPU, 16.0, capacity=8) == 0


def _pipeline() -> Pipeline:
    p = Pipeline("video")
    p.add_op(OpSpec("split", unit="video"))
    p.add_op(OpSpec("detect", backends=(CPU, GPU)))
    p.add_op(OpSpec("merge", unit="video", gather=True))
    p.add_edge("split", "detect", fanout=4)
    p.add_edge("detect", "merge")
    return p


def _scheduler(gpu_s: float, *, clock: SimClock, **switches) -> Scheduler:
    """detect: 2 s on a CPU slot, `gpu_s` on a GPU pool that takes 40 s to start."""
    store = ProfileStore("video")
    store.seed("split", SPLIT, 0.5)
    store.seed("detect", DETECT_CPU, 2.0)
    store.seed("detect", DETECT_GPU, gpu_s)
    store.seed("merge", MERGE, 0.1)
    backends = {
        CPU: BackendSlots(CPU, 100),
        GPU: BackendSlots(GPU, 2, startup_s=40.0),
    }
    switches.setdefault("fanout_quantile", False)
    switches.setdefault("target_scope", "group")
    return Scheduler(
        _pipeline(),
        store,
        PriceCatalog.load(),
        backends,
        Settings(deadline_s=1e6, **switches),
        clock=clock,
    )


def _run_videos(sched: Scheduler, clock: SimClock, n: int) -> set[str]:
    """Runs `n` videos 2 s apart, each of eight detects with a 15 s SLO (the cold
    pool's 40 s start-up misses it, the CPU's 2 s fits); the backends used."""
    used = set()
    for k in range(n):
        sched.open_group(f"v{k}", slo_s=15.0)
        ids = [f"d{k}.{i}" for i in range(8)]
        for inv_id in ids:
            sched.add(inv_id, "detect", 1.0, f"v{k}")
            sched.mark_ready(inv_id)
        attempts = sched.commit_ready()
        assert len(attempts) == 8
        used |= {a.call.backend for a in attempts}
        clock.advance(2.0)  # the CPU runs as profiled
        for attempt in attempts:
            sched.finish(attempt.id, ok=True)
    return used


class TestWarmup:
    # The GPU's local price per second is about 5x the CPU's; 2 s on the CPU
    # costs as much as 0.4 s on the GPU.

    def test_a_cold_pool_that_would_be_cheaper_is_asked_for(self):
        # 0.35 s on the GPU is cheaper than 2 s on the CPU, but the cold pool's
        # start-up keeps every detect on the CPU. Every fourth commit plans again
        # with the pool warm: it takes the GPU, 0.35 slot-s standing for each
        # commit. Eight detects every 2 s ask 1.4 slot-s a second: one task
        # busy 0.8 of its time, and some.
        clock = SimClock()
        sched = _scheduler(0.35, clock=clock)
        assert _run_videos(sched, clock, 20) == {CPU}
        assert sched._demand.rate(GPU, clock.now()) == pytest.approx(1.4, rel=0.05)
        assert sched.pool_wanted(GPU) == 1

    def test_no_task_for_work_that_would_leave_it_idle_most_of_the_time(self):
        clock = SimClock()
        sched = _scheduler(0.1, clock=clock)  # 0.4 slot-s a second
        _run_videos(sched, clock, 20)
        assert sched._demand.rate(GPU, clock.now()) == pytest.approx(0.4, rel=0.05)
        assert sched.pool_wanted(GPU) == 0

    def test_a_pool_dearer_than_what_fits_is_not_asked_for(self):
        clock = SimClock()
        sched = _scheduler(1.0, clock=clock)  # 1 s on the GPU: dearer than 2 s CPU
        _run_videos(sched, clock, 20)
        assert sched._demand.rate(GPU, clock.now()) == 0.0

    def test_the_published_method_asks_for_nothing(self):
        clock = SimClock()
        sched = _scheduler(0.35, clock=clock, pool_warmup=False)
        _run_videos(sched, clock, 20)
        assert sched.pool_wanted(GPU) == 0
        assert Settings.published(10.0).pool_warmup is False

    def test_a_pool_with_nothing_up_takes_no_call(self):
        # Scaled by its caller to no task up, the warm pool (0.35 s, cheaper)
        # is not planned on at all; with one task up it is.
        clock = SimClock()
        sched = _scheduler(0.35, clock=clock)
        sched.set_startup(GPU, 0.0)
        sched.set_up_slots(GPU, 0)
        for k, slots in enumerate((0, 1)):
            sched.set_up_slots(GPU, slots)
            sched.open_group(f"v{k}", slo_s=15.0)
            sched.add(f"d{k}", "detect", 1.0, f"v{k}")
            sched.mark_ready(f"d{k}")
            (attempt,) = sched.commit_ready()
            assert attempt.call.backend == (GPU if slots else CPU)

    def test_only_the_cost_objective_asks_for_tasks(self):
        # Llama-fast, Llama-cheap and fixed plans do not weigh a warm pool against
        # a target and a cost: their caller lets calls start tasks as they come.
        for objective in ("latency", "cheapest"):
            clock = SimClock()
            sched = _scheduler(0.35, clock=clock, objective=objective)
            assert not sched.warms_pools
            for k in range(8):
                sched.add(f"d{k}", "detect", 1.0, "v1")
                sched.mark_ready(f"d{k}")
                sched.commit_ready()
            assert sched.pool_wanted(GPU) == 0
        assert _scheduler(0.35, clock=SimClock()).warms_pools
