"""Tests of `llama_prefect.core.scheduler` on simulated time.

The pipeline is ``split -(fanout 4)-> detect -> merge`` with `merge` a gather op. The
`detect` op has a slow, cheap CPU configuration (2 s per unit) and a fast, pricier GPU
configuration (0.5 s per unit); with the shipped prices the GPU one costs more per
invocation, which the tests check before they rely on it.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import BackendSlots, Scheduler, Settings, State
from llama_prefect.errors import ConfigurationError

CPU, GPU = "local-cpu", "local-gpu"
SPLIT = Configuration(CPU)
MERGE = Configuration(CPU)
DETECT_CPU = Configuration.of(CPU, {"threads": 1})
DETECT_CPU2 = Configuration.of(CPU, {"threads": 2})
DETECT_GPU = Configuration.of(GPU, {"threads": 1})

SPLIT_S, DETECT_CPU_S, DETECT_CPU2_S, DETECT_GPU_S, MERGE_S = 0.5, 2.0, 1.2, 0.5, 0.1


def _pipeline(detect_backends: tuple[str, ...] = (CPU, GPU)) -> Pipeline:
    p = Pipeline("video")
    p.add_op(OpSpec("split", unit="video"))
    p.add_op(OpSpec("detect", knobs={"threads": (1, 2)}, backends=detect_backends))
    p.add_op(OpSpec("merge", unit="video", gather=True))
    p.add_edge("split", "detect", fanout=4)
    p.add_edge("detect", "merge")
    return p


def _store(*, two_threads: bool = False) -> ProfileStore:
    store = ProfileStore("video")
    store.seed("split", SPLIT, SPLIT_S)
    store.seed("detect", DETECT_CPU, DETECT_CPU_S)
    store.seed("detect", DETECT_GPU, DETECT_GPU_S)
    if two_threads:
        store.seed("detect", DETECT_CPU2, DETECT_CPU2_S)
    store.seed("merge", MERGE, MERGE_S)
    return store


def _prices() -> dict:
    text = resources.files("llama_prefect.data").joinpath("prices.json")
    return json.loads(text.read_text(encoding="utf-8"))["backends"]


def _scheduler(
    *,
    deadline_s: float = 100.0,
    cpu: int = 4,
    gpu: int = 1,
    gpu_startup_s: float = 0.0,
    store: ProfileStore | None = None,
    pipeline: Pipeline | None = None,
    clock: SimClock | None = None,
    **switches,
) -> Scheduler:
    backends = {CPU: BackendSlots(CPU, cpu)}
    if gpu:
        backends[GPU] = BackendSlots(GPU, gpu, startup_s=gpu_startup_s)
    # Hand-computed targets below use mean latencies and shares of the time left
    # in proportion to each stage's fastest seconds (the robust basis); tests of
    # the tail margin and of the priced basis switch them on themselves.
    switches.setdefault("fanout_quantile", False)
    switches.setdefault("weight_basis", "robust")
    return Scheduler(
        pipeline or _pipeline(),
        store or _store(),
        PriceCatalog.load(),
        backends,
        Settings(deadline_s=deadline_s, **switches),
        clock=clock or SimClock(),
    )


def _run(sched: Scheduler, inv_id: str, op: str, group: str, clock: SimClock, s: float):
    """Adds, readies, commits and finishes one invocation that takes `s` seconds."""
    sched.add(inv_id, op, 1.0, group)
    sched.mark_ready(inv_id)
    assert [i.id for i in sched.commit_ready()] == [inv_id]
    clock.advance(s)
    return sched.finish(inv_id, ok=True)


def test_gpu_detect_is_faster_but_costs_more_with_shipped_prices():
    prices = _prices()
    cpu_usd = DETECT_CPU_S * prices[CPU]["usd_per_slot_s"]
    gpu_usd = DETECT_GPU_S * prices[GPU]["usd_per_slot_s"]
    assert DETECT_GPU_S < DETECT_CPU_S
    assert gpu_usd > cpu_usd


class TestLifecycle:
    def test_add_plans_speculatively_and_waits(self):
        sched = _scheduler()
        inv = sched.add("d1", "detect", 1.0, "v1")
        assert inv.state is State.WAITING
        assert inv.speculative is not None
        assert inv.plan is None
        assert sched.commit_ready() == []  # not ready yet

    def test_ready_invocation_is_committed_and_finished(self):
        clock = SimClock()
        sched = _scheduler(clock=clock)
        sched.add("d1", "detect", 1.0, "v1")
        sched.mark_ready("d1")
        (inv,) = sched.commit_ready()
        assert inv.state is State.RUNNING
        assert inv.started_s == 0.0
        assert sched.used_slots()[inv.plan.config.backend] == 1

        clock.advance(1.5)
        sched.finish("d1", ok=True)
        assert inv.state is State.DONE
        assert inv.finished_s == 1.5
        assert sched.used_slots() == {CPU: 0, GPU: 0}

    def test_failed_invocation_frees_its_slots(self):
        sched = _scheduler()
        sched.add("d1", "detect", 1.0, "v1")
        sched.mark_ready("d1")
        sched.commit_ready()
        inv = sched.finish("d1", ok=False, error="boom")
        assert inv.state is State.FAILED
        assert inv.error == "boom"
        assert sched.used_slots() == {CPU: 0, GPU: 0}

    def test_unknown_op_names_known_ops(self):
        with pytest.raises(ConfigurationError, match="detect.*merge.*split"):
            _scheduler().add("x", "nope", 1.0, "v1")

    def test_bad_weight_basis_is_rejected(self):
        with pytest.raises(ConfigurationError, match="weight_basis"):
            _scheduler(weight_basis="slowest")

    def test_cancel_ends_a_waiting_invocation(self):
        sched = _scheduler()
        sched.add("d1", "detect", 1.0, "v1")
        inv = sched.cancel("d1", "upstream failed")
        assert inv.state is State.FAILED
        sched.mark_ready("d1")
        assert sched.commit_ready() == []


class TestCapacity:
    def test_commit_stops_at_capacity(self):
        # With the deadline passed every invocation clears the op's work soonest:
        # 2 CPU slots and 1 GPU slot, one slot per invocation, three committed.
        clock = SimClock()
        sched = _scheduler(cpu=2, gpu=1, deadline_s=1.0, clock=clock)
        for k in range(5):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        clock.advance(2.0)
        committed = sched.commit_ready()
        assert len(committed) == 3
        assert sched.used_slots() == {CPU: 2, GPU: 1}
        assert sched.commit_ready() == []
        assert sched.queued() == 2

    def test_two_slot_configs_take_two_slots(self):
        # 3 CPU slots; "latency" picks the 2-thread config (1.2 s) while 2 are free,
        # then the 1-thread config (2 s) for the last free slot.
        sched = _scheduler(
            cpu=3, gpu=0, store=_store(two_threads=True), objective="latency"
        )
        for k in range(3):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        committed = sched.commit_ready()
        assert [i.plan.config for i in committed] == [DETECT_CPU2, DETECT_CPU]
        assert sched.used_slots() == {CPU: 3}

        sched.finish(committed[0].id, ok=True)  # frees 2 slots
        (third,) = sched.commit_ready()
        assert third.plan.config == DETECT_CPU2
        assert sched.used_slots() == {CPU: 3}

    def test_config_wider_than_free_slots_waits(self):
        store = ProfileStore("video")
        store.seed("detect", DETECT_CPU2, 1.0)
        sched = _scheduler(cpu=3, gpu=0, store=store)
        for k in range(2):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        assert len(sched.commit_ready()) == 1
        assert sched.used_slots() == {CPU: 2}  # the second needs 2, only 1 is free
        assert sched.invocations["d1"].state is State.READY

    def test_deeper_ops_commit_first(self):
        clock = SimClock()
        sched = _scheduler(cpu=1, gpu=0, clock=clock)
        sched.add("s1", "split", 1.0, "v1")
        clock.advance(1.0)
        sched.add("d1", "detect", 1.0, "v2")  # created later, but one level deeper
        sched.mark_ready("s1")
        sched.mark_ready("d1")
        assert [i.id for i in sched.commit_ready()] == ["d1"]
        sched.finish("d1", ok=True)
        assert [i.id for i in sched.commit_ready()] == ["s1"]

    def test_same_depth_oldest_first(self):
        clock = SimClock()
        sched = _scheduler(cpu=1, gpu=0, clock=clock)
        sched.add("late", "detect", 1.0, "v1")
        clock.advance(1.0)
        sched.add("later", "detect", 1.0, "v1")
        sched.mark_ready("later")
        sched.mark_ready("late")
        assert [i.id for i in sched.commit_ready()] == ["late"]

    def test_backend_the_op_cannot_use_does_not_stop_commit(self):
        # The store still holds a GPU profile, but detect now runs on CPU only. With
        # the CPU full and the GPU free, the second invocation must simply wait.
        sched = _scheduler(cpu=1, gpu=1, pipeline=_pipeline(detect_backends=(CPU,)))
        for k in range(2):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        (first,) = sched.commit_ready()
        assert first.plan.config == DETECT_CPU
        assert sched.invocations["d1"].state is State.READY

    def test_work_estimate_uses_only_backends_the_op_can_use(self):
        # detect cannot run on the GPU, so its work ahead is weighed at CPU speed.
        sched = _scheduler(pipeline=_pipeline(detect_backends=(CPU,)))
        sched.add("s1", "split", 1.0, "v1")
        stage = sched.stage_estimates()["detect"]
        assert stage.invocation_s == pytest.approx(DETECT_CPU_S)
        assert stage.parallelism == 4.0


class TestTargetsAndLateCommit:
    # Stage estimates while v1's split is unfinished (expected counts 1, 4, 1),
    # each op weighed at the configuration that clears its work soonest; for detect
    # CPU (4 x 2.0 / 4 slots) and GPU (4 x 0.5 / 1 slot) tie at 2.0 s and the faster
    # invocation, GPU, wins the tie:
    #   split:  1 x 0.5 / min(4 slots, 1)  = 0.5 s
    #   detect: 4 x 0.5 (GPU) / 1 GPU slot  = 2.0 s
    #   merge:  1 x 0.1 / min(4 slots, 1)  = 0.1 s
    # A detect invocation weighs its fastest candidate, 0.5 s, against the work on
    # its only path, detect 2.0 + merge 0.1 = 2.1 s: target = R x 0.5 / 2.1.
    SHARE = 0.5 / 2.1

    def test_speculative_target_by_hand(self):
        sched = _scheduler(deadline_s=100.0)
        sched.add("s1", "split", 1.0, "v1")
        inv = sched.add("d1", "detect", 1.0, "v1")
        assert inv.speculative.target_s == pytest.approx(100.0 * self.SHARE)
        assert inv.speculative.path == ("detect", "merge")
        assert inv.speculative.time_left_s == 100.0
        # 23.8 s leaves room for the cheap CPU configuration (2 s)
        assert inv.speculative.config == DETECT_CPU
        assert not inv.speculative.predicted_miss

    def test_source_target_by_hand(self):
        sched = _scheduler(deadline_s=100.0)
        inv = sched.add("s1", "split", 1.0, "v1")
        # split's path is split 0.5 + detect 2.0 + merge 0.1 = 2.6 s; own 0.5 s
        assert inv.speculative.target_s == pytest.approx(100.0 * 0.5 / 2.6)

    def test_targets_differ_with_time_left(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=100.0, clock=clock)
        sched.add("s1", "split", 1.0, "v1")
        first = sched.add("d1", "detect", 1.0, "v1")
        clock.advance(40.0)
        second = sched.add("d2", "detect", 1.0, "v1")
        # the same work ahead, 100 s then 60 s left
        assert first.speculative.target_s == pytest.approx(100.0 * self.SHARE)
        assert second.speculative.target_s == pytest.approx(60.0 * self.SHARE)

    def test_late_commit_replans_with_less_time(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=100.0, clock=clock)
        sched.add("s1", "split", 1.0, "v1")
        inv = sched.add("d1", "detect", 1.0, "v1")
        assert inv.speculative.config == DETECT_CPU

        clock.advance(95.0)
        sched.mark_ready("d1")
        sched.commit_ready()
        # 5 s left: target 5 x 0.5 / 2.1 = 1.19 s; CPU (2 s) misses, GPU (0.5 s) fits
        assert inv.plan.target_s == pytest.approx(5.0 * self.SHARE)
        assert inv.plan.config == DETECT_GPU
        assert inv.plan.cost_usd > inv.speculative.cost_usd
        assert not inv.plan.predicted_miss

    def test_without_late_commit_the_speculative_plan_is_kept(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=100.0, clock=clock, late_commit=False)
        sched.add("s1", "split", 1.0, "v1")
        inv = sched.add("d1", "detect", 1.0, "v1")
        clock.advance(95.0)
        sched.mark_ready("d1")
        sched.commit_ready()
        assert inv.plan == inv.speculative
        assert inv.plan.config == DETECT_CPU

    def test_deadline_passed_takes_the_fastest_and_predicts_a_miss(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=10.0, clock=clock)
        clock.advance(12.0)
        inv = sched.add("d1", "detect", 1.0, "v1")
        assert inv.speculative.target_s == 0.0
        assert inv.speculative.time_left_s == -2.0
        assert inv.speculative.config == DETECT_GPU
        assert inv.speculative.predicted_miss


class TestFinishAndFeedback:
    @staticmethod
    def _run_on_gpu(clock: SimClock, **switches) -> Scheduler:
        sched = _scheduler(deadline_s=100.0, clock=clock, **switches)
        sched.add("d1", "detect", 1.0, "v1")
        # 1.5 s left; the lone detect weighs its fastest configuration (0.5 s) against
        # the merge ahead (0.1 s): target 1.5 x 0.5 / 0.6 = 1.25 s, which only the
        # GPU (0.5 s) meets, so late commit picks it over the cheaper CPU (2 s).
        clock.advance(98.5)
        sched.mark_ready("d1")
        sched.commit_ready()
        assert sched.invocations["d1"].plan.config == DETECT_GPU
        clock.advance(0.7)
        sched.finish("d1", ok=True)
        return sched

    def test_finish_measures_latency_and_cost_from_clock_and_prices(self):
        sched = self._run_on_gpu(SimClock())
        inv = sched.invocations["d1"]
        gpu = _prices()[GPU]
        assert inv.started_s == 98.5
        assert inv.observed_s == pytest.approx(0.7)  # 99.2 - 98.5
        # 0.7 s x 1 slot x price per slot second + fee
        expected = 0.7 * 1 * gpu["usd_per_slot_s"] + gpu.get("usd_per_invocation", 0.0)
        assert inv.cost_usd == pytest.approx(expected)

    def test_feedback_corrects_the_profile(self):
        sched = self._run_on_gpu(SimClock())
        # 0.7 s per unit against 0.5: ratio 1.4; in logs the drift takes 0.3 of it
        # and the residual 0.3 x 0.25 x 0.7 = 0.0525:
        # prediction 0.5 x 1.4 ** 0.3525 = 0.5630
        assert sched.store.predict_s_per_unit("detect", DETECT_GPU) == pytest.approx(
            0.5630, abs=1e-4
        )
        assert sched.store.profile("detect", DETECT_GPU).observations == 1

    def test_no_feedback_leaves_the_profile(self):
        sched = self._run_on_gpu(SimClock(), feedback=False)
        assert sched.store.predict_s_per_unit("detect", DETECT_GPU) == DETECT_GPU_S
        assert sched.store.profile("detect", DETECT_GPU).observations == 0

    def test_failed_invocation_teaches_nothing(self):
        sched = _scheduler()
        sched.add("d1", "detect", 1.0, "v1")
        sched.mark_ready("d1")
        (inv,) = sched.commit_ready()
        sched.finish("d1", ok=False, error="boom")
        assert sched.store.profile("detect", inv.plan.config).observations == 0

    def test_start_up_delay_is_not_learned_as_work(self):
        # GPU start-up 0.3 s, run exactly as profiled (0.5 s): the wall time from
        # commit to finish is 0.8 s, but the per-unit profile must stay at 0.5 s,
        # or the start-up would be counted twice in the next prediction.
        clock = SimClock()
        sched = _scheduler(
            deadline_s=100.0, clock=clock, gpu_startup_s=0.3, objective="latency"
        )
        sched.add("d1", "detect", 1.0, "v1")
        sched.mark_ready("d1")
        (inv,) = sched.commit_ready()
        assert inv.plan.config == DETECT_GPU
        assert inv.plan.predicted_s == pytest.approx(0.8)  # 0.5 run + 0.3 start-up
        clock.advance(0.8)
        sched.finish("d1", ok=True)
        assert inv.observed_s == pytest.approx(0.8)
        assert sched.store.predict_s_per_unit("detect", DETECT_GPU) == pytest.approx(
            0.5
        )


class TestGroups:
    def test_group_close_learns_edge_rates(self):
        clock = SimClock()
        sched = _scheduler(clock=clock)
        _run(sched, "s1", "split", "v1", clock, 0.5)
        for k in range(3):
            _run(sched, f"d{k}", "detect", "v1", clock, 2.0)
        assert sched.store.edge_rates == {}  # nothing learned before the gather ends
        _run(sched, "m1", "merge", "v1", clock, 0.1)
        # 3 detects from 1 split; the edge into the gather op is not a rate
        assert sched.store.edge_rates == {("split", "detect"): 3.0}

        _run(sched, "s2", "split", "v2", clock, 0.5)
        for k in range(5):
            _run(sched, f"e{k}", "detect", "v2", clock, 2.0)
        _run(sched, "m2", "merge", "v2", clock, 0.1)
        # EWMA: 0.7 x 3 + 0.3 x 5 = 3.6
        assert sched.store.edge_rates[("split", "detect")] == pytest.approx(3.6)

    def test_no_feedback_learns_no_edge_rates(self):
        clock = SimClock()
        sched = _scheduler(clock=clock, feedback=False)
        _run(sched, "s1", "split", "v1", clock, 0.5)
        _run(sched, "d1", "detect", "v1", clock, 2.0)
        _run(sched, "m1", "merge", "v1", clock, 0.1)
        assert sched.store.edge_rates == {}

    def test_remaining_invocations_by_hand(self):
        clock = SimClock()
        sched = _scheduler(clock=clock)
        assert sched.remaining_invocations() == {"split": 0, "detect": 0, "merge": 0}

        sched.add("s1", "split", 1.0, "v1")
        # v1's split is unfinished: one source's worth, 1 split, 1 x 4 detect, 1 merge
        assert sched.remaining_invocations() == {"split": 1, "detect": 4, "merge": 1}
        sched.add("s2", "split", 1.0, "v2")
        assert sched.remaining_invocations() == {"split": 2, "detect": 8, "merge": 2}

        sched.mark_ready("s1")
        sched.commit_ready()
        sched.finish("s1", ok=True)
        for k in range(3):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        sched.commit_ready()
        sched.finish("d0", ok=True)
        # v1: split done (0), 2 detects unfinished, merge not created yet (1)
        # v2: 1, 4, 1 as before
        assert sched.remaining_invocations() == {
            "split": 0 + 1,
            "detect": 2 + 4,
            "merge": 1 + 1,
        }

        sched.add("m1", "merge", 1.0, "v1")
        sched.finish("d1", ok=True)
        sched.finish("d2", ok=True)
        # v1: no detect left, merge created and unfinished (1)
        assert sched.remaining_invocations() == {"split": 1, "detect": 4, "merge": 2}

        sched.mark_ready("m1")
        sched.commit_ready()
        sched.finish("m1", ok=True)
        # v1 is closed and taught split->detect = 3/1; v2 now expects 1 x 3 detects
        assert sched.remaining_invocations() == {"split": 1, "detect": 3, "merge": 1}

    def test_remaining_counts_what_unfinished_inner_ops_will_create(self):
        # split -(4)-> seg -(2)-> det -> merge (gather); counts 1, 4, 8, 1
        p = Pipeline("deep")
        p.add_op(OpSpec("split"))
        p.add_op(OpSpec("seg"))
        p.add_op(OpSpec("det"))
        p.add_op(OpSpec("merge", gather=True))
        p.add_edge("split", "seg", fanout=4)
        p.add_edge("seg", "det", fanout=2)
        p.add_edge("det", "merge")
        store = ProfileStore("deep")
        for op in p.ops:
            store.seed(op, Configuration(CPU), 0.1)
        sched = _scheduler(cpu=8, gpu=0, store=store, pipeline=p)

        sched.add("s", "split", 1.0, "v")
        sched.mark_ready("s")
        sched.commit_ready()
        sched.finish("s", ok=True)
        for k in range(3):
            sched.add(f"g{k}", "seg", 1.0, "v")
            sched.mark_ready(f"g{k}")
        sched.commit_ready()
        sched.finish("g0", ok=True)
        sched.add("d0", "det", 1.0, "v")  # the finished seg made one det so far

        assert sched.remaining_invocations() == pytest.approx(
            {
                "split": 0.0,
                "seg": 2.0,  # 2 unfinished
                "det": 1.0 + 2 * 8 / 4,  # 1 unfinished + 2 segs x 2 dets each = 5
                "merge": 1.0,  # not created yet
            }
        )


# -- property: random event sequences --------------------------------------------------

_OPS = ("split", "detect", "detect", "merge")  # detect twice: more contention

_add = st.tuples(st.just("add"), st.sampled_from(_OPS), st.integers(0, 2))
_events = st.lists(
    st.one_of(
        _add,
        _add,
        st.tuples(st.just("ready"), st.integers(0, 50)),
        st.tuples(st.just("commit")),
        st.tuples(
            st.just("finish"),
            st.integers(0, 50),
            st.sampled_from(["ok", "ok", "fail", "bad input"]),
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 1.0, 7.0, 40.0])),
        st.tuples(st.just("poll")),
    ),
    min_size=15,
    max_size=70,
)


def _check_slots(sched: Scheduler, live: dict) -> None:
    """Slots held are those of the calls still open, never past any capacity."""
    held = dict.fromkeys(sched.backends, 0)
    calls = {id(a.call): a.call for a in live.values()}
    for call in calls.values():
        held[call.backend] += call.slots
    assert held == sched.used_slots()
    for name, backend in sched.backends.items():
        assert 0 <= held[name] <= backend.capacity


class _Harness:
    """Plays the caller: starts what is committed, ends it, stops what is cancelled."""

    def __init__(self, sched: Scheduler, clock: SimClock, hold: bool = False) -> None:
        self.sched, self.clock, self.hold = sched, clock, hold
        self.live: dict[str, object] = {}  # attempt id -> attempt, not yet ended
        self.delivered: dict[str, int] = {}
        self.deterministic: set[str] = set()

    def commit(self) -> None:
        for attempt in self.sched.commit_ready():
            assert attempt.id not in self.live
            self.live[attempt.id] = attempt
        _check_slots(self.sched, self.live)

    def end(self, attempt_id: str, outcome: str) -> None:
        attempt = self.live.pop(attempt_id)
        ok = outcome == "ok" and attempt.injected != "failure"
        if outcome == "bad input":
            self.deterministic.add(attempt.invocation.id)
        self.sched.finish(
            attempt_id,
            ok=ok,
            error=None if ok else outcome,
            retriable=outcome != "bad input",
            hold=self.hold,
        )
        inv = attempt.invocation
        if inv.state is State.HELD:
            # The runner's case: the task's retries decide (two, and never for a
            # deterministic failure), as Prefect's retry_condition_fn would.
            if inv.id in self.deterministic or inv.failures > 2:
                self.sched.give_up(inv.id, "the task's retries decided")
            else:
                assert self.sched.resume(inv.id)
        if attempt.won:
            inv_id = attempt.invocation.id
            self.delivered[inv_id] = self.delivered.get(inv_id, 0) + 1
        # Cancelled attempts keep running until the caller stops them; here they
        # end at once, with a result that must not be delivered.
        for cancelled in self.sched.take_cancelled():
            assert cancelled.id in self.live
            self.live.pop(cancelled.id)
            self.sched.finish(cancelled.id, ok=True)
            assert not cancelled.won
        _check_slots(self.sched, self.live)


@settings(max_examples=150, deadline=None, database=None)
@given(
    events=_events,
    cpu=st.integers(2, 4),
    gpu=st.integers(0, 2),
    objective=st.sampled_from(["cost", "latency", "cheapest"]),
    late_commit=st.booleans(),
    detect_backends=st.sampled_from([(CPU,), (CPU, GPU)]),
    deadline_s=st.sampled_from([5.0, 60.0, 1000.0]),
    injected=st.sampled_from([0.0, 0.1, 0.3]),
    hold=st.booleans(),
)
def test_no_result_is_lost_or_delivered_twice_and_capacity_holds(
    events,
    cpu,
    gpu,
    objective,
    late_commit,
    detect_backends,
    deadline_s,
    injected,
    hold,
):
    clock = SimClock()
    sched = _scheduler(
        deadline_s=deadline_s,
        cpu=cpu,
        gpu=gpu,
        clock=clock,
        store=_store(two_threads=True),
        pipeline=_pipeline(detect_backends),
        objective=objective,
        late_commit=late_commit,
        inject_failure_rate=injected,
        inject_straggler_rate=injected,
        fanout_quantile=True,
        retries=2,
    )
    harness = _Harness(sched, clock, hold)
    ids: list[str] = []

    for event in events:
        kind = event[0]
        if kind == "add":
            ids.append(f"i{len(ids)}")
            sched.add(ids[-1], event[1], 1.0, f"g{event[2]}")
        elif kind == "ready" and ids:
            sched.mark_ready(ids[event[1] % len(ids)])
        elif kind == "commit":
            harness.commit()
        elif kind == "finish" and harness.live:
            live = sorted(harness.live)
            harness.end(live[event[1] % len(live)], event[2])
        elif kind == "advance":
            clock.advance(event[1])
        elif kind == "poll":
            sched.poll()

    # Drain: everything becomes ready and runs until nothing is left.
    for inv_id in ids:
        sched.mark_ready(inv_id)
    for _ in range(500):
        sched.poll()
        harness.commit()
        if not harness.live:
            break
        clock.advance(1.0)
        for attempt_id in sorted(harness.live):
            if attempt_id in harness.live:
                harness.end(attempt_id, "ok")

    assert not harness.live and sched.queued() == 0
    for inv_id in ids:
        inv = sched.invocations[inv_id]
        winners = [a for a in inv.attempts if a.won]
        if inv.state is State.DONE:
            assert harness.delivered.get(inv_id) == 1 and winners == [inv.winner]
        else:
            # failed for good: a deterministic failure, or retries used up
            assert inv.state is State.FAILED, inv.state
            assert not winners and inv_id not in harness.delivered
            assert inv_id in harness.deterministic or inv.failures > 2
        assert all(a.state is not State.RUNNING for a in inv.attempts)
    assert sched.used_slots() == dict.fromkeys(sched.backends, 0)


class TestSlotWaits:
    """A configuration needing more slots than are free counts the wait for them."""

    def _store(self) -> ProfileStore:
        store = ProfileStore("video")
        store.seed("split", SPLIT, SPLIT_S)
        store.seed("detect", DETECT_CPU, 5.0)  # one thread: 5 s
        store.seed("detect", DETECT_CPU2, 1.2)  # two threads: 1.2 s
        store.seed("merge", MERGE, MERGE_S)
        return store

    def test_wait_for_slots_is_part_of_the_predicted_latency(self):
        clock = SimClock()
        sched = _scheduler(
            cpu=3, gpu=0, store=self._store(), objective="latency", clock=clock
        )
        sched.add("d0", "detect", 1.0, "v1")
        sched.mark_ready("d0")
        (first,) = sched.commit_ready()
        assert first.plan.config == DETECT_CPU2  # 3 free: two threads, 1.2 s
        second = sched.add("d1", "detect", 1.0, "v1")
        # One slot is free; two threads must wait for d0 (1.2 s) then run 1.2 s:
        # 2.4 s, still faster than one thread's 5 s.
        plan = sched.plan(second)
        assert plan.config == DETECT_CPU2
        assert plan.predicted_s == pytest.approx(2.4)

    def test_the_tail_margin_covers_the_wait_as_it_covers_the_run(self):
        # As above with the tail margin on: d1's two threads wait for d0's 1.2 s
        # and run 1.2 s; a margin m (the op's on the CPU, two slots wide) makes
        # both longer: 1.2 m + 1.2 m. The wait is made of calls predicted as d1's
        # own, so it is no surer than its run.
        clock = SimClock()
        sched = _scheduler(
            cpu=3,
            gpu=0,
            store=self._store(),
            objective="latency",
            clock=clock,
            fanout_quantile=True,
            tail_pooling=False,
        )
        sched.add("d0", "detect", 1.0, "v1")
        sched.mark_ready("d0")
        (first,) = sched.commit_ready()
        assert first.plan.config == DETECT_CPU2
        second = sched.add("d1", "detect", 1.0, "v1")
        option = sched._option_by_config("detect", DETECT_CPU2)
        margin = sched._margin("detect", option, 1.0)
        assert margin > 1.05
        plan = sched.plan(second)
        assert plan.config == DETECT_CPU2
        assert plan.predicted_s == pytest.approx(1.2 * margin + 1.2 * margin)

    def test_invocation_holds_its_backend_until_its_slots_free(self):
        clock = SimClock()
        sched = _scheduler(
            cpu=3, gpu=0, store=self._store(), objective="latency", clock=clock
        )
        for k in range(2):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        assert [i.id for i in sched.commit_ready()] == ["d0"]
        assert sched.used_slots() == {CPU: 2}  # the free slot is held for d1
        clock.advance(1.2)
        sched.finish("d0", ok=True)
        (second,) = sched.commit_ready()
        assert second.id == "d1"
        assert second.plan.config == DETECT_CPU2
        assert second.plan.predicted_s == pytest.approx(1.2)  # no wait any more

    def test_a_loose_target_waits_for_the_cheap_backend(self):
        # CPU is cheaper and the target allows waiting for it: d2 and d3 wait
        # (2 s for a slot, 4 s in all) rather than pay for the idle GPU.
        sched = _scheduler(cpu=2, gpu=1, deadline_s=1000.0)
        for k in range(4):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        committed = sched.commit_ready()
        assert [(i.id, i.plan.config.backend) for i in committed] == [
            ("d0", CPU),
            ("d1", CPU),
        ]
        waiting = sched.invocations["d2"]
        assert waiting.queued_on == CPU
        # behind d3 in the queue: the second CPU slot to free (2 s), then 2 s
        assert sched.plan(waiting).predicted_s == pytest.approx(4.0)

    def test_others_use_another_backend_while_one_is_held(self):
        # Four detects, 2 CPU slots, 1 GPU slot, 10 s to the deadline. With all
        # four counted, the work ahead is 4 detects weighed at 2.0 s (CPU 4 x 2 / 2
        # = 4 s, GPU 4 x 0.5 / 1 = 2 s: GPU) plus merge 0.1 s, so a target is
        # 10 x 0.5 / 2.1 = 2.38 s. Speculatively d0-d2 queue on the CPU (d2 behind
        # the two queued before it: 1 s of queue + 2 s = 3 s fits the 3.1 s it
        # was given with three counted) and d3 on the GPU (4 s on the CPU misses).
        clock = SimClock()
        sched = _scheduler(cpu=2, gpu=1, deadline_s=10.0, clock=clock)
        for k in range(4):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        assert [sched.invocations[f"d{k}"].queued_on for k in range(4)] == [
            CPU,
            CPU,
            CPU,
            GPU,
        ]
        # At commit the scarce GPU is served first: its head d3 finds the CPU free
        # (2 s fits 2.38 s, cheaper) and moves there; d0 takes the other CPU slot;
        # d1 would wait 2 s for the CPU (4 s: misses) and takes the GPU; d2 waits.
        committed = sched.commit_ready()
        backends = [(i.id, i.plan.config.backend) for i in committed]
        assert backends == [("d3", CPU), ("d0", CPU), ("d1", GPU)]
        assert sched.commit_ready() == []  # no slot free: nothing is decided
        # When d1 ends the GPU takes d2 from the CPU's queue: 9.5 s left, three
        # detects (GPU 1.5 s) and merge ahead: target 9.5 x 0.5 / 1.6 = 2.97 s;
        # the CPU (1.5 s for a slot + 2 s) misses it, the free GPU (0.5 s) fits.
        clock.advance(0.5)
        sched.finish("d1", ok=True)
        (d2,) = sched.commit_ready()
        assert (d2.id, d2.plan.config.backend) == ("d2", GPU)
        assert d2.plan.target_s == pytest.approx(9.5 * 0.5 / 1.6)


class TestMissFallback:
    """With no target reachable, take what clears the op's remaining work soonest."""

    def _late(self, n: int) -> Scheduler:
        clock = SimClock()
        sched = _scheduler(
            cpu=2, gpu=0, store=_store(two_threads=True), deadline_s=1.0, clock=clock
        )
        for k in range(n):
            sched.add(f"d{k}", "detect", 1.0, "v1")
            sched.mark_ready(f"d{k}")
        clock.advance(5.0)  # the deadline has passed: every plan is a miss
        return sched

    def test_a_full_pool_keeps_one_thread_per_invocation(self):
        # four left on two slots: one thread clears them in 4 x 2.0 / 2 = 4.0 s,
        # two threads in 4 x 1.2 / 1 = 4.8 s, though each invocation is faster
        sched = self._late(4)
        committed = sched.commit_ready()
        assert [i.plan.config for i in committed] == [DETECT_CPU, DETECT_CPU]
        assert all(i.plan.predicted_miss for i in committed)

    def test_a_lone_invocation_takes_the_fastest(self):
        sched = self._late(1)
        (inv,) = sched.commit_ready()
        assert inv.plan.config == DETECT_CPU2  # 1.2 s beats 2.0 s when alone
        assert inv.plan.predicted_miss

    @staticmethod
    def _lone(detect_cpu2_s: float, **switches) -> Scheduler:
        store = ProfileStore("video")
        store.seed("split", SPLIT, SPLIT_S)
        store.seed("detect", DETECT_CPU, DETECT_CPU_S)
        store.seed("detect", DETECT_CPU2, detect_cpu2_s)
        store.seed("merge", MERGE, MERGE_S)
        clock = SimClock()
        sched = _scheduler(
            cpu=2, gpu=0, store=store, deadline_s=1.0, clock=clock, **switches
        )
        sched.add("d0", "detect", 1.0, "v1")
        sched.mark_ready("d0")
        clock.advance(5.0)
        return sched

    def test_a_finish_sooner_by_less_than_the_tolerance_is_not_bought(self):
        # alone, two threads at 1.9 s finish 5% sooner than one at 2.0 s but hold
        # two slots (3.8 slot-seconds against 2.0): within the 10% tolerance the
        # cheaper one is taken
        (inv,) = self._lone(1.9).commit_ready()
        assert inv.plan.config == DETECT_CPU
        assert inv.plan.predicted_miss

    def test_the_published_rule_buys_any_finish_that_is_sooner(self):
        (inv,) = self._lone(1.9, miss_tolerance=0.0).commit_ready()
        assert inv.plan.config == DETECT_CPU2

    def test_a_finish_sooner_by_more_than_the_tolerance_is_bought(self):
        # 1.7 s is 15% sooner than 2.0 s: outside the tolerance
        (inv,) = self._lone(1.7).commit_ready()
        assert inv.plan.config == DETECT_CPU2

    def test_published_settings_have_no_tolerance(self):
        assert Settings.published(10.0).miss_tolerance == 0.0
        with pytest.raises(ConfigurationError, match="miss_tolerance"):
            Settings(10.0, miss_tolerance=-0.1).check()


