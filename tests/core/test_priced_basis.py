"""The priced weight basis: the time left goes where it saves the most, by hand.

The pipeline is ``a -> b``, one invocation each, on a local CPU with slots to spare, so
a stage's seconds are one invocation's. A configuration with ``threads=t`` holds `t`
slots and costs `t` times the slot price per second (``p`` below):

* ``a``: 1 thread 1.0 s (1.0p), 2 threads 0.9 s (1.8p): speed is dear, 8p per second;
* ``b``: 1 thread 4.0 s (4.0p), 2 threads 2.5 s (5.0p): speed is cheap, 0.67p per s.

With mean latencies (no tail margin), the ladder of a's path starts at the fastest
plan, a2 + b2 = 3.4 s; its first step gives up a's dear speed (a1 + b2 = 3.5 s), its
second b's (a1 + b1 = 5.0 s). The robust basis instead splits the time left in
proportion to the fastest seconds, a2 0.9 of 3.4.
"""

from __future__ import annotations

import pytest

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import BackendSlots, Scheduler, Settings

CPU = "local-cpu"
A1, A2 = Configuration.of(CPU, {"threads": 1}), Configuration.of(CPU, {"threads": 2})
B1, B2 = Configuration.of(CPU, {"threads": 1}), Configuration.of(CPU, {"threads": 2})
B4 = Configuration.of(CPU, {"threads": 4})


def _scheduler(deadline_s: float, *, b_four: bool = False, **switches) -> Scheduler:
    pipeline = Pipeline("chain")
    pipeline.add_op(OpSpec("a", unit="video", knobs={"threads": (1, 2)}))
    pipeline.add_op(OpSpec("b", unit="video", knobs={"threads": (1, 2, 4)}))
    pipeline.add_edge("a", "b")
    store = ProfileStore("chain")
    store.seed("a", A1, 1.0)
    store.seed("a", A2, 0.9)
    if b_four:  # b2 lies above the line from b4 to b1: off the hull
        store.seed("b", B4, 2.0)
        store.seed("b", B2, 3.2)
    else:
        store.seed("b", B2, 2.5)
    store.seed("b", B1, 4.0)
    switches.setdefault("fanout_quantile", False)
    return Scheduler(
        pipeline,
        store,
        PriceCatalog.load(),
        {CPU: BackendSlots(CPU, 16)},
        Settings(deadline_s=deadline_s, **switches),
        clock=SimClock(),
    )


def test_the_shipped_default_is_the_priced_basis():
    assert Settings(10.0).weight_basis == "priced"


def test_slack_for_one_step_goes_to_the_stage_whose_speed_is_dear():
    # 3.7 s fit the first step (3.5 s) but not the second (5.0 s): a stands at
    # a1, target 3.7 x 1.0 / 3.5 = 1.057 s, and a1 (1.0 s) fits it.
    priced = _scheduler(3.7).add("a", "a", 1.0, "v")
    assert priced.speculative.target_s == pytest.approx(3.7 * 1.0 / 3.5)
    assert priced.speculative.config == A1
    # Robust: 3.7 x 0.9 / 3.4 = 0.979 s, which only the dear a2 fits.
    robust = _scheduler(3.7, weight_basis="robust").add("a", "a", 1.0, "v")
    assert robust.speculative.target_s == pytest.approx(3.7 * 0.9 / 3.4)
    assert robust.speculative.config == A2
    assert priced.speculative.cost_usd < robust.speculative.cost_usd / 1.7


def test_too_little_slack_for_a_step_keeps_the_fastest_plan():
    # 3.45 s: between the fastest plan (3.4 s) and the first step (3.5 s).
    inv = _scheduler(3.45).add("a", "a", 1.0, "v")
    assert inv.speculative.target_s == pytest.approx(3.45 * 0.9 / 3.4)
    assert inv.speculative.config == A2


def test_slack_beyond_the_cheapest_plan_is_shared_in_proportion():
    # 6 s: past the last step (5.0 s); a stands at a1, 6 x 1.0 / 5.0 = 1.2 s.
    inv = _scheduler(6.0).add("a", "a", 1.0, "v")
    assert inv.speculative.target_s == pytest.approx(1.2)
    assert inv.speculative.config == A1


