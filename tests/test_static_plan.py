"""The best static plan: hand-computed cases and a brute-force oracle."""

from __future__ import annotations

import itertools
import random

import pytest

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import BackendPrice, PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.static_plan import best_static_plan

CPU = "local-cpu"
GPU = "local-gpu"
A = Configuration.of(CPU, {"mode": "a", "threads": 1})  # 1.0 s per unit, 1 slot
B = Configuration.of(CPU, {"mode": "b", "threads": 2})  # 0.6 s per unit, 2 slots
PLAIN = Configuration.of(CPU, {})


def _pipeline(backends=(CPU,)) -> Pipeline:
    p = Pipeline("toy")
    p.add_op(OpSpec("split", unit="video"))
    p.add_op(OpSpec("work", knobs={"mode": ("a", "b")}, backends=backends))
    p.add_op(OpSpec("total", unit="video", gather=True))
    p.add_edge("split", "work", fanout=4)
    p.add_edge("work", "total")
    return p


def _prices(cpu=1.0, gpu=1.0) -> PriceCatalog:
    return PriceCatalog({CPU: BackendPrice(cpu), GPU: BackendPrice(gpu)})


def _store() -> ProfileStore:
    store = ProfileStore("toy")
    store.seed("split", PLAIN, 0.5)
    store.seed("total", PLAIN, 0.5)
    store.seed("work", A, 1.0)
    store.seed("work", B, 0.6)
    return store


def _records(config=A, videos=("g",), work_per_video=4, units=10.0):
    out = []
    for v in videos:
        out.append(
            {
                "op": "split",
                "group": v,
                "units": 1.0,
                "backend": CPU,
                "configuration": {},
            }
        )
        for _ in range(work_per_video):
            out.append(
                {
                    "op": "work",
                    "group": v,
                    "units": units,
                    "backend": config.backend,
                    "configuration": config.as_dict(),
                }
            )
        out.append(
            {
                "op": "total",
                "group": v,
                "units": 1.0,
                "backend": CPU,
                "configuration": {},
            }
        )
    return out


def _plan(slo_s, capacity=8, records=None, **kw):
    return best_static_plan(
        _records() if records is None else records,
        pipeline=_pipeline(),
        store=_store(),
        prices=_prices(),
        capacity={CPU: capacity},
        slo_s=slo_s,
        **kw,
    )


def test_a_loose_slo_takes_the_cheapest_configuration():
    # A: 4 invocations x 10 units x 1 s x 1 slot x $1 = $40, plus $0.5 + $0.5.
    # Bound: max(41 slot-s / 8 slots, 0.5 + 10 + 0.5 chain) = 11 s.
    plan = _plan(slo_s=12)
    assert plan.configurations["work"] == A.key
    assert plan.cost_usd == pytest.approx(41.0)
    assert plan.latency_bound_s == pytest.approx(11.0)
    assert plan.meets_slo and plan.exact


def test_a_tighter_slo_pays_for_the_faster_configuration():
    # B: 4 x 10 x 0.6 s x 2 slots = 48 slot-s, $48 + $1; chain 0.5 + 6 + 0.5 = 7 s.
    plan = _plan(slo_s=8)
    assert plan.configurations["work"] == B.key
    assert plan.cost_usd == pytest.approx(49.0)
    assert plan.latency_bound_s == pytest.approx(7.0)


def test_when_no_plan_fits_the_fastest_is_reported_as_missing():
    plan = _plan(slo_s=5)
    assert plan.configurations["work"] == B.key and not plan.meets_slo


def test_few_slots_make_the_pool_bound_decide():
    # Two slots: A's pool bound is 41 / 2 = 20.5 s and B's 49 / 2 = 24.5 s.
    plan = _plan(slo_s=22, capacity=2)
    assert plan.configurations["work"] == A.key
    assert plan.latency_bound_s == pytest.approx(20.5)


def test_the_accuracy_floor_removes_configurations():
    store = _store()
    store.seed("work", A, 1.0, accuracy=0.5)
    plan = best_static_plan(
        _records(),
        pipeline=_pipeline(),
        store=store,
        prices=_prices(),
        capacity={CPU: 8},
        slo_s=100,
        accuracy_floor=0.9,
    )
    assert plan.configurations["work"] == B.key


def test_the_runs_own_choices_are_priced_with_the_same_model():
    assert _plan(slo_s=12, records=_records(config=B)).run_cost_same_model_usd == (
        pytest.approx(49.0)
    )


def test_no_invocations_give_no_plan():
    assert _plan(slo_s=10, records=[]) is None


def _oracle(records, store, prices, capacity, slo_s):
    """Brute force written independently: every static plan, bounded the same way."""
    ops = sorted({r["op"] for r in records})
    pools = {op: store.configurations(op) for op in ops}
    best = None
    for combo in itertools.product(*(pools[op] for op in ops)):
        plan = dict(zip(ops, combo, strict=True))
        cost, work, chains = 0.0, {}, {}
        longest = {}
        for r in records:
            c = plan[r["op"]]
            run_s = store.predict_s_per_unit(r["op"], c) * r["units"]
            cost += prices.cost_usd(c.backend, run_s, c.slots)
            work[c.backend] = work.get(c.backend, 0.0) + run_s * c.slots
            key = (r["group"], r["op"])
            longest[key] = max(longest.get(key, 0.0), run_s)
        for g in {r["group"] for r in records}:
            middle = max(longest.get((g, "work"), 0.0), 0.0)
            chains[g] = longest[(g, "split")] + middle + longest[(g, "total")]
        bound = max([w / capacity[b] for b, w in work.items()] + list(chains.values()))
        if bound <= slo_s and (best is None or cost < best - 1e-12):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_two_backend_cases(seed):
    rng = random.Random(seed)
    store = ProfileStore("toy")
    store.seed("split", PLAIN, rng.uniform(0.1, 1))
    store.seed("total", PLAIN, rng.uniform(0.1, 1))
    for i in range(rng.randint(2, 6)):
        backend = rng.choice((CPU, GPU))
        config = Configuration.of(
            backend, {"mode": f"m{i}", "threads": rng.choice((1, 2))}
        )
        store.seed("work", config, rng.uniform(0.05, 1.0))
    records = []
    for v in range(rng.randint(1, 3)):
        records += _records(
            videos=(f"v{v}",),
            work_per_video=rng.randint(1, 5),
            units=rng.uniform(1, 20),
        )
    prices = _prices(cpu=rng.uniform(0.5, 2), gpu=rng.uniform(2, 10))
    capacity = {CPU: rng.randint(1, 4), GPU: 1}
    slo_s = rng.uniform(2, 60)
    plan = best_static_plan(
        records,
        pipeline=_pipeline(backends=(CPU, GPU)),
        store=store,
        prices=prices,
        capacity=capacity,
        slo_s=slo_s,
    )
    expected = _oracle(records, store, prices, capacity, slo_s)
    if expected is None:
        assert not plan.meets_slo
    else:
        assert plan.meets_slo and plan.cost_usd == pytest.approx(expected)
