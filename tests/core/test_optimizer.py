"""Tests of `llama_prefect.core.optimizer`: pricing candidates and choosing one."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.core.optimizer import Candidate, choose, price_candidates
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError, ProfileError


def _cand(name: str, predicted_s: float, cost_usd: float, accuracy: float = 1.0):
    return Candidate(
        Configuration.of("local-cpu", {"name": name}), predicted_s, cost_usd, accuracy
    )


SLOW_CHEAP = _cand("slow_cheap", 10.0, 1.0, accuracy=0.9)
MIDDLE = _cand("middle", 5.0, 2.0, accuracy=0.95)
FAST_PRICEY = _cand("fast_pricey", 2.0, 5.0, accuracy=1.0)
CHEAPEST_INACCURATE = _cand("cheapest_inaccurate", 8.0, 0.5, accuracy=0.6)
ALL = [SLOW_CHEAP, MIDDLE, FAST_PRICEY, CHEAPEST_INACCURATE]


class TestChooseCost:
    def test_cheapest_that_fits(self):
        # target 6 s: MIDDLE (5 s, $2) and FAST_PRICEY (2 s, $5) fit; $2 < $5
        choice = choose(ALL, 6.0)
        assert choice.candidate == MIDDLE
        assert not choice.predicted_miss
        assert not choice.below_floor
        assert choice.considered == 4
        assert choice.target_s == 6.0

    def test_loose_target_takes_the_overall_cheapest(self):
        # target 9 s: all but SLOW_CHEAP (10 s) fit; CHEAPEST_INACCURATE $0.5 wins
        assert choose(ALL, 9.0).candidate == CHEAPEST_INACCURATE

    def test_exact_fit_counts_as_fitting(self):
        # MIDDLE predicts 5 s, exactly the target
        choice = choose(ALL, 5.0)
        assert choice.candidate == MIDDLE
        assert not choice.predicted_miss

    def test_none_fits_takes_the_fastest_and_records_a_miss(self):
        choice = choose(ALL, 1.0)
        assert choice.candidate == FAST_PRICEY  # 2 s is the fastest
        assert choice.predicted_miss

    def test_equal_costs_break_ties_by_latency(self):
        a = _cand("a", 4.0, 1.0)
        b = _cand("b", 3.0, 1.0)
        assert choose([a, b], 10.0).candidate == b


class TestOtherObjectives:
    def test_latency_takes_the_fastest_whatever_it_costs(self):
        choice = choose(ALL, 100.0, objective="latency")
        assert choice.candidate == FAST_PRICEY
        assert not choice.predicted_miss

    def test_cheapest_ignores_the_target(self):
        choice = choose(ALL, 1.0, objective="cheapest")
        assert choice.candidate == CHEAPEST_INACCURATE
        assert choice.predicted_miss  # 8 s > 1 s

    def test_callable_objective_gets_eligible_candidates_and_target(self):
        seen = {}

        def priciest(candidates, target_s):
            seen["names"] = sorted(c.config.as_dict()["name"] for c in candidates)
            seen["target_s"] = target_s
            return max(candidates, key=lambda c: c.cost_usd)

        choice = choose(ALL, 7.0, objective=priciest, accuracy_floor=0.9)
        assert choice.candidate == FAST_PRICEY
        assert seen == {
            "names": ["fast_pricey", "middle", "slow_cheap"],
            "target_s": 7.0,
        }

    def test_unknown_objective_names_the_known_ones(self):
        with pytest.raises(ConfigurationError, match="cost.*latency.*cheapest"):
            choose(ALL, 5.0, objective="fastest")  # type: ignore[arg-type]

    def test_no_candidates_is_a_profile_error(self):
        with pytest.raises(ProfileError, match="llama-prefect profile"):
            choose([], 5.0)


class TestAccuracyFloor:
    def test_floor_excludes_inaccurate_candidates(self):
        # target 9 s, floor 0.8: CHEAPEST_INACCURATE (0.6) is out, SLOW_CHEAP does not
        # fit; MIDDLE $2 beats FAST_PRICEY $5.
        choice = choose(ALL, 9.0, accuracy_floor=0.8)
        assert choice.candidate == MIDDLE
        assert not choice.below_floor

    def test_floor_applies_to_cheapest_too(self):
        # floor 0.92: SLOW_CHEAP (0.9) and CHEAPEST_INACCURATE (0.6) are out
        choice = choose(ALL, 1.0, objective="cheapest", accuracy_floor=0.92)
        assert choice.candidate == MIDDLE

    def test_floor_reached_exactly_is_eligible(self):
        choice = choose(ALL, 100.0, objective="cheapest", accuracy_floor=0.9)
        assert choice.candidate == SLOW_CHEAP

    def test_below_floor_falls_back_to_the_most_accurate(self):
        a = _cand("a", 1.0, 1.0, accuracy=0.5)
        b = _cand("b", 9.0, 3.0, accuracy=0.7)
        c = _cand("c", 4.0, 2.0, accuracy=0.7)
        choice = choose([a, b, c], 5.0, accuracy_floor=0.99)
        # b and c share the best accuracy 0.7; of them c fits 5 s and is cheaper
        assert choice.candidate == c
        assert choice.below_floor
        assert choice.considered == 3


class TestPriceCandidates:
    @staticmethod
    def _raw_prices() -> dict:
        text = resources.files("llama_prefect.data").joinpath("prices.json")
        return json.loads(text.read_text(encoding="utf-8"))["backends"]

    @staticmethod
    def _store() -> ProfileStore:
        store = ProfileStore("p")
        store.seed("detect", Configuration.of("local-cpu", {"threads": 1}), 0.2)
        store.seed("detect", Configuration.of("local-cpu", {"threads": 2}), 0.12)
        store.seed("detect", Configuration.of("local-gpu", {}), 0.05, accuracy=0.97)
        store.seed("detect", Configuration.of("lambda", {}), 0.3)
        return store

    def test_prices_follow_the_price_file(self):
        raw = self._raw_prices()
        cpu = raw["local-cpu"]["usd_per_slot_s"]
        gpu = raw["local-gpu"]["usd_per_slot_s"]
        lam = raw["lambda"]["usd_per_slot_s"]
        lam_fee = raw["lambda"]["usd_per_invocation"]

        cands = price_candidates(
            self._store(),
            PriceCatalog.load(),
            "detect",
            10.0,
            backends=["local-cpu", "local-gpu", "lambda"],
            startup_s={"lambda": 0.25, "local-gpu": 1.5},
        )
        got = {c.config.key: c for c in cands}

        # cpu, 1 thread: run 0.2 x 10 = 2 s, no start-up; cost 2 x 1 slot x price
        one = got["local-cpu|threads=1"]
        assert one.predicted_s == pytest.approx(2.0)
        assert one.cost_usd == pytest.approx(2.0 * 1 * cpu)
        # cpu, 2 threads: run 0.12 x 10 = 1.2 s on 2 slots
        two = got["local-cpu|threads=2"]
        assert two.predicted_s == pytest.approx(1.2)
        assert two.cost_usd == pytest.approx(1.2 * 2 * cpu)
        # gpu: run 0.05 x 10 = 0.5 s, predicted 0.5 + 1.5 start-up; start-up not billed
        g = got["local-gpu|"]
        assert g.predicted_s == pytest.approx(2.0)
        assert g.cost_usd == pytest.approx(0.5 * 1 * gpu)
        assert g.accuracy == 0.97
        # lambda: run 0.3 x 10 = 3 s, predicted 3.25; plus the request fee
        la = got["lambda|"]
        assert la.predicted_s == pytest.approx(3.25)
        assert la.cost_usd == pytest.approx(3.0 * 1 * lam + lam_fee)
        assert lam_fee > 0

    def test_only_backends_that_can_take_it(self):
        cands = price_candidates(
            self._store(), PriceCatalog.load(), "detect", 1.0, backends=["local-cpu"]
        )
        assert {c.config.backend for c in cands} == {"local-cpu"}
        assert len(cands) == 2

    def test_configs_restrict_the_pool(self):
        only = Configuration.of("local-gpu", {})
        cands = price_candidates(
            self._store(),
            PriceCatalog.load(),
            "detect",
            1.0,
            backends=["local-cpu", "local-gpu"],
            configs=[only],
        )
        assert [c.config for c in cands] == [only]

    def test_prediction_uses_the_corrected_profile(self):
        store = self._store()
        config = Configuration.of("local-gpu", {})
        store.observe("detect", config, 1.0, 0.1)  # twice the seed of 0.05 s per unit
        expected_per_unit = store.predict_s_per_unit("detect", config)
        assert expected_per_unit > 0.05
        (cand,) = price_candidates(
            store, PriceCatalog.load(), "detect", 4.0, backends=["local-gpu"]
        )
        assert cand.predicted_s == pytest.approx(expected_per_unit * 4.0)


# -- oracle: random candidate sets against brute force ---------------------------------


@st.composite
def _candidate_sets(draw):
    n = draw(st.integers(1, 12))
    cands = [
        Candidate(
            Configuration.of("local-cpu", {"i": i}),
            predicted_s=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0])),
            cost_usd=draw(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8, 1.3])),
            accuracy=draw(st.sampled_from([0.5, 0.7, 0.8, 0.9, 1.0])),
        )
        for i in range(n)
    ]
    target_s = draw(st.sampled_from([0.0, 0.7, 1.0, 2.5, 5.0, 20.0]))
    floor = draw(st.sampled_from([0.0, 0.75, 0.9, 0.95, 1.1]))
    return cands, target_s, floor


@settings(max_examples=300, deadline=None, database=None)
@given(_candidate_sets())
def test_cost_objective_matches_brute_force(case):
    cands, target_s, floor = case

    eligible = [c for c in cands if c.accuracy >= floor]
    below_floor = not eligible
    if below_floor:
        top = max(c.accuracy for c in cands)
        eligible = [c for c in cands if c.accuracy == top]
    fitting = [c for c in eligible if c.predicted_s <= target_s]

    choice = choose(cands, target_s, objective="cost", accuracy_floor=floor)
    chosen = choice.candidate

    assert chosen in eligible
    assert choice.below_floor == below_floor
    if fitting:
        assert chosen in fitting
        assert chosen.cost_usd == min(c.cost_usd for c in fitting)
        assert not choice.predicted_miss
    else:
        assert chosen.predicted_s == min(c.predicted_s for c in eligible)
        assert choice.predicted_miss


def test_a_fixed_part_is_priced_once_per_invocation() -> None:
    from llama_prefect.core.options import build_options

    store = ProfileStore("p")
    config = Configuration.of("local-cpu", {"threads": 1})
    store.seed("detect", config, 0.2, fixed_s=0.5)
    prices = PriceCatalog.load()
    cpu = prices.price("local-cpu").usd_per_slot_s

    (cand,) = price_candidates(store, prices, "detect", 10.0, backends=["local-cpu"])

    # run 0.5 + 0.2 x 10 = 2.5 s on 1 slot
    assert cand.predicted_s == pytest.approx(2.5)
    assert cand.cost_usd == pytest.approx(2.5 * cpu)
    (option,) = build_options(
        store, prices, "detect", {"local-cpu": 2}, {"local-cpu": False}
    )
    assert option.run_s(10.0) == pytest.approx(2.5)
    assert option.s_per_unit() == pytest.approx(0.2)
    # feedback reaches the option at once: drift 2 doubles the whole call
    store.ops["detect"].drift["local-cpu"] = 2.0
    assert option.run_s(10.0) == pytest.approx(5.0)