def test_less_time_than_the_fastest_plan_shares_it_like_the_robust_basis():
    inv = _scheduler(2.0).add("a", "a", 1.0, "v")
    assert inv.speculative.target_s == pytest.approx(2.0 * 0.9 / 3.4)
    assert inv.speculative.predicted_miss


def test_the_last_stage_takes_its_cheap_configuration_once_its_slack_allows():
    # b alone on its path: b2 (2.5 s) below 4.0 s left, b1 (4.0 s) from 4.0 s.
    assert _scheduler(3.0).add("b", "b", 1.0, "v").speculative.config == B2
    inv = _scheduler(4.0).add("b", "b", 1.0, "v")
    assert inv.speculative.target_s == pytest.approx(4.0)
    assert inv.speculative.config == B1


def test_a_configuration_off_the_hull_sets_no_step_but_may_still_fit():
    # b4 2.0 s (8p), b2 3.2 s (6.4p), b1 4.0 s (4p): b2 saves 1.33p per second
    # over b4 and b1 3p per second over b2, so b2 is no rung; with 3.5 s left b
    # stands at b4 (2.0 s: target 3.5 s), and the cheapest that fits is b2.
    sched = _scheduler(3.5, b_four=True)
    inv = sched.add("b", "b", 1.0, "v")
    assert inv.speculative.target_s == pytest.approx(3.5)
    assert inv.speculative.config == B2


def test_pooled_tails_plan_each_step_at_the_root_of_the_squares():
    # With a tail margin m on every option (one spread, one width), each stage's
    # excess is (m - 1) x its seconds; the ladder's step a1 + b2 is planned at
    # 1.0 + 2.5 + (m - 1) x sqrt(1.0^2 + 2.5^2), and a1 takes its share of the
    # pooled tail, 1.0 / sqrt(1.0^2 + 2.5^2) of it.
    sched = _scheduler(4.6, fanout_quantile=True)
    margin = sched._margin("a", sched._menu("a")[0], 1.0)
    assert margin > 1.0
    first = 3.4 + (margin - 1.0) * (0.9**2 + 2.5**2) ** 0.5
    step = 3.5 + (margin - 1.0) * (1.0**2 + 2.5**2) ** 0.5
    assert first < step <= 4.6 < 5.0 + (margin - 1.0) * (1.0**2 + 4.0**2) ** 0.5
    inv = sched.add("a", "a", 1.0, "v")
    share = 1.0 / (1.0**2 + 2.5**2) ** 0.5
    mine = 1.0 * (1.0 + (margin - 1.0) * share)
    assert inv.speculative.target_s == pytest.approx(4.6 * mine / step)


def test_a_shared_hull_is_priced_again_once_its_op_learned():
    # Two videos with their own SLOs, in the same state when planned: the second
    # must see what the first one's invocation of `a` taught, as a scheduler
    # started from the corrected profiles does.
    clock = SimClock()
    sched = _scheduler(1e9, target_scope="group")
    sched.clock = clock
    sched.open_group("v1", slo_s=4.0)
    first = sched.add("a1", "a", 1.0, "v1")
    sched.mark_ready("a1")
    assert [a.id for a in sched.commit_ready()] == ["a1"]
    clock.advance(2.5)  # a1 ran 2.5x its profile
    sched.finish("a1", ok=True)

    sched.open_group("v2", slo_s=4.0)
    second = sched.add("a2", "a", 1.0, "v2")

    fresh = Scheduler(
        sched.pipeline,
        ProfileStore.from_dict(sched.store.to_dict()),
        PriceCatalog.load(),
        {CPU: BackendSlots(CPU, 16)},
        Settings(deadline_s=1e9, fanout_quantile=False, target_scope="group"),
        clock=SimClock(clock.now()),
    )
    fresh.open_group("v2", slo_s=4.0)
    alone = fresh.add("a2", "a", 1.0, "v2")
    assert second.speculative.target_s != pytest.approx(first.speculative.target_s)
    assert second.speculative.target_s == pytest.approx(alone.speculative.target_s)
    assert second.speculative.config == alone.speculative.config