class TestSettingsCheck:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("deadline_s", float("nan")),
            ("deadline_s", "10"),
            ("objective", "nope"),
            ("accuracy_floor", 2.0),
            ("accuracy_floor", float("nan")),
            ("retries", -1),
            ("retries", 1.5),
            ("straggler_factor", -1.0),
            ("straggler_floor", 0.0),
            ("straggler_min_s", -1.0),
            ("retry_every", 0),
            ("retry_margin", -5.0),
            ("miss_tolerance", float("nan")),
            ("inject_failure_rate", float("nan")),
            ("inject_straggler_factor", 0.5),
            ("tail_quantile", 1.0),
            ("wait_slack_share", 1.5),
            ("wait_slack_share", float("nan")),
        ],
    )
    def test_a_setting_out_of_range_is_refused_by_name(self, name, value):
        values = {"deadline_s": 10.0, name: value}
        with pytest.raises(ConfigurationError, match=name):
            Settings(**values).check()

    def test_the_defaults_the_published_and_an_endless_deadline_pass(self):
        Settings(10.0).check()
        Settings.published(10.0).check()
        Settings(float("inf"), objective=lambda cands, target: cands[0]).check()

    @pytest.mark.parametrize("units", [float("nan"), float("inf"), -3.0])
    def test_an_invocation_without_a_finite_amount_of_work_is_refused(self, units):
        sched = _scheduler()
        with pytest.raises(ConfigurationError, match="work units"):
            sched.add("d1", "detect", units, "v1")
        assert "d1" not in sched.invocations


