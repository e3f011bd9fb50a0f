"""The scheduler's hot paths give what their plain forms give.

Pricing, picking, the weight of work ahead and the freshness key of a plan are
written out for speed in `core.scheduler`; each test here computes the same thing
the plain way (`Option.usd`, `min` with a key, `_clearing_soonest`, `_reuse_key`)
and checks that both agree, including on ties and after the options are rebuilt.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import (
    BackendSlots,
    Scheduler,
    Settings,
    _by_cost,
    _cheapest_fitting,
    _fastest_s,
)

LAMBDA, GPU = "lambda", "ecs-gpu"
SPLIT = Configuration.of(LAMBDA, {"memory_mb": 1024})
DETECT_SMALL = Configuration.of(LAMBDA, {"memory_mb": 1024})
DETECT_BIG = Configuration.of(LAMBDA, {"memory_mb": 3008})
DETECT_GPU = Configuration.of(GPU, {"call_batch": 4})
MERGE = Configuration.of(LAMBDA, {"memory_mb": 1024})


def _pipeline() -> Pipeline:
    p = Pipeline("video")
    p.add_op(OpSpec("split", unit="video", backends=(LAMBDA,)))
    p.add_op(OpSpec("detect", backends=(LAMBDA, GPU)))
    p.add_op(OpSpec("merge", unit="video", gather=True, backends=(LAMBDA,)))
    p.add_edge("split", "detect", fanout=6)
    p.add_edge("detect", "merge")
    return p


def _store() -> ProfileStore:
    store = ProfileStore("video")
    store.seed("split", SPLIT, 0.3)
    store.seed("detect", DETECT_SMALL, 2.1234567, fixed_s=0.35)
    store.seed("detect", DETECT_BIG, 0.9876543, accuracy=0.99)
    store.seed("detect", DETECT_GPU, 0.1234567, fixed_s=0.8)
    store.seed("merge", MERGE, 0.05)
    return store


def _scheduler(store: ProfileStore, clock: SimClock, **switches) -> Scheduler:
    backends = {
        LAMBDA: BackendSlots(LAMBDA, 50, per_invocation=True),
        GPU: BackendSlots(GPU, 2, startup_s=3.0),
    }
    return Scheduler(
        _pipeline(),
        store,
        PriceCatalog.load(),
        backends,
        Settings(deadline_s=60.0, **{"weight_basis": "robust", **switches}),
        clock=clock,
    )


def _started(clock: SimClock, **switches) -> tuple[Scheduler, list[str]]:
    """A scheduler whose split ran: six detect invocations wait, some committed."""
    sched = _scheduler(_store(), clock, **switches)
    sched.add("s", "split", 1.0, "v")
    sched.mark_ready("s")
    sched.commit_ready()
    clock.advance(0.4)
    sched.finish("s", ok=True)
    ids = [f"d{i}" for i in range(6)]
    for i, inv_id in enumerate(ids):
        sched.add(inv_id, "detect", 1.0 + 0.1 * i, "v", speculate=False)
    for inv_id in ids:
        sched.mark_ready(inv_id)
    return sched, ids


def _expected_row(
    sched: Scheduler, inv, option, wait_s: float, width: float, share: float = 1.0
):
    """One candidate priced the plain way: `Option.usd` and `_margin` (its excess
    scaled by the op's share of its path's pooled tail)."""
    run_s = option.run_s(inv.units * option.call_batch)
    margin = 1.0 + (sched._margin(inv.op, option, width) - 1.0) * share
    latency_s = sched._startup[option.backend] + run_s * margin + wait_s * margin
    return latency_s, option.usd(run_s), run_s


def test_rows_price_every_candidate_as_option_usd_and_margin_do():
    clock = SimClock()
    sched, ids = _started(clock)
    inv = sched.invocations[ids[-1]]
    ctx = sched._context(inv.group)
    rows = sched._rows(inv, ctx, (), at_commit=False)
    assert {r[2].config for r in rows} >= {DETECT_SMALL, DETECT_BIG, DETECT_GPU}
    width = ctx.remaining[sched._index["detect"]]
    ready = sched._ready["detect"] + (0 if inv.queued_on else 1)
    for latency_s, cost_usd, option, run_s, fill, fill_wait_s in rows:
        if fill_wait_s > 0:
            continue  # a row that waits for its batch to fill is checked below
        slots = 1 if option.backend == LAMBDA else option.slots
        wait_s = sched._slot_wait_s(option.backend, slots, inv, False)
        share = ctx.shares.get(inv.op, 1.0)
        want_s, want_usd, want_run_s = _expected_row(
            sched, inv, option, wait_s, width, share
        )
        assert run_s == want_run_s
        assert latency_s == want_s
        assert fill == min(option.call_batch, ready)
        assert cost_usd == want_usd / fill


def test_lambda_rows_round_up_to_the_billing_granularity():
    clock = SimClock()
    sched, ids = _started(clock)
    inv = sched.invocations[ids[0]]
    rows = sched._rows(inv, sched._context(inv.group), (), at_commit=False)
    (row,) = [r for r in rows if r[2].config == DETECT_SMALL]
    option = row[2]
    assert option.granularity_s > 0
    billed_s = -(-row[3] // option.granularity_s) * option.granularity_s
    assert billed_s > row[3]  # the run time is not a whole number of steps
    assert row[1] == billed_s * option.usd_per_s + option.usd_fee


def test_rows_follow_the_menu_read_again_after_a_configuration_is_seeded():
    clock = SimClock()
    store = _store()
    sched = _scheduler(store, clock)
    inv = sched.add("d0", "detect", 1.0, "v")
    before = {r[2].config for r in sched._rows(inv, sched._context("v"), (), False)}
    assert DETECT_SMALL in before
    cheap = Configuration.of(LAMBDA, {"memory_mb": 512})
    store.seed("detect", cheap, 2.5)
    sched._refresh("detect")  # as every `MENU_REFRESH` observations of the op
    after = {r[2].config for r in sched._rows(inv, sched._context("v"), (), False)}
    assert cheap not in before
    assert cheap in after


def test_refreshed_menu_prices_live_profiles():
    clock = SimClock()
    store = _store()
    sched = _scheduler(store, clock)
    inv = sched.add("d0", "detect", 1.0, "v")
    old = {r[2].config: r[3] for r in sched._rows(inv, sched._context("v"), (), False)}
    store.ops["detect"].drift[LAMBDA] = 2.0
    sched._refresh("detect")
    new = {r[2].config: r[3] for r in sched._rows(inv, sched._context("v"), (), False)}
    assert new[DETECT_SMALL] == 2.0 * old[DETECT_SMALL]
    assert new[DETECT_GPU] == old[DETECT_GPU]


_rows_strategy = st.lists(
    st.tuples(
        st.sampled_from([1.0, 2.0, 3.0, 5.0]),
        st.sampled_from([0.1, 0.2, 0.3]),
        st.sampled_from([DETECT_SMALL, DETECT_BIG, DETECT_GPU]),
    ),
    min_size=1,
    max_size=8,
)


class _Opt:
    def __init__(self, config: Configuration) -> None:
        self.config = config


@settings(max_examples=200, deadline=None)
@given(_rows_strategy, st.sampled_from([0.5, 2.0, 3.0, 10.0]))
def test_cheapest_fitting_is_min_by_cost_over_the_fitting_rows(raw, target_s):
    rows = [(lat, usd, _Opt(cfg), 1.0, 1, 0.0) for lat, usd, cfg in raw]
    fitting = [r for r in rows if r[0] <= target_s]
    got = _cheapest_fitting(rows, target_s)  # type: ignore[arg-type]
    if not fitting:
        assert got is None
    else:
        assert got is min(fitting, key=_by_cost)  # type: ignore[arg-type]
    assert _fastest_s(rows) == min(r[0] for r in rows)  # type: ignore[arg-type]


def test_stage_weight_is_the_option_clearing_soonest():
    clock = SimClock()
    sched, _ = _started(clock, fanout_quantile=True)
    for remaining in (0.5, 1.0, 3.0, 6.0, 40.0):
        sched._weight_options("detect")  # the cached list the fast path reads
        stage_s, option, margin = sched._stage("detect", remaining, 1.0)
        plain_s, plain = sched._clearing_soonest("detect", remaining, 1.0)
        assert option is plain
        assert plain is not None
        assert margin == sched._margin("detect", plain, max(remaining, 1.0))
        assert stage_s == plain_s * margin


def test_fresh_key_of_a_ready_invocation_is_its_reuse_key():
    clock = SimClock()
    sched, ids = _started(clock)
    for inv_id in ids:
        inv = sched.invocations[inv_id]
        if inv.fresh is None:
            continue
        ctx = sched._context(inv.group)
        assert inv.fresh[0] == sched._reuse_key(inv, ctx, (), False, False)


def test_fresh_key_is_computed_again_when_options_change_during_the_plan():
    clock = SimClock()
    store = _store()
    sched = _scheduler(store, clock)
    sched.add("d0", "detect", 1.0, "v", speculate=False)
    store.seed("detect", Configuration.of(LAMBDA, {"memory_mb": 512}), 2.5)
    version = sched._weights_version
    sched.mark_ready("d0")  # its plan rebuilds the options: a new context version
    inv = sched.invocations["d0"]
    assert sched._weights_version > version
    assert inv.fresh is not None
    ctx = sched._context(inv.group)
    assert inv.fresh[0] == sched._reuse_key(inv, ctx, (), False, False)
    assert inv.fresh[0][2] == ctx.version
