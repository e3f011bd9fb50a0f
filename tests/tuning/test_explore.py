"""Tests of `llama_prefect.tuning.explore` on a toy op whose numbers we choose.

The toy op has knobs ``a`` (1, 2, 3), ``b`` (1, 2) and ``threads`` (1, 2). Its body
records every call. Latency per unit is set by `_toy_measure` from the knobs (``a * b``
ms, 1.6x faster on two threads), so fronts and seeds are known in advance; the failure
and time-bound tests run the real `measure`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading

import optuna
import pytest
from llama_prefect.tuning.explore import (
    ACCURACY_CONSTRAINT,
    Measurement,
    OpProbe,
    TrialTimeout,
    choose_seeds,
    explore,
    explore_op,
    fit_line,
    measure,
)
from optuna.trial import TrialState

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.errors import ConfigurationError

PRICES = PriceCatalog.load()
CPU = "local-cpu"


def _spec(**knobs) -> OpSpec:
    space = knobs or {"a": (1, 2, 3), "b": (1, 2), "threads": (1, 2)}
    return OpSpec("toy", knobs=space, reference={"a": 1, "b": 1, "threads": 1})


class Toy:
    """A body that counts its calls; ``fail`` and ``block`` pick knobs to misbehave."""

    def __init__(self, fail=None, block=None, accuracy=None):
        self.calls: list[dict] = []
        self.fail, self.block = fail or {}, block or {}
        self.release = threading.Event()
        self.accuracy = accuracy

    def body(self, x, **knobs):
        self.calls.append(dict(knobs))
        if all(knobs.get(k) == v for k, v in self.fail.items()) and self.fail:
            raise RuntimeError(f"toy failure at {knobs}")
        if all(knobs.get(k) == v for k, v in self.block.items()) and self.block:
            self.release.wait(10)
        # Output: the input scaled by a; agreement with the reference falls with a.
        return x * knobs["a"]

    def probe(self) -> OpProbe:
        return OpProbe(
            self.body,
            [{"x": 1.0}, {"x": 2.0}],
            units=lambda p: 10.0,
            accuracy=self.accuracy or _agreement,
            fanout=lambda out: 1.0 if out > 2 else 0.0,
        )


def _agreement(outputs, reference):
    """1 minus the mean relative difference of the outputs."""
    errors = [abs(o - r) / r for o, r in zip(outputs, reference, strict=True)]
    return max(0.0, 1.0 - sum(errors) / len(errors) / 2)


def _toy_measure(probe, config, prices, **kwargs):
    found = measure(probe, config, prices, **kwargs)
    knobs = config.as_dict()
    # A second thread speeds up by 1.6x, so it is faster and dearer.
    s_per_unit = knobs["a"] * knobs["b"] / (1 + 0.6 * (knobs["threads"] - 1)) / 1e3
    price = prices.price(config.backend).usd_per_slot_s
    return dataclasses.replace(
        found,
        s_per_unit=s_per_unit,
        cost_usd_per_unit=s_per_unit * config.slots * price,
    )


def _explore(toy: Toy, **kwargs):
    kwargs.setdefault("measure_fn", _toy_measure)
    return explore_op(_spec(), toy.probe(), CPU, PRICES, **kwargs)


class TestMeasure:
    def test_measures_latency_per_unit_accuracy_fanout_and_memory(self):
        toy = Toy()
        config = Configuration.of(CPU, {"a": 2, "b": 1, "threads": 1})
        found = measure(toy.probe(), config, PRICES, reference_outputs=[1.0, 2.0])
        assert found.s_per_unit > 0 and found.trial_s > 0
        assert found.accuracy == pytest.approx(0.5)  # outputs 2x the reference
        assert found.fanout == pytest.approx(0.5)  # outputs 2 and 4: one above 2
        assert found.peak_mem_mb is None or found.peak_mem_mb >= 0
        price = PRICES.price(CPU).usd_per_slot_s
        assert found.cost_usd_per_unit == pytest.approx(found.s_per_unit * price)

    def test_the_reference_is_compared_with_itself(self):
        toy = Toy()
        config = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1})
        assert measure(toy.probe(), config, PRICES).accuracy == 1.0

    def test_a_trial_past_its_time_bound_raises_trial_timeout(self):
        toy = Toy(block={"b": 2})
        config = Configuration.of(CPU, {"a": 1, "b": 2, "threads": 1})
        try:
            with pytest.raises(TrialTimeout, match="time bound of 0.2 s"):
                measure(toy.probe(), config, PRICES, timeout_s=0.2)
        finally:
            toy.release.set()


class TestStudy:
    def test_reference_is_the_first_trial_and_every_config_is_distinct(self):
        record = _explore(Toy(), n_trials=9)
        assert record.measured[0].config.as_dict() == {"a": 1, "b": 1, "threads": 1}
        assert record.measured[0].trial == 0
        keys = [m.config.key for m in record.measured]
        assert len(keys) == len(set(keys)) == 9
        assert record.trials_run == 9

    def test_small_grid_is_measured_whole_and_once(self):
        toy = Toy()
        record = _explore(toy, n_trials=50)
        assert len(record.measured) == 12
        assert len(toy.calls) == 12 * 2  # two inputs per configuration

    def test_front_is_feasible_only_and_seeds_add_reference_and_fastest(self):
        # accuracy: a=1 -> 1.0, a=2 -> 0.5, a=3 -> 0.0; floor 0.8 leaves a=1 only
        record = _explore(Toy(), n_trials=12, accuracy_floor=0.8)
        front = {m.config.key for m in record.front}
        assert front == {
            Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1}).key,
            Configuration.of(CPU, {"a": 1, "b": 1, "threads": 2}).key,
        }
        seeded = {m.config.key for m in record.seeded}
        fastest = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 2}).key
        assert front <= seeded and fastest in seeded
        assert all(m.accuracy >= 0.8 for m in record.front)

    def test_journal_holds_objectives_constraint_and_measurements(self, tmp_path):
        from llama_prefect.tuning.explore import journal_storage

        storage = journal_storage(tmp_path / "j.log")
        record = _explore(Toy(), n_trials=6, storage=storage)
        study = optuna.load_study(study_name=record.study_name, storage=storage)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert len(done) >= 6
        for t in done:
            assert len(t.values) == 2 and all(math.isfinite(v) for v in t.values)
            accuracy = t.user_attrs["accuracy"]
            assert t.constraints[ACCURACY_CONSTRAINT] == pytest.approx(0.8 - accuracy)
        # Optuna's own front holds feasible trials only.
        assert all(t.user_attrs["accuracy"] >= 0.8 for t in study.best_trials)

    def test_floor_outside_zero_to_one_is_refused(self):
        with pytest.raises(ConfigurationError, match="accuracy_floor"):
            _explore(Toy(), accuracy_floor=1.5)


class TestFailures:
    def test_failed_trials_are_marked_failed_never_scored(self, tmp_path):
        from llama_prefect.tuning.explore import journal_storage

        storage = journal_storage(tmp_path / "j.log")
        toy = Toy(fail={"a": 3})
        record = explore_op(
            _spec(), toy.probe(), CPU, PRICES, n_trials=12, storage=storage
        )
        assert {f.config.as_dict()["a"] for f in record.failed} == {3}
        assert len(record.failed) == 4 and len(record.measured) == 8
        assert all("toy failure" in f.error and not f.timed_out for f in record.failed)
        study = optuna.load_study(study_name=record.study_name, storage=storage)
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        assert failed and all(t.values is None for t in failed)
        assert all("toy failure" in t.user_attrs["error"] for t in failed)
        for t in study.trials:
            assert t.values is None or not any(math.isnan(v) for v in t.values)

    def test_a_timed_out_trial_is_failed_and_the_rest_go_on(self):
        toy = Toy(block={"a": 2, "b": 2, "threads": 1})
        try:
            record = explore_op(
                _spec(), toy.probe(), CPU, PRICES, n_trials=12, timeout_s=0.5
            )
        finally:
            toy.release.set()
        (late,) = record.failed
        assert late.timed_out and late.config.as_dict() == {
            "a": 2,
            "b": 2,
            "threads": 1,
        }
        assert len(record.measured) == 11

    def test_no_configuration_meets_the_floor_falls_back_with_a_fix(self, caplog):
        # An accuracy function that never gives more than 0.6, even to the reference.
        toy = Toy(accuracy=lambda outputs, reference: 0.6 / outputs[0])
        with caplog.at_level(logging.WARNING):
            record = _explore(toy, n_trials=12, accuracy_floor=0.8)
        assert record.front == []
        best = max(m.accuracy for m in record.measured)
        assert best == pytest.approx(0.6)
        # the least infeasible one (the fastest of the most accurate) stands in
        fallback = record.seeded[0]
        assert fallback.accuracy == best
        assert fallback.s_per_unit == min(
            m.s_per_unit for m in record.measured if m.accuracy == best
        )
        assert "Lower --accuracy-floor to 0.60" in record.warning
        assert any("no configuration reached" in r.message for r in caplog.records)

    def test_a_failed_reference_says_accuracy_could_not_be_measured(self):
        toy = Toy(fail={"a": 1, "b": 1, "threads": 1})
        record = _explore(toy, n_trials=12, accuracy_floor=0.8)
        assert all(m.accuracy == 0.0 for m in record.measured)
        assert "reference configuration" in record.warning
        assert "no accuracy could be measured" in record.warning
        assert record.seeded  # latency profiles are still seeded


class TestResume:
    def test_a_second_run_with_the_same_journal_measures_nothing_again(self, tmp_path):
        from llama_prefect.tuning.explore import journal_storage

        path = tmp_path / "j.log"
        toy = Toy()
        first = _explore(toy, n_trials=6, storage=journal_storage(path))
        calls = len(toy.calls)
        assert first.trials_run == 6 and calls == 12

        again = _explore(toy, n_trials=6, storage=journal_storage(path))
        assert len(toy.calls) == calls  # no body ran
        assert again.trials_run == 0 and again.resumed == 6
        assert [m.config for m in again.measured] == [m.config for m in first.measured]
        assert [m.s_per_unit for m in again.measured] == [
            m.s_per_unit for m in first.measured
        ]

    def test_a_larger_budget_measures_only_the_new_trials(self, tmp_path):
        from llama_prefect.tuning.explore import journal_storage

        path = tmp_path / "j.log"
        toy = Toy()
        _explore(toy, n_trials=4, storage=journal_storage(path))
        calls = len(toy.calls)
        more = _explore(toy, n_trials=7, storage=journal_storage(path))
        assert more.trials_run == 3 and more.resumed == 4
        # three new configurations, plus the reference once more for its outputs
        assert len(toy.calls) - calls == (3 + 1) * 2
        assert len(more.measured) == 7

    def test_another_floor_starts_a_study_of_its_own(self, tmp_path):
        from llama_prefect.tuning.explore import journal_storage

        path = tmp_path / "j.log"
        first = _explore(Toy(), n_trials=4, storage=journal_storage(path))
        other = _explore(
            Toy(), n_trials=4, storage=journal_storage(path), accuracy_floor=0.5
        )
        assert other.study_name != first.study_name and other.resumed == 0


class TestSeeds:
    def _m(self, key_a, s, accuracy):
        config = Configuration.of(CPU, {"a": key_a})
        return Measurement(config, s, s * 1e-5, accuracy)

    def test_seeds_are_front_reference_and_fastest(self):
        ref, mid = self._m(1, 3.0, 1.0), self._m(2, 2.0, 0.9)
        fast = self._m(3, 1.0, 0.2)
        front, seeded, warning = choose_seeds("op", [ref, mid, fast], ref.config, 0.8)
        assert front == [mid] and warning is None
        assert seeded == [mid, fast, ref]

    def test_nothing_measured_seeds_nothing(self):
        assert choose_seeds("op", [], Configuration.of(CPU, {}), 0.8) == ([], [], None)


class TestExplore:
    def test_seeds_the_store_and_records_what_profiling_cost(self, tmp_path):
        pipeline = Pipeline("toys")
        pipeline.add_op(_spec())
        toy = Toy()
        result = explore(
            pipeline,
            {"toy": toy.probe()},
            backends=[CPU],
            n_trials=5,
            journal_path=tmp_path / "j.log",
            progress=False,
        )
        meta = result.store.meta["exploration"]
        assert meta["trials_run"] == 5 and meta["accuracy_floor"] == 0.8
        assert meta["seconds"] > 0 and meta["cost_usd"] > 0
        assert result.cost_usd == meta["cost_usd"]
        per_op = meta["ops"]["toy@local-cpu"]
        assert per_op["cost_usd"] > 0 and per_op["trials_run"] == 5
        for m in result.ops[0].seeded:
            prof = result.store.profile("toy", m.config)
            assert prof.seed_s_per_unit == m.s_per_unit
            assert prof.fanout == m.fanout
        assert result.store.units_per_invocation("toy") == 10.0


class TestHypervolume:
    def test_two_points_by_hand(self):
        from llama_prefect.tuning.hypervolume import hypervolume_2d

        # (1, 3) and (2, 1) under reference (4, 4): 3 * 1 + 2 * 2 = 7
        assert hypervolume_2d([(2, 1), (1, 3)], (4, 4)) == pytest.approx(7.0)
        # a dominated point and one past the reference add nothing
        assert hypervolume_2d([(2, 1), (1, 3), (3, 3), (5, 0)], (4, 4)) == 7.0

    def test_normalized_grid_front_beats_any_subset(self):
        from llama_prefect.tuning.hypervolume import normalized_hypervolume

        grid = [(1.0, 10.0), (2.0, 5.0), (4.0, 2.0), (8.0, 1.0), (6.0, 6.0)]
        whole = normalized_hypervolume(grid, grid)
        assert normalized_hypervolume(grid[:2], grid) < whole
        assert normalized_hypervolume([(8.0, 10.0)], grid) == pytest.approx(0.01)


class TestCopies:
    def test_copies_run_side_by_side_and_fill_the_slots(self):
        toy = Toy()
        config = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1})
        found = measure(toy.probe(), config, PRICES, copies=3)
        assert len(toy.calls) == 3 * 2 and found.accuracy == 1.0

    def test_a_two_thread_trial_runs_once_on_two_slots(self):
        toy = Toy()
        record = _explore(toy, n_trials=12, slots=2)
        ones = [c for c in toy.calls if c["threads"] == 1]
        twos = [c for c in toy.calls if c["threads"] == 2]
        assert len(ones) == 6 * 2 * 2 and len(twos) == 6 * 2
        assert record.cost_usd > 0


class TestLatencyLine:
    def test_points_on_a_line_give_its_intercept_and_slope(self):
        # 0.2 s fixed + 0.01 s per unit, at 5, 40 and 100 units
        points = [(5.0, 0.25), (40.0, 0.6), (100.0, 1.2)]
        fixed_s, slope = fit_line(points)
        assert fixed_s == pytest.approx(0.2)
        assert slope == pytest.approx(0.01)

    def test_least_squares_through_noisy_points(self):
        # u = 0, 10, 20; t = 1, 2, 4: mean (10, 7/3), slope 30 / 200 = 0.15,
        # intercept 7/3 - 1.5 = 5/6
        fixed_s, slope = fit_line([(1e-9, 1.0), (10.0, 2.0), (20.0, 4.0)])
        assert slope == pytest.approx(0.15)
        assert fixed_s == pytest.approx(5 / 6)

    def test_a_negative_intercept_becomes_a_proportional_line(self):
        # slope 0.2 would need -1 s fixed: seconds over units instead, 4 / 30
        assert fit_line([(10.0, 1.0), (20.0, 3.0)]) == (0.0, pytest.approx(4 / 30))

    def test_inputs_of_one_size_give_a_proportional_line(self):
        assert fit_line([(10.0, 1.0), (10.5, 3.0)]) == (0.0, pytest.approx(4 / 20.5))
        assert fit_line([(10.0, 1.0)]) == (0.0, pytest.approx(0.1))

    def test_a_falling_fit_keeps_a_small_slope_through_the_mean(self):
        # times fall with size (noise): slope floored at 5% of 3 / 30 = 0.005,
        # through the mean (15, 1.5): fixed 1.5 - 0.075
        fixed_s, slope = fit_line([(10.0, 2.0), (20.0, 1.0)])
        assert slope == pytest.approx(0.005)
        assert fixed_s == pytest.approx(1.425)

    def test_a_trial_fits_a_line_over_its_inputs_of_different_sizes(self):
        toy = Toy()
        probe = toy.probe()
        probe.units = lambda p: 10.0 * p["x"]  # inputs of 10 and 20 units
        config = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1})
        found = measure(probe, config, PRICES)
        fixed_s, slope = found.line
        assert fixed_s >= 0 and slope > 0
        # the line goes through the trial's mean or its totals: 30 units cost the
        # trial's seconds
        assert fixed_s * 2 + slope * 30 == pytest.approx(found.trial_s) or (
            fixed_s == 0 and slope * 30 == pytest.approx(found.trial_s)
        )

    def test_seeds_carry_the_line_plus_the_task_overhead(self):
        from llama_prefect.tuning.explore import _seed

        from llama_prefect.core.profiles import ProfileStore

        def lined(probe, config, prices, **kwargs):
            found = _toy_measure(probe, config, prices, **kwargs)
            return dataclasses.replace(found, fixed_s=0.2, slope_s_per_unit=0.01)

        record = explore_op(
            _spec(), Toy().probe(), CPU, PRICES, n_trials=3, measure_fn=lined
        )
        store = ProfileStore("toys")
        _seed(store, record, Toy().probe(), 0.015)

        for m in record.seeded:
            prof = store.profile("toy", m.config)
            assert prof.seed_fixed_s == pytest.approx(0.215)
            assert prof.seed_s_per_unit == pytest.approx(0.01)
        # 10 units: 0.215 + 0.01 x 10
        config = record.seeded[0].config
        assert store.predict_s("toy", config, 10.0) == pytest.approx(0.315)

    def test_exploration_records_the_overhead_and_the_units(self):
        pipeline = Pipeline("toys")
        pipeline.add_op(_spec())
        result = explore(
            pipeline,
            {"toy": Toy().probe()},
            backends=[CPU],
            n_trials=2,
            progress=False,
            overhead_s=0.015,
        )
        assert result.store.meta["exploration"]["overhead_s"] == 0.015
        assert result.store.meta["units"] == {"toy": "frame"}
        for m in result.ops[0].seeded:
            prof = result.store.profile("toy", m.config)
            assert prof.seed_fixed_s == pytest.approx(m.fixed_s + 0.015)


def test_background_work_fills_the_other_slots_instead_of_copies():
    toy = Toy()
    ran = threading.Event()

    def body(x, **knobs):
        ran.wait(5)  # the trial starts its work once the background has run
        return toy.body(x, **knobs)

    probe = dataclasses.replace(toy.probe(), body=body, background=ran.set)
    config = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1})
    found = measure(probe, config, PRICES, copies=3)
    assert ran.is_set()
    assert len(toy.calls) == 2  # one copy of the two inputs, not three
    assert found.accuracy == 1.0


def test_failing_background_work_does_not_fail_the_trial():
    toy = Toy()

    def broken():
        raise RuntimeError("no such segment")

    probe = dataclasses.replace(toy.probe(), background=broken)
    config = Configuration.of(CPU, {"a": 1, "b": 1, "threads": 1})
    assert measure(probe, config, PRICES, copies=2).s_per_unit > 0
    assert len(toy.calls) == 2