class TestMenu:
    # Three configurations of one op on the CPU, all at one price per second:
    #   quick start: 0.045 s + 0.00186 s per unit
    #   heavy start: 0.2 s + 0.0016 s per unit (faster only past 689 units)
    #   worse:       0.3 s + 0.002 s per unit (beaten by quick start on both)
    QUICK = Configuration.of(CPU, {"every": 4})
    HEAVY = Configuration.of(CPU, {"every": 1})
    WORSE = Configuration.of(CPU, {"every": 8})

    def _sched(self) -> Scheduler:
        p = Pipeline("clips")
        p.add_op(OpSpec("motion", knobs={"every": (1, 4, 8)}, backends=(CPU,)))
        store = ProfileStore("clips")
        store.seed("motion", self.QUICK, 0.00186, fixed_s=0.045)
        store.seed("motion", self.HEAVY, 0.0016, fixed_s=0.2)
        store.seed("motion", self.WORSE, 0.002, fixed_s=0.3)
        return _scheduler(store=store, pipeline=p, gpu=0, deadline_s=1e6)

    def test_a_configuration_quicker_to_start_stays_though_slower_per_unit(self):
        sched = self._sched()
        menu = {o.config for o in sched._menu("motion")}
        assert menu == {self.QUICK, self.HEAVY}

    def test_small_invocations_take_the_quick_start_and_large_ones_the_other(self):
        sched = self._sched()
        small = sched.add("s", "motion", 17.0, "v1").speculative
        assert small.config == self.QUICK
        assert small.run_s == pytest.approx(0.045 + 0.00186 * 17)
        large = sched.add("l", "motion", 2000.0, "v1").speculative
        assert large.config == self.HEAVY
        assert large.run_s == pytest.approx(0.2 + 0.0016 * 2000)
