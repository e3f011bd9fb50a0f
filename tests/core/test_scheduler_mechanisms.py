"""Hand-computed cases for each scheduler mechanism and switch, on simulated time.

Straggler duplication, retry through re-planning, deterministic failures, injection,
safe delayed batching, priority commit (depth, quotas, affinity), the objectives, the
fixes of the published method's weak spots and their switches, per-group deadlines
and a static split of the SLO.

Unless a test says otherwise, `detect` has a cheap, slow CPU configuration (2 s per
unit) and a fast, pricier GPU configuration (0.5 s per unit), and targets use mean
latencies (`fanout_quantile=False`) so that they can be computed by hand.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import PRIOR_SPREAD, ProfileStore
from llama_prefect.core.scheduler import (
    RATE_WINDOW_S,
    WAIT_CHECK_S,
    BackendSlots,
    Scheduler,
    Settings,
    State,
)
from llama_prefect.errors import ConfigurationError

CPU, GPU, LAMBDA = "local-cpu", "local-gpu", "lambda"
SPLIT = Configuration(CPU)
MERGE = Configuration(CPU)
DETECT_CPU = Configuration.of(CPU, {"threads": 1})
DETECT_CPU2 = Configuration.of(CPU, {"threads": 2})
DETECT_GPU = Configuration.of(GPU, {"threads": 1})
DETECT_GPU4 = Configuration.of(GPU, {"call_batch": 4, "threads": 1})
PRICES = PriceCatalog.load()


def _pipeline(detect_backends: tuple[str, ...] = (CPU, GPU)) -> Pipeline:
    p = Pipeline("video")
    p.add_op(OpSpec("split", unit="video"))
    p.add_op(OpSpec("detect", knobs={"threads": (1, 2)}, backends=detect_backends))
    p.add_op(OpSpec("merge", unit="video", gather=True))
    p.add_edge("split", "detect", fanout=4)
    p.add_edge("detect", "merge")
    return p


def _store(**detect: float) -> ProfileStore:
    store = ProfileStore("video")
    store.seed("split", SPLIT, 0.5)
    store.seed("merge", MERGE, 0.1)
    configs = {"cpu": DETECT_CPU, "cpu2": DETECT_CPU2, "gpu": DETECT_GPU}
    configs["gpu4"] = DETECT_GPU4
    for name, s_per_unit in (detect or {"cpu": 2.0, "gpu": 0.5}).items():
        store.seed("detect", configs[name], s_per_unit)
    return store


def _scheduler(
    *,
    deadline_s: float = 100.0,
    cpu: int = 4,
    gpu: int = 1,
    store: ProfileStore | None = None,
    pipeline: Pipeline | None = None,
    clock: SimClock | None = None,
    backends: dict[str, BackendSlots] | None = None,
    **switches,
) -> Scheduler:
    if backends is None:
        backends = {CPU: BackendSlots(CPU, cpu)}
        if gpu:
            backends[GPU] = BackendSlots(GPU, gpu)
    switches.setdefault("fanout_quantile", False)
    switches.setdefault("weight_basis", "robust")  # targets by hand: fastest shares
    return Scheduler(
        pipeline or _pipeline(),
        store or _store(),
        PRICES,
        backends,
        Settings(deadline_s=deadline_s, **switches),
        clock=clock or SimClock(),
    )


def _ready(sched: Scheduler, *ids: str, op: str = "detect", group: str = "v1"):
    for inv_id in ids:
        sched.add(inv_id, op, 1.0, group)
        sched.mark_ready(inv_id)


class TestStragglers:
    # A lone detect with 4.56 s left: own 0.5 s (GPU stands for the op) against
    # 0.5 + 0.1 s ahead: target 4.56 x 0.5 / 0.6 = 3.8 s. The CPU (2 s) fits and is
    # cheaper. Its target is lost for a fresh GPU attempt (0.5 s) after 3.3 s:
    # between 1.5 x 2 = 3 s and 2 x 2 = 4 s, so it is a straggler from 3.3 s.

    def _started(self, clock: SimClock, **switches):
        sched = _scheduler(deadline_s=4.56, clock=clock, **switches)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        return sched, first

    def test_straggler_time_by_hand(self):
        sched, first = self._started(SimClock())
        assert first.plan.config == DETECT_CPU
        assert first.plan.target_s == pytest.approx(3.8)
        assert first.plan.fastest_s == pytest.approx(0.5)
        assert first.duplicate_at_s == pytest.approx(3.3)
        assert sched.next_event_s() == pytest.approx(3.3)

    def test_no_straggler_before_the_minimum_seconds(self):
        # The same lone detect: 3.3 s by its prediction, 5 s at the least.
        sched, first = self._started(SimClock(), straggler_min_s=5.0)
        assert first.duplicate_at_s == pytest.approx(5.0)
        assert sched.next_event_s() == pytest.approx(5.0)

    def test_a_loose_target_waits_twice_the_prediction(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=1000.0, clock=clock)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        assert first.duplicate_at_s == pytest.approx(2 * first.plan.predicted_s)

    def test_duplicate_wins_and_the_original_is_cancelled(self):
        clock = SimClock()
        sched, first = self._started(clock)
        clock.advance(3.2)
        assert sched.poll() == 0  # not yet a straggler
        clock.advance(0.1)
        assert sched.poll() == 1
        (dup,) = sched.commit_ready()
        assert (dup.id, dup.kind, dup.number) == ("d1~2", "duplicate", 2)
        # 1.26 s left: only the GPU (0.5 s) can still make it
        assert dup.plan.config == DETECT_GPU
        assert sched.used_slots() == {CPU: 1, GPU: 1}

        clock.advance(0.5)
        sched.finish(dup.id, ok=True)
        inv = sched.invocations["d1"]
        assert dup.won and inv.state is State.DONE and inv.winner is dup
        assert sched.take_cancelled() == [first]
        assert first.state is State.CANCELLED
        assert sched.used_slots() == {CPU: 1, GPU: 0}  # until its end is reported

        clock.advance(1.0)
        late = sched.finish(first.id, ok=True)
        assert not late.won and inv.winner is dup
        assert sched.used_slots() == {CPU: 0, GPU: 0}
        # both attempts are paid for
        assert inv.cost_usd == pytest.approx(first.cost_usd + dup.cost_usd)

    def test_original_finishing_first_cancels_the_duplicate(self):
        clock = SimClock()
        sched, first = self._started(clock)
        clock.advance(3.3)
        sched.poll()
        (dup,) = sched.commit_ready()
        clock.advance(0.1)
        sched.finish(first.id, ok=True)
        assert first.won
        assert sched.take_cancelled() == [dup]

    def test_one_duplicate_at_a_time(self):
        clock = SimClock()
        sched, _ = self._started(clock)
        clock.advance(3.3)
        assert sched.poll() == 1
        (dup,) = sched.commit_ready()
        clock.advance(100.0)
        assert sched.poll() == 0  # two attempts alive already

    def test_without_duplication_nothing_is_watched(self):
        clock = SimClock()
        sched, first = self._started(clock, duplication=False)
        assert math.isinf(first.duplicate_at_s)
        clock.advance(100.0)
        assert sched.poll() == 0
        assert math.isinf(sched.next_event_s())


class TestFailures:
    def test_a_failure_is_planned_again_and_may_change_backend(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=4.56, clock=clock)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        assert first.plan.config == DETECT_CPU
        clock.advance(1.0)
        sched.finish(first.id, ok=False, error="lost the worker")
        inv = sched.invocations["d1"]
        assert inv.state is State.READY and inv.pending == "retry"
        (retry,) = sched.commit_ready()
        # 3.56 s left: target 3.56 x 0.5 / 0.6 = 2.97 s; the CPU still fits
        assert (retry.id, retry.kind) == ("d1~2", "retry")
        assert retry.plan.target_s == pytest.approx(3.56 * 0.5 / 0.6)
        clock.advance(2.0)
        sched.finish(retry.id, ok=True)
        assert inv.state is State.DONE and inv.winner is retry
        assert inv.failures == 1

    def test_deterministic_failure_is_not_retried(self):
        sched = _scheduler()
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="corrupt input", retriable=False)
        inv = sched.invocations["d1"]
        assert inv.state is State.FAILED and inv.error == "corrupt input"
        assert sched.queued() == 0 and sched.commit_ready() == []

    def test_retries_run_out(self):
        sched = _scheduler(retries=1)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="boom")
        (second,) = sched.commit_ready()
        sched.finish(second.id, ok=False, error="boom again")
        inv = sched.invocations["d1"]
        assert inv.state is State.FAILED and inv.failures == 2
        assert sched.queued() == 0

    def test_no_retries_when_switched_off(self):
        sched = _scheduler(retries=0)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="boom")
        assert sched.invocations["d1"].state is State.FAILED

    def test_a_failure_beside_a_live_duplicate_waits_for_it(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=4.56, clock=clock)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        clock.advance(3.3)
        sched.poll()
        (dup,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="boom")
        assert sched.queued() == 0  # the duplicate may still deliver
        clock.advance(0.5)
        sched.finish(dup.id, ok=True)
        assert sched.invocations["d1"].winner is dup

    def test_a_deterministic_failure_cancels_the_other_attempt(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=4.56, clock=clock)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        clock.advance(3.3)
        sched.poll()
        (dup,) = sched.commit_ready()
        sched.finish(dup.id, ok=False, error="corrupt", retriable=False)
        assert sched.take_cancelled() == [first]
        assert sched.invocations["d1"].state is State.FAILED


class TestInjection:
    def test_every_attempt_fails_at_rate_one(self):
        sched = _scheduler(inject_failure_rate=1.0)
        _ready(sched, "d1", "d2")
        assert [a.injected for a in sched.commit_ready()] == ["failure", "failure"]

    def test_rates_are_met_over_many_attempts_and_are_seeded(self):
        def draws(seed: int) -> list:
            sched = _scheduler(
                cpu=1,
                gpu=0,
                inject_failure_rate=0.03,
                inject_straggler_rate=0.1,
                seed=seed,
            )
            out = []
            for k in range(2000):
                _ready(sched, f"d{k}")
                (attempt,) = sched.commit_ready()
                out.append(attempt.injected)
                sched.finish(attempt.id, ok=True)
            return out

        first = draws(7)
        assert first == draws(7)
        assert 0.02 < first.count("failure") / 2000 < 0.04
        assert 0.08 < first.count("straggler") / 2000 < 0.12

    def test_rates_above_one_are_rejected(self):
        with pytest.raises(ConfigurationError, match="injection rates"):
            _scheduler(inject_failure_rate=0.6, inject_straggler_rate=0.6)


class TestBatching:
    # detect on a 1-slot GPU only: unbatched 0.5 s per unit, or four invocations per
    # call at 0.2 s per unit (a full call of four one-unit invocations: 0.8 s).

    @staticmethod
    def _sched(clock: SimClock, **kw) -> Scheduler:
        return _scheduler(
            clock=clock,
            cpu=1,
            gpu=1,
            store=_store(gpu=0.5, gpu4=0.2),
            pipeline=_pipeline((GPU,)),
            **kw,
        )

    def test_four_ready_invocations_share_one_call(self):
        clock = SimClock()
        sched = self._sched(clock)
        _ready(sched, "d0", "d1", "d2", "d3")
        attempts = sched.commit_ready()
        assert sorted(a.id for a in attempts) == ["d0", "d1", "d2", "d3"]
        assert len({id(a.call) for a in attempts}) == 1
        assert all(a.plan.config == DETECT_GPU4 for a in attempts)
        assert sched.used_slots()[GPU] == 1
        call_usd = 0.8 * PRICES.price(GPU).usd_per_slot_s
        assert attempts[0].plan.cost_usd == pytest.approx(call_usd / 4)
        assert attempts[0].plan.run_s == pytest.approx(0.8)

        clock.advance(0.8)
        for a in attempts[:3]:
            sched.finish(a.id, ok=True)
        assert sched.used_slots()[GPU] == 1  # the call is open until all end
        sched.finish(attempts[3].id, ok=True)
        assert sched.used_slots()[GPU] == 0
        # learned once, from the whole call: 0.8 s over 4 units
        prof = sched.store.profile("detect", DETECT_GPU4)
        assert prof.observations == 1
        assert prof.recent_s_per_unit == [pytest.approx(0.2)]

    def _split_running(self, clock: SimClock, deadline_s: float, **kw) -> Scheduler:
        """One split running (ends in 0.5 s, makes 4 detects) and one detect ready."""
        sched = self._sched(clock, deadline_s=deadline_s, **kw)
        sched.add("s1", "split", 1.0, "v2")
        sched.mark_ready("s1")
        assert [a.id for a in sched.commit_ready()] == ["s1"]
        _ready(sched, "d0", group="v1")
        return sched

    @staticmethod
    def _split_ends_with_four_detects_d0_joins(sched: Scheduler) -> None:
        """The split ends and makes four detects: d0 runs in their call of four."""
        sched.finish("s1", ok=True)
        _ready(sched, "d1", "d2", "d3", "d4", group="v2")
        attempts = sched.commit_ready()
        first = [a for a in attempts if a.call is attempts[0].call]
        assert "d0" in {a.id for a in first} and len(first) == 4
        assert first[0].plan.config == DETECT_GPU4

    def test_waits_for_upstream_work_that_fills_the_call(self):
        # Alone, d0 costs a whole padded call (0.8 s) or an unbatched 0.5 s. The
        # running split will make four more detects in 0.5 s: waiting 0.5 s for a
        # full call (0.5 + 0.8 = 1.3 s) fits a loose target at a quarter of the
        # call's cost, so it waits: to the predicted fill, without the slack share.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=1000.0, wait_slack_share=0.0)
        assert sched.commit_ready() == []
        d0 = sched.invocations["d0"]
        assert d0.waited and d0.queued_on == GPU
        assert sched.next_event_s() == pytest.approx(0.5)

    def test_does_not_wait_when_the_target_cannot_afford_it(self):
        # With 1.2 s left the wait plus the call (1.3 s) misses: run what is ready.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=1.5)
        (attempt,) = sched.commit_ready()
        assert attempt.id == "d0" and attempt.plan.wait_s == 0.0

    def test_does_not_wait_without_upstream_work(self):
        clock = SimClock()
        sched = self._sched(clock, deadline_s=1000.0)
        _ready(sched, "d0")
        (attempt,) = sched.commit_ready()
        # alone, the padded call costs more than the unbatched one
        assert attempt.plan.config == DETECT_GPU

    def test_an_invocation_waits_once(self):
        # Without the slack share its one wait ends at the predicted fill.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=1000.0, wait_slack_share=0.0)
        sched.commit_ready()
        clock.advance(0.5)
        sched.poll()
        (attempt,) = sched.commit_ready()  # no more detects came: it runs alone now
        assert attempt.id == "d0" and attempt.plan.config == DETECT_GPU

    def test_a_wait_lasts_half_its_slack_past_the_predicted_fill(self):
        # With 3 s to the deadline d0's plan is the full call after the split's
        # predicted end: 0.5 + 0.8 = 1.3 s against its target. Its wait ends half
        # of that slack after the predicted fill. The split runs late (0.7 s):
        # d0 is still waiting and joins the four detects it makes.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=3.0)
        d0 = sched.invocations["d0"]
        plan = sched.plan(d0, at_commit=True)
        assert (plan.predicted_s, plan.wait_s, plan.fill) == (
            pytest.approx(1.3),
            pytest.approx(0.5),
            4,
        )
        assert sched.commit_ready() == []
        slack_s = plan.target_s - plan.predicted_s
        assert slack_s > 0.2
        assert d0.wait_until_s == pytest.approx(0.5 + 0.5 * slack_s)
        clock.advance(0.5)
        sched.poll()
        assert sched.commit_ready() == []  # past the predicted fill: still waiting
        clock.advance(0.2)
        self._split_ends_with_four_detects_d0_joins(sched)

    def test_a_wait_ends_at_half_its_slack(self):
        # The split runs later still: once half the slack has passed as well, d0
        # runs alone, where no wait row is offered any more. (No duplicates: the
        # wait's end is then the scheduler's next event, as it comes before the
        # check of its mates, 1 s after its start.)
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=3.0, duplication=False)
        assert sched.commit_ready() == []
        until_s = sched.invocations["d0"].wait_until_s
        assert until_s < 1.0
        assert sched.next_event_s() == pytest.approx(until_s)
        clock.advance(until_s - 0.01)
        sched.poll()
        assert sched.commit_ready() == []
        clock.advance(0.01)
        sched.poll()
        (attempt,) = sched.commit_ready()
        assert attempt.id == "d0" and attempt.plan.config == DETECT_GPU

    def test_a_wait_lasts_through_other_commit_rounds(self):
        # Another event 0.2 s into d0's wait (any event runs a commit round) does
        # not end it: at 0.5 s the split's four detects join d0 in one call.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=1000.0)
        assert sched.commit_ready() == []
        clock.advance(0.2)
        assert sched.commit_ready() == []
        assert sched.invocations["d0"].queued_on == GPU
        clock.advance(0.3)
        self._split_ends_with_four_detects_d0_joins(sched)

    def test_without_a_deadline_a_wait_lasts_while_mates_may_come(self):
        # No deadline, no slack to bound the wait: d0 waits while the split that
        # makes its mates runs, however late, and runs alone once it ended
        # without making any. The published wait (share 0) still ends at the
        # predicted fill.
        clock = SimClock()
        sched = self._split_running(clock, deadline_s=math.inf, duplication=False)
        assert sched.commit_ready() == []
        assert sched.invocations["d0"].wait_until_s == math.inf
        # no wake-up at the wait's end, one check of its mates a second on
        assert sched.next_event_s() == pytest.approx(1.0)
        clock.advance(5.0)
        sched.poll()
        assert sched.commit_ready() == []  # the split still runs: mates may come
        sched.finish("s1", ok=True)  # it made no detects
        (attempt,) = sched.commit_ready()
        assert attempt.id == "d0" and attempt.plan.config == DETECT_GPU

        clock = SimClock()
        sched = self._split_running(clock, deadline_s=math.inf, wait_slack_share=0.0)
        assert sched.commit_ready() == []
        assert sched.invocations["d0"].wait_until_s == pytest.approx(0.5)

    def test_a_wait_ends_once_no_mate_is_expected(self):
        # Detects of five videos became ready a second apart and ran alone (too
        # few in the window to predict a fill). The sixth, at 5 s, waits: with
        # 1000 s to its deadline its wait may last hundreds of seconds. Two more
        # come, then none: nothing upstream runs, so no event would plan the
        # three again before that end. Checked again from its predicted fill
        # on, they run together in a part-full call once the rate window holds
        # too few to expect the fourth, not at the wait's end.
        clock = SimClock()
        sched = self._sched(clock, deadline_s=1000.0, duplication=False)
        running: list = []
        for k in range(8):
            for attempt in running:
                sched.finish(attempt.id, ok=True)
            _ready(sched, f"d{k}", group=f"v{k}")
            running = sched.commit_ready()
            assert len(running) == (1 if k < 5 else 0)
            clock.advance(1.0)
        d5 = sched.invocations["d5"]
        assert d5.waited and d5.wait_until_s > 400.0
        for _ in range(20):  # the scheduler's own wake-ups, as a caller runs them
            clock.advance(max(0.0, sched.next_event_s() - clock.now()))
            sched.poll()
            running = sched.commit_ready()
            if running:
                break
        assert sorted(a.id for a in running) == ["d5", "d6", "d7"]
        assert running[0].plan.config == DETECT_GPU4
        assert clock.now() < 8.0 + RATE_WINDOW_S + 2 * WAIT_CHECK_S

    def test_the_fill_is_predicted_from_the_rate_invocations_became_ready(self):
        # Nothing upstream runs, but ten detects became ready in the last ten
        # seconds (one a second, across videos): three more come in about 3 s.
        # Fewer than twice the need in the window is too little to go by.
        clock = SimClock()
        sched = self._sched(clock, deadline_s=1000.0)
        for k in range(10):
            _ready(sched, f"d{k}", group=f"v{k}")
            sched.commit_ready()
            clock.advance(1.0)
        assert sched._fill_wait_s("detect", 3) == pytest.approx(3.0)
        assert sched._fill_wait_s("detect", 6) == float("inf")
        clock.advance(6.0)  # six of the ten have left the window
        assert sched._fill_wait_s("detect", 2) == pytest.approx(2.0 / 0.4)

    def test_when_nothing_fits_slot_time_on_a_queued_pool_is_charged(self):
        # Three detects queue on the busy 1-slot GPU. Late, one alone (2.0 s to
        # its end, 0.5 s of the slot) beats four to a call (2.3 s, 0.8 s for
        # four: 0.2 s each) by its own finish, but holds the three queued behind
        # it 3 x 0.5 s against 3 x 0.2 s: 3.5 s against 2.9 s, so the call of
        # four is the least late. Without the charge, the one alone.
        for charge, keys in ((True, (3.5, 2.9)), (False, (2.0, 2.3))):
            clock = SimClock()
            sched = self._sched(clock, queue_charge=charge)
            _ready(sched, "d0")
            assert len(sched.commit_ready()) == 1
            _ready(sched, "d1", "d2", "d3", group="v2")
            assert sum(sched._live[GPU].values()) == 3
            alone = sched._option_by_config("detect", DETECT_GPU)
            four = sched._option_by_config("detect", DETECT_GPU4)
            key_alone = sched._miss_key((2.0, 0.0, alone, 0.5, 1, 0.0), 1.0)[0]
            key_four = sched._miss_key((2.3, 0.0, four, 0.8, 4, 0.0), 1.0)[0]
            assert (key_alone, key_four) == pytest.approx(keys)

    def test_without_batching_calls_are_never_batched(self):
        clock = SimClock()
        sched = self._sched(clock, batching=False)
        _ready(sched, "d0", "d1", "d2", "d3")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_GPU


class TestCommitWaits:
    def test_a_request_moving_to_a_full_backend_queues_behind_all_of_it(self):
        # Fastest first, GPU 0.5 s, CPU 1.9 s, one slot each. d0 runs on the GPU
        # until 0.5 s; d1 and d2 queue there. d3, planned at submit, waits for d0
        # (0.5 s), d1 and d2 (0.5 s each) on the GPU: 2.0 s against the CPU's
        # 1.9 s, so it queues on the CPU. At the next round it must still see
        # them all ahead on the GPU (none holds it that round, as a full backend
        # is not served) and commit on the CPU, not move behind them.
        sched = _scheduler(
            cpu=1, gpu=1, objective="latency", store=_store(cpu=1.9, gpu=0.5)
        )
        _ready(sched, "d0", "d1", "d2")
        assert [a.id for a in sched.commit_ready()] == ["d0"]
        _ready(sched, "d3")
        assert sched.invocations["d3"].queued_on == CPU
        (attempt,) = sched.commit_ready()
        assert attempt.id == "d3" and attempt.plan.config == DETECT_CPU
        assert sched.invocations["d2"].queued_on == GPU


def _branches() -> Pipeline:
    """split -> a -> a2 -> merge and split -> b -> merge: a and b at depth 1."""
    p = Pipeline("branches")
    p.add_op(OpSpec("split", unit="video"))
    p.add_op(OpSpec("a", backends=(CPU, GPU)))
    p.add_op(OpSpec("a2"))
    p.add_op(OpSpec("b", backends=(CPU, GPU)))
    p.add_op(OpSpec("merge", unit="video", gather=True))
    for u, v in [("split", "a"), ("a", "a2"), ("a2", "merge")]:
        p.add_edge(u, v)
    p.add_edge("split", "b")
    p.add_edge("b", "merge")
    return p


class TestPriorityCommit:
    @staticmethod
    def _sched(**kw) -> Scheduler:
        store = ProfileStore("branches")
        for op in ("split", "a2", "merge"):
            store.seed(op, Configuration(CPU), 1.0)
        # a: 4x cheaper on the GPU than on the CPU; b: about the same on both
        store.seed("a", Configuration(CPU), 20.0)
        store.seed("a", Configuration(GPU), 1.0)
        store.seed("b", Configuration(CPU), 4.0)
        store.seed("b", Configuration(GPU), 1.0)
        return _scheduler(store=store, pipeline=_branches(), **kw)

    def test_affinity_by_hand(self):
        sched = self._sched()
        cpu_usd = PRICES.price(CPU).usd_per_slot_s
        gpu_usd = PRICES.price(GPU).usd_per_slot_s
        assert sched._affinity["a"][GPU] == pytest.approx(20 * cpu_usd / gpu_usd)
        assert sched._affinity["b"][GPU] == pytest.approx(4 * cpu_usd / gpu_usd)
        assert sched._affinity["a"][CPU] == pytest.approx(gpu_usd / (20 * cpu_usd))

    def _both_want_the_gpu(self, **kw) -> Scheduler:
        # 6 s left. b: own 1 s (GPU) of 1 + merge 1 s ahead: target 3 s, the CPU
        # (4 s) misses. a: 1 s of a 1 + a2 1 + merge 1: target 2 s, the CPU (20 s)
        # misses. Both queue on the one GPU slot; b was ready first.
        sched = self._sched(deadline_s=6.0, **kw)
        sched.add("b1", "b", 1.0, "v1")
        sched.add("a1", "a", 1.0, "v1")
        sched.mark_ready("b1")
        sched.mark_ready("a1")
        assert {sched.invocations[i].queued_on for i in ("a1", "b1")} == {GPU}
        return sched

    def test_the_op_with_the_stronger_affinity_gets_the_scarce_slot(self):
        sched = self._both_want_the_gpu()
        assert [a.id for a in sched.commit_ready()] == ["a1"]
        # b then waits 1 s for the GPU (2 s in all, within its 3 s) and holds it
        assert sched.invocations["b1"].queued_on == GPU

    def test_without_priority_commit_the_oldest_goes_first(self):
        sched = self._both_want_the_gpu(priority_commit=False)
        assert [a.id for a in sched.commit_ready()] == ["b1"]

    def test_quota_lets_a_shallower_op_in_before_the_deeper_one_takes_every_slot(self):
        # 4 CPU slots, 4 ready detects (depth 1) and 2 ready splits (depth 0) of
        # new videos, loose deadline, everything on the CPU: two ops with work,
        # quota ceil(4 / 2) = 2 each; then the rest goes deepest first.
        sched = _scheduler(cpu=4, gpu=0, deadline_s=1000.0)
        _ready(sched, "d0", "d1", "d2", "d3")
        _ready(sched, "s0", "s1", op="split", group="v9")
        ids = [a.id for a in sched.commit_ready()]
        assert ids == ["d0", "d1", "s0", "s1"]

    def test_without_priority_commit_no_quota(self):
        sched = _scheduler(cpu=4, gpu=0, deadline_s=1000.0, priority_commit=False)
        _ready(sched, "d0", "d1", "d2", "d3")
        _ready(sched, "s0", "s1", op="split", group="v9")
        assert [a.id for a in sched.commit_ready()] == ["d0", "d1", "d2", "d3"]


class TestObjectives:
    def test_user_callable_gets_the_candidates_and_the_target(self):
        seen = []

        def most_expensive(cands, target_s):
            seen.append(target_s)
            return max(cands, key=lambda c: c.cost_usd)

        sched = _scheduler(objective=most_expensive)
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_GPU
        assert seen and seen[-1] == attempt.plan.target_s

    @pytest.mark.parametrize(
        ("objective", "config"),
        [("latency", DETECT_GPU), ("cheapest", DETECT_CPU), ("cost", DETECT_CPU)],
    )
    def test_named_objectives_with_a_loose_target(self, objective, config):
        sched = _scheduler(objective=objective, deadline_s=1000.0)
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == config

    @pytest.mark.parametrize(
        ("objective", "deadline_s", "miss"),
        [
            ("cost", 0.55, True),  # the GPU's 0.5 s against its target, 0.458 s
            ("latency", 0.55, False),  # the same 0.5 s ends 0.05 s before the deadline
            ("latency", 0.45, True),  # past the deadline itself
            ("cheapest", 0.55, True),  # the CPU's 2.0 s runs past the deadline
            ("cheapest", 3.0, False),
        ],
    )
    def test_a_predicted_miss_is_against_what_the_objective_chooses_by(
        self, objective, deadline_s, miss
    ):
        # A detect with 0.55 s left and the merge (0.1 s) ahead: its target is
        # 0.55 x 0.5 / 0.6 = 0.458 s, which the cost objective chooses by. The
        # latency and cheapest objectives ignore it; for them a miss is a run
        # past the deadline.
        sched = _scheduler(objective=objective, deadline_s=deadline_s)
        _ready(sched, "d0")
        plan = sched.plan(sched.invocations["d0"], at_commit=True)
        if deadline_s == 0.55:
            assert plan.target_s == pytest.approx(0.55 * 0.5 / 0.6)
        assert plan.predicted_miss is miss


class TestPublishedWeakSpots:
    def test_published_settings_switch_every_fix_off(self):
        s = Settings.published(10.0)
        assert (s.shared_feedback, s.retry_abandoned, s.fanout_quantile) == (
            False,
            False,
            False,
        )
        assert s.weight_basis == "chosen"
        assert Settings(10.0).weight_basis == "priced"
        assert (s.tail_pooling, s.content_feedback) == (False, False)
        assert Settings(10.0).content_feedback

    def test_per_configuration_feedback_leaves_the_others_alone(self):
        clock = SimClock()
        sched = _scheduler(
            clock=clock, store=_store(cpu=2.0, cpu2=1.2, gpu=0.5), shared_feedback=False
        )
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_CPU
        clock.advance(3.0)  # 1.5x its profile
        sched.finish(attempt.id, ok=True)
        # published: only its own estimate moves, by 0.3 x (3 - 2): 2.3 s
        assert sched.store.predict_s_per_unit("detect", DETECT_CPU) == pytest.approx(
            2.3
        )
        assert sched.store.predict_s_per_unit("detect", DETECT_CPU2) == 1.2

    def test_shared_feedback_moves_the_unused_configurations_too(self):
        clock = SimClock()
        sched = _scheduler(clock=clock, store=_store(cpu=2.0, cpu2=1.2, gpu=0.5))
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        clock.advance(3.0)
        sched.finish(attempt.id, ok=True)
        # the shared CPU drift becomes 1.5 ** 0.3
        assert sched.store.predict_s_per_unit("detect", DETECT_CPU2) == pytest.approx(
            1.2 * 1.5**0.3
        )

    @pytest.mark.parametrize(
        ("basis", "before_s", "after_s"),
        [("chosen", 10.25, 20.5), ("robust", 10.25, 10.25)],
    )
    def test_published_weight_jumps_with_the_last_choice(
        self, basis, before_s, after_s
    ):
        # 8 CPU slots, 1 GPU. A pending split expects 40 detects, plus one more
        # detect d1: 41. On the CPU they take 41 x 2 / 8 = 10.25 s, on the GPU
        # 41 x 0.5 / 1 = 20.5 s. Published, once d1 was committed on the GPU (the
        # fastest for one invocation), the op's weight doubles; robust, it stays.
        p = Pipeline("video")
        p.add_op(OpSpec("split", unit="video"))
        p.add_op(OpSpec("detect", knobs={"threads": (1,)}, backends=(CPU, GPU)))
        p.add_op(OpSpec("merge", unit="video", gather=True))
        p.add_edge("split", "detect", fanout=40)
        p.add_edge("detect", "merge")
        sched = _scheduler(
            pipeline=p, cpu=8, gpu=1, objective="latency", weight_basis=basis
        )
        sched.add("s1", "split", 1.0, "v1")
        _ready(sched, "d1", group="v0")
        assert sched.stage_estimates()["detect"].stage_s == pytest.approx(before_s)
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_GPU
        assert sched.stage_estimates()["detect"].stage_s == pytest.approx(after_s)

    def test_fanout_quantile_margin_by_hand(self):
        # Prior spread 0.2, tail quantile 0.95. A lone detect (width 1):
        # z = 1.645, margin e^(0.2 x 1.645) = 1.389. Its GPU prediction 0.5 s
        # becomes 0.694 s.
        sched = _scheduler(
            fanout_quantile=True, tail_pooling=False, objective="latency"
        )
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        z1 = NormalDist().inv_cdf(0.95)
        assert attempt.plan.predicted_s == pytest.approx(
            0.5 * math.exp(PRIOR_SPREAD * z1)
        )
        assert attempt.plan.run_s == pytest.approx(0.5)

    def test_fanout_quantile_grows_with_the_width(self):
        # Four detects on 4 CPU slots run side by side: the slowest of four stays
        # below the quantile 0.95 ** (1 / 4) of one: z = 2.234.
        sched = _scheduler(
            fanout_quantile=True, tail_pooling=False, gpu=0, deadline_s=1000.0
        )
        _ready(sched, "d0", "d1", "d2", "d3")
        attempt = sched.commit_ready()[0]
        z4 = NormalDist().inv_cdf(0.95**0.25)
        assert z4 == pytest.approx(2.234, abs=1e-3)
        assert attempt.plan.predicted_s == pytest.approx(
            2.0 * math.exp(PRIOR_SPREAD * z4)
        )

    def test_pooled_tails_by_hand(self):
        # The work ahead of detect is the path detect -> merge, with means 4 and
        # 1 s and tail margins 1.25 and 1.5: excesses 1 and 0.5 s. Added stage by
        # stage the path is planned at 5 + 1.5 = 6.5 s. Pooled, at 5 + sqrt(1 +
        # 0.25) = 6.118 s, and detect's share of the pool is 1 / sqrt(1.25) = 0.894.
        cases = ((False, 6.5, 1.0), (True, 5 + 1.25**0.5, 0.894))
        for pooled, ahead_s, share in cases:
            sched = _scheduler(fanout_quantile=True, tail_pooling=pooled)
            sched.add("d1", "detect", 1.0, "v1")
            ctx = sched._context("v1")
            ctx.stages.update({"detect": (5.0, None, 1.25), "merge": (1.5, None, 1.5)})
            ((got_s, path, got_share),) = sched._path_sums(ctx, "detect")
            assert path == ("detect", "merge")
            assert got_s == pytest.approx(ahead_s)
            assert got_share == pytest.approx(share, abs=1e-3)

    def test_pooled_tails_give_each_stage_its_share_and_price_it_so(self):
        # Three detects ahead on 4 CPU slots, the tail margin on. Pooled, detect's
        # target is the time left x its mean x (1 + its excess share) over the
        # path's pooled plan, and its candidates are priced at the same reduced
        # margin 1 + (m - 1) x share.
        results = {}
        for pooled in (False, True):
            sched = _scheduler(fanout_quantile=True, tail_pooling=pooled, gpu=0)
            _ready(sched, "d1")
            inv = sched.invocations["d1"]
            plan = sched.plan(inv)
            ctx = sched._context(inv.group)
            ((ahead_s, _, share),) = ctx.sums["detect"]
            margin = ctx.stages["detect"][2]
            mean_s = 2.0  # DETECT_CPU, 1 unit
            mine_s = mean_s * (1 + (margin - 1) * share)
            assert plan.target_s == pytest.approx(100.0 * mine_s / ahead_s)
            assert plan.predicted_s == pytest.approx(mine_s)
            results[pooled] = (plan.target_s, plan.predicted_s, share)
        # pooling loosens the target and narrows the margin
        assert results[True][0] > results[False][0]
        assert results[True][1] < results[False][1]
        assert results[False][2] == 1.0 and 0 < results[True][2] < 1

    @staticmethod
    def _twelve_decisions(run_s_of) -> tuple[Scheduler, list]:
        """Twelve detects one after another, re-tries every 2nd decision; each
        runs `run_s_of(config)` seconds. The (config, probe) of each, in order."""
        clock = SimClock()
        sched = _scheduler(
            clock=clock,
            gpu=0,
            store=_store(cpu=2.0, cpu2=1.2),
            retry_every=2,
            deadline_s=1e6,
        )
        configs = []
        for k in range(12):
            _ready(sched, f"d{k}")
            (attempt,) = sched.commit_ready()
            configs.append((attempt.plan.config, attempt.plan.probe))
            clock.advance(run_s_of(attempt.plan.config))
            sched.finish(attempt.id, ok=True)
        return sched, configs

    def test_abandoned_configuration_is_tried_again(self):
        # CPU2 looks 1.2 x 2 slots = 2.4 slot-s against CPU's 2.0: never chosen
        # by cost. Every 2nd decision, once it has not been used in 8, it is.
        _, configs = self._twelve_decisions(lambda config: 1.0)
        probes = [k for k, (_, probe) in enumerate(configs) if probe]
        assert probes == [8]
        assert configs[8][0] == DETECT_CPU2
        assert all(c == DETECT_CPU for k, (c, _) in enumerate(configs) if k != 8)

    def test_a_retried_configuration_learns_its_own_residual_and_then_wins(self):
        # CPU runs exactly at its seed (2 s), so the shared drift stays 1. The
        # re-try of CPU2 (seed 1.2 s on 2 slots) takes 0.6 s: ratio 0.5. Alone, that
        # observation sets CPU2's residual to 0.5 and leaves the drift: CPU2 now
        # costs 0.6 x 2 = 1.2 slot-s against CPU's 2.0 and is chosen from then on.
        # Had it moved the shared drift (to 0.5 ** 0.3) and CPU2's residual by the
        # residual's share only, CPU2 would cost 1.87 slot-s against CPU's 1.62.
        sched, decisions = self._twelve_decisions(
            lambda config: 0.6 if config == DETECT_CPU2 else 2.0
        )
        configs = [config for config, _ in decisions]
        assert configs[:8] == [DETECT_CPU] * 8
        assert configs[8:] == [DETECT_CPU2] * 4
        assert sched.store.ops["detect"].drift["local-cpu"] == pytest.approx(1.0)
        assert sched.store.profile("detect", DETECT_CPU2).residual == pytest.approx(0.5)

    def test_without_retry_abandoned_it_never_is(self):
        clock = SimClock()
        sched = _scheduler(
            clock=clock,
            gpu=0,
            store=_store(cpu=2.0, cpu2=1.2),
            retry_every=2,
            retry_abandoned=False,
            deadline_s=1e6,
        )
        for k in range(12):
            _ready(sched, f"d{k}")
            (attempt,) = sched.commit_ready()
            assert attempt.plan.config == DETECT_CPU
            sched.finish(attempt.id, ok=True)


class TestContentFeedback:
    # detect on the CPU only, seeded at 2 s per unit; video v1 runs it at 4 s.

    @staticmethod
    def _sched(clock: SimClock, cpu2: float | None = None, **settings) -> Scheduler:
        """One detect op on the CPU (2 s), a second configuration when `cpu2`."""
        return _scheduler(
            clock=clock,
            gpu=0,
            store=_store(cpu=2.0, **({} if cpu2 is None else {"cpu2": cpu2})),
            deadline_s=1e6,
            **settings,
        )

    @staticmethod
    def _one(sched: Scheduler, clock: SimClock, inv_id: str, group: str, run_s):
        _ready(sched, inv_id, group=group)
        (attempt,) = sched.commit_ready()
        clock.advance(run_s)
        sched.finish(attempt.id, ok=True)
        return attempt

    def test_a_videos_factor_takes_half_of_each_error_by_hand(self):
        clock = SimClock()
        sched = self._sched(clock)
        first = self._one(sched, clock, "a1", "v1", 4.0)
        assert first.plan.predicted_s == pytest.approx(2.0)
        # error log 2, half of it to the factor: 2 ** (1/2). The drift moved by
        # 0.3 of the same error, which every video shares.
        assert sched.content_factor("detect", "v1") == pytest.approx(2**0.5)
        assert sched.content_factor("detect", "v2") == 1.0
        base_s = 2.0 * sched.store.ops["detect"].drift[CPU]
        base_s *= sched.store.profile("detect", DETECT_CPU).residual
        second = self._one(sched, clock, "a2", "v1", 4.0)
        assert second.plan.predicted_s == pytest.approx(base_s * 2**0.5)
        # the second error moves the factor's log by half of it too
        step = math.log(4.0 / second.plan.predicted_s)
        want = math.exp(math.log(2) / 2 + step / 2)
        assert sched.content_factor("detect", "v1") == pytest.approx(want)
        other = self._one(sched, clock, "b1", "v2", 2.0)
        drift = sched.store.ops["detect"].drift[CPU]
        assert drift > 1.0  # moved by v1's two errors, and by this one's
        assert other.plan.predicted_s < second.plan.predicted_s / 1.3

    def test_without_content_feedback_every_video_is_predicted_alike(self):
        clock = SimClock()
        sched = self._sched(clock, content_feedback=False)
        self._one(sched, clock, "a1", "v1", 4.0)
        assert sched.content_factor("detect", "v1") == 1.0
        _ready(sched, "a2", group="v1")
        _ready(sched, "b1", group="v2")
        plans = [a.plan.predicted_s for a in sched.commit_ready()]
        assert plans[0] == pytest.approx(plans[1])

    def test_a_re_try_teaches_its_residual_and_not_the_videos_factor(self):
        clock = SimClock()
        sched = self._sched(clock, cpu2=1.2, retry_every=2)
        attempts = [self._one(sched, clock, f"a{k}", "v1", 2.0) for k in range(8)]
        assert not any(a.plan.probe for a in attempts)
        factor = sched.content_factor("detect", "v1")
        probe = self._one(sched, clock, "a8", "v1", 5.0)
        assert probe.plan.probe and probe.plan.config == DETECT_CPU2
        assert sched.content_factor("detect", "v1") == factor

    def test_a_forgotten_video_leaves_no_factor(self):
        clock = SimClock()
        sched = self._sched(clock)
        self._one(sched, clock, "a1", "v1", 4.0)
        assert sched.content_factor("detect", "v1") > 1.0
        sched.drop_group("v1")  # done: its split and merge will never come
        assert sched.forget_group("v1")
        assert sched.content_factor("detect", "v1") == 1.0


class TestGroupsAndStaticSplit:
    def test_each_group_has_its_own_deadline_and_work(self):
        clock = SimClock()
        sched = _scheduler(clock=clock, target_scope="group", deadline_s=1e9)
        sched.open_group("v1", slo_s=6.0)
        sched.open_group("v2", slo_s=60.0)
        for group in ("v1", "v2"):
            sched.add(f"s-{group}", "split", 1.0, group)
        # split: own 0.5 s; ahead split 0.5 + detect (4 expected: 4 x 2 / 4 = 2 s
        # on the CPU or 4 x 0.5 / 1 on the GPU: 2 s) + merge 0.1 = 2.6 s
        assert sched.invocations["s-v1"].speculative.target_s == pytest.approx(
            6.0 * 0.5 / 2.6
        )
        assert sched.invocations["s-v2"].speculative.target_s == pytest.approx(
            60.0 * 0.5 / 2.6
        )
        assert sched.remaining_invocations("v1") == {
            "split": 1,
            "detect": 4,
            "merge": 1,
        }

    def test_static_split_gives_each_op_its_share_of_the_slo(self):
        clock = SimClock()
        shares = {"split": 0.1, "detect": 0.5, "merge": 0.4}
        sched = _scheduler(clock=clock, static_shares=shares, deadline_s=1e9)
        sched.open_group("v1", slo_s=10.0)
        inv = sched.add("d1", "detect", 1.0, "v1")
        clock.advance(4.0)  # time used upstream does not change a static share
        assert inv.speculative.target_s == pytest.approx(5.0)
        assert sched.plan(inv).target_s == pytest.approx(5.0)

    def test_start_up_delay_counts_in_the_prediction(self):
        sched = _scheduler(objective="latency")
        sched.set_startup(GPU, 3.0)
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        # GPU 0.5 + 3 s start-up = 3.5 s loses to the CPU's 2 s
        assert attempt.plan.config == DETECT_CPU

    def test_a_per_invocation_backend_counts_invocations_not_threads(self):
        store = ProfileStore("video")
        lam2 = Configuration.of(LAMBDA, {"memory_mb": 3538, "threads": 2})
        store.seed("detect", lam2, 1.0)
        p = _pipeline((LAMBDA,))
        backends = {
            CPU: BackendSlots(CPU, 1),
            LAMBDA: BackendSlots(LAMBDA, 2, per_invocation=True),
        }
        sched = _scheduler(store=store, pipeline=p, backends=backends)
        _ready(sched, "d0", "d1", "d2")
        assert len(sched.commit_ready()) == 2
        assert sched.used_slots()[LAMBDA] == 2
        # priced by memory: 1 s x 3538 / 1024 GB x the GB-second price + request
        lam = PRICES.price(LAMBDA)
        expected = 3538 / 1024 * lam.usd_per_gb_s + lam.usd_per_invocation
        assert sched.invocations["d0"].plan.cost_usd == pytest.approx(expected)


class TestRefusals:
    """A backend that refuses an attempt (throttled, no capacity) hands it back."""

    def test_a_refused_attempt_is_planned_again_elsewhere(self):
        sched = _scheduler(objective="latency")
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        assert first.plan.config == DETECT_GPU
        inv = sched.release(first.id, error="no GPU capacity", avoid=(GPU,))
        assert inv.state is State.READY and inv.failures == 0
        assert sched.used_slots() == {CPU: 0, GPU: 0}
        (second,) = sched.commit_ready()
        assert (second.kind, second.plan.config) == ("replan", DETECT_CPU)

    def test_a_cooling_backend_is_not_planned_until_its_time(self):
        clock = SimClock()
        sched = _scheduler(objective="latency", clock=clock)
        sched.mark_unavailable(GPU, until_s=10.0)
        assert sched.available_backends() == [CPU]
        _ready(sched, "d1")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_CPU
        clock.advance(10.0)
        assert sched.available_backends() == [CPU, GPU]
        _ready(sched, "d2")
        (attempt,) = sched.commit_ready()
        assert attempt.plan.config == DETECT_GPU


class TestCallerDecides:
    """The runner's side: hold a failed invocation, then resume or give up."""

    def test_a_held_failure_waits_for_the_caller(self):
        sched = _scheduler()
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="boom", hold=True)
        inv = sched.invocations["d1"]
        assert inv.state is State.HELD and sched.queued() == 0
        assert sched.remaining_invocations("v1")["detect"] == 1  # still expected
        assert sched.resume("d1")
        (retry,) = sched.commit_ready()
        assert (retry.kind, retry.number) == ("retry", 2)
        sched.finish(retry.id, ok=True)
        assert inv.state is State.DONE and inv.winner is retry

    def test_a_held_deterministic_failure_cancels_its_duplicate(self):
        clock = SimClock()
        sched = _scheduler(deadline_s=4.56, clock=clock)
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        clock.advance(3.3)
        sched.poll()
        (dup,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="corrupt", retriable=False, hold=True)
        assert sched.take_cancelled() == [dup]
        assert sched.invocations["d1"].state is State.HELD

    def test_give_up_ends_it_and_resume_no_longer_applies(self):
        sched = _scheduler()
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.finish(first.id, ok=False, error="boom", hold=True)
        inv = sched.give_up("d1", "the task's retries are used up")
        assert inv.state is State.FAILED and not sched.resume("d1")
        assert sched.remaining_invocations("v1")["detect"] == 0

    def test_settle_ends_it_as_done_without_learning(self):
        sched = _scheduler()
        _ready(sched, "d1")
        (first,) = sched.commit_ready()
        sched.withdraw(first.id)  # its task run ended before the body ran
        assert sched.used_slots() == {CPU: 0, GPU: 0}
        inv = sched.settle("d1")
        assert inv.state is State.DONE
        assert sched.store.profile("detect", first.plan.config).observations == 0
        assert first.cost_usd == 0.0
