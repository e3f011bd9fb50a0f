"""The SLO levels of the simulated benchmark."""

from __future__ import annotations

import pytest

from llama_prefect.benchmark.simulated import slo_levels


def test_levels_spread_from_llama_fast_to_llama_cheap():
    slos = slo_levels(10.0, 30.0, (0.0, 0.25, 1.0))
    assert slos == {0.0: 10.0, 0.25: 15.0, 1.0: 30.0}


def test_a_flat_curve_spreads_the_levels_up_to_twice_llama_fast():
    # Llama-cheap 5% slower than Llama-fast: every level would sit at Llama-fast's
    # own p95, where only 95% of videos can meet it
    slos = slo_levels(10.0, 10.5, (0.0, 0.5, 1.0))
    assert slos == {0.0: 10.0, 0.5: pytest.approx(15.0), 1.0: pytest.approx(20.0)}


def test_a_llama_cheap_short_of_twice_llama_fast_still_spreads_them_so():
    # 12% slower: the levels no longer jump to Llama-cheap's p95 past 10%
    slos = slo_levels(10.0, 11.2, (0.5, 1.0))
    assert slos == {0.5: pytest.approx(15.0), 1.0: pytest.approx(20.0)}


def test_a_spread_of_exactly_twice_is_llama_cheaps():
    assert slo_levels(10.0, 20.0, (1.0,)) == {1.0: 20.0}
