"""Tests of `llama_prefect.core.profiles`: prediction, feedback and the JSON file."""

from __future__ import annotations

import json
import math
import random

import pytest

from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.profiles import (
    PRIOR_SPREAD,
    RECENT_KEPT,
    SPREAD_WEIGHT,
    ProfileStore,
)
from llama_prefect.errors import LlamaError, ProfileError

CPU_A = Configuration.of("local-cpu", {"width_px": 240})
CPU_B = Configuration.of("local-cpu", {"width_px": 960})
GPU = Configuration.of("local-gpu", {"width_px": 240})


def _store(weight: float = 0.3) -> ProfileStore:
    store = ProfileStore("p", ewma_weight=weight)
    store.seed("detect", CPU_A, 2.0, accuracy=0.9, peak_mem_mb=300.0)
    store.seed("detect", CPU_B, 5.0)
    store.seed("detect", GPU, 0.5)
    return store


class TestLookup:
    def test_seeded_prediction_is_the_seed(self):
        store = _store()
        assert store.predict_s_per_unit("detect", CPU_A) == 2.0
        assert store.profile("detect", CPU_A).accuracy == 0.9
        assert store.profile("detect", CPU_A).peak_mem_mb == 300.0

    def test_configurations_and_has(self):
        store = _store()
        assert set(store.configurations("detect")) == {CPU_A, CPU_B, GPU}
        assert store.configurations("nope") == []
        assert store.has("detect")
        assert not store.has("nope")

    def test_unknown_configuration_says_how_to_fix(self):
        store = _store()
        with pytest.raises(ProfileError, match="llama-prefect profile"):
            store.profile("detect", Configuration.of("lambda", {}))
        with pytest.raises(ProfileError, match="'nope'"):
            store.predict_s_per_unit("nope", CPU_A)

    @pytest.mark.parametrize("s_per_unit", [0.0, -1.0])
    def test_seed_must_be_positive(self, s_per_unit):
        with pytest.raises(ProfileError, match="must be > 0"):
            ProfileStore("p").seed("detect", CPU_A, s_per_unit)

    def test_seeding_again_resets_what_was_learned_of_the_config(self):
        store = _store()
        store.observe("detect", CPU_A, 1.0, 3.0)
        store.seed("detect", CPU_A, 2.0)
        prof = store.profile("detect", CPU_A)
        assert prof.residual == 1.0
        assert prof.observations == 0
        assert prof.recent_s_per_unit == []


class TestFeedback:
    def test_prediction_is_seed_times_drift_times_residual(self):
        store = _store()
        store.ops["detect"].drift["local-cpu"] = 1.5
        store.profile("detect", CPU_A).residual = 0.8
        # 2.0 x 1.5 x 0.8 = 2.4
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(2.4)
        # CPU_B shares the drift, keeps its own residual 1: 5.0 x 1.5 x 1 = 7.5
        assert store.predict_s_per_unit("detect", CPU_B) == pytest.approx(7.5)
        # another backend has its own drift, 1 by default
        assert store.predict_s_per_unit("detect", GPU) == pytest.approx(0.5)

    def test_one_observation_by_hand(self):
        store = _store()
        # 4 units in 12 s: 3 s per unit against a prediction of 2 s.
        store.observe("detect", CPU_A, 4.0, 12.0)

        # ratio = 3 / 2 = 1.5, and both layers move in logs:
        # drift = 1.5 ** 0.3
        # the residual takes a quarter of that weight of what the drift leaves:
        # residual = 1.5 ** (0.3 x 0.25 x (1 - 0.3)) = 1.5 ** 0.0525
        drift = 1.5**0.3
        residual = 1.5**0.0525
        assert store.ops["detect"].drift["local-cpu"] == pytest.approx(drift)
        assert store.profile("detect", CPU_A).residual == pytest.approx(residual)
        # prediction = 2 x 1.5 ** 0.3525 = 2.3073
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(
            2.3073, abs=1e-4
        )
        assert store.profile("detect", CPU_A).observations == 1
        assert store.profile("detect", CPU_A).recent_s_per_unit == [3.0]

    def test_two_observations_by_hand(self):
        store = _store()
        store.observe("detect", CPU_A, 1.0, 3.0)
        store.observe("detect", CPU_A, 1.0, 3.0)

        # step 1 (see above): prediction 2 x 1.5 ** 0.3525
        # step 2: ratio = 3 / (2 x 1.5 ** 0.3525) = 1.5 ** 0.6475
        ratio_2 = 1.5**0.6475
        drift_2 = 1.5**0.3 * ratio_2**0.3
        residual_2 = 1.5**0.0525 * ratio_2**0.0525
        assert store.ops["detect"].drift["local-cpu"] == pytest.approx(drift_2)
        assert store.profile("detect", CPU_A).residual == pytest.approx(residual_2)
        # the prediction's log moved 0.3525 of the way twice:
        # 2 x 1.5 ** (1 - 0.6475 ** 2)
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(
            2.0 * 1.5 ** (1 - 0.6475**2)
        )

    def test_unused_config_moves_with_the_shared_drift_of_its_backend(self):
        store = _store()
        store.observe("detect", CPU_A, 1.0, 3.0)
        # CPU_B was never observed: 5.0 x drift 1.5 ** 0.3 x residual 1 = 5.647
        assert store.predict_s_per_unit("detect", CPU_B) == pytest.approx(
            5.647, abs=1e-3
        )
        assert store.profile("detect", CPU_B).residual == 1.0
        # another backend of the same op keeps its seed
        assert store.predict_s_per_unit("detect", GPU) == pytest.approx(0.5)

    def test_noisy_observations_of_one_config_leave_the_others_where_they_were(self):
        # CPU_A runs 4,000 times at 1.2x its seed, with 20% noise (log scale);
        # CPU_B never runs. The drift must end near 1.2, so that CPU_B is predicted
        # at about 1.2x its seed too. Moved as plain averages, the drift climbed
        # past 5 while CPU_A's residual sank below 0.25: CPU_A stayed right and
        # CPU_B was predicted five times too slow.
        store = _store()
        rng = random.Random(1)
        for _ in range(4000):
            observed_s = 2.0 * 1.2 * math.exp(rng.gauss(0.0, 0.2))
            store.observe("detect", CPU_A, 1.0, observed_s)
        drift = store.ops["detect"].drift["local-cpu"]
        assert 0.9 < drift < 1.6
        assert 0.8 < store.profile("detect", CPU_A).residual < 1.25
        assert store.predict_s_per_unit("detect", CPU_B) == pytest.approx(5.0 * drift)

    def test_an_observation_alone_teaches_the_residual_as_a_mean(self):
        store = _store()
        store.ops["detect"].drift["local-cpu"] = 1.5
        # CPU_B predicted 5 x 1.5 = 7.5 s per unit; tried at 6 and then at 9.
        store.observe("detect", CPU_B, 1.0, 6.0, alone=True)
        # first try: weight 1, the residual is its ratio 6 / 7.5 = 0.8
        assert store.profile("detect", CPU_B).residual == pytest.approx(0.8)
        store.observe("detect", CPU_B, 1.0, 9.0, alone=True)
        # second: weight 1/2 of ratio 9 / 6 = 1.5: 0.8 x (0.5 + 0.5 x 1.5) = 1.0,
        # the mean of 0.8 and 1.2
        assert store.profile("detect", CPU_B).residual == pytest.approx(1.0)
        # the shared drift did not move, so CPU_A keeps its prediction
        assert store.ops["detect"].drift["local-cpu"] == 1.5
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(3.0)

    def test_the_error_is_measured_against_the_prediction_scaled_for_content(self):
        store = _store()
        # CPU_A predicts 2 s per unit; scaled by a content factor of 2, 4 s. At
        # 4 s there is nothing to learn; without the factor the error is log 2.
        assert store.observe("detect", CPU_A, 1.0, 4.0, content=2.0) == 0.0
        assert store.ops["detect"].drift["local-cpu"] == pytest.approx(1.0)
        # the spread learns the profile's own error, log 2, from the prior 0.2
        var = (1 - SPREAD_WEIGHT) * PRIOR_SPREAD**2 + SPREAD_WEIGHT * math.log(2) ** 2
        assert store.spread("detect", "local-cpu") == pytest.approx(math.sqrt(var))
        assert store.observe("detect", CPU_A, 1.0, 4.0) == pytest.approx(math.log(2))
        assert store.ops["detect"].drift["local-cpu"] > 1.0

    def test_drift_is_per_op(self):
        store = _store()
        store.seed("track", CPU_A, 1.0)
        store.observe("detect", CPU_A, 1.0, 3.0)
        assert store.predict_s_per_unit("track", CPU_A) == pytest.approx(1.0)

    def test_weight_one_takes_the_last_observation(self):
        store = _store(weight=1.0)
        store.observe("detect", CPU_A, 2.0, 7.0)
        # drift = 1 x (0 + 1 x 3.5 / 2) = 1.75; residual = 3.5 / (2 x 1.75) = 1
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(3.5)
        assert store.predict_s_per_unit("detect", CPU_B) == pytest.approx(5.0 * 1.75)

    def test_repeated_observations_converge_to_the_true_latency(self):
        store = _store()
        for _ in range(30):
            store.observe("detect", CPU_A, 1.0, 7.0)
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(7.0, rel=0.02)

    def test_two_configs_observed_in_turn_both_converge(self):
        # CPU_A really takes 3.5x its seed and CPU_B 1.2x; they share one drift.
        store = _store()
        rng = random.Random(7)
        for _ in range(200):
            if rng.random() < 0.5:
                store.observe("detect", CPU_A, 1.0, 2.0 * 3.5)
            else:
                store.observe("detect", CPU_B, 1.0, 5.0 * 1.2)
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(7.0, rel=0.02)
        assert store.predict_s_per_unit("detect", CPU_B) == pytest.approx(6.0, rel=0.02)

    def test_observe_unprofiled_config_raises(self):
        with pytest.raises(ProfileError):
            _store().observe("detect", Configuration.of("lambda", {}), 1.0, 1.0)


class TestQuantile:
    def test_without_observations_the_prediction(self):
        store = _store()
        assert store.quantile_s_per_unit("detect", CPU_A, 0.9) == 2.0

    def test_quantile_of_recent_observations(self):
        store = _store()
        values = [float(v) for v in range(1, 11)]  # 1 .. 10 s per unit
        random.Random(3).shuffle(values)
        for v in values:
            store.observe("detect", CPU_A, 2.0, 2.0 * v)
        # 10 sorted values; q = 0.75 sits between the 7th and 8th: 7.5 rounds up to 8
        assert store.quantile_s_per_unit("detect", CPU_A, 0.75) == 8.0
        assert store.quantile_s_per_unit("detect", CPU_A, 0.0) == 1.0
        assert store.quantile_s_per_unit("detect", CPU_A, 1.0) == 10.0

    def test_only_the_latest_observations_are_kept(self):
        store = _store()
        n = RECENT_KEPT + 6
        for v in range(1, n + 1):
            store.observe("detect", CPU_A, 1.0, float(v))
        recent = store.profile("detect", CPU_A).recent_s_per_unit
        # values 1 .. n, the last RECENT_KEPT kept: 7 .. n
        assert recent == [float(v) for v in range(7, n + 1)]
        assert store.quantile_s_per_unit("detect", CPU_A, 0.0) == 7.0


class TestUnitsAndEdges:
    def test_units_default_until_observed(self):
        store = _store()
        assert store.units_per_invocation("detect") == 1.0
        assert store.units_per_invocation("detect", default=4.0) == 4.0

    def test_units_ewma(self):
        store = _store()
        store.observe_units("detect", 10.0)
        assert store.units_per_invocation("detect") == 10.0  # first sets it
        store.observe_units("detect", 20.0)
        # 0.7 x 10 + 0.3 x 20 = 13
        assert store.units_per_invocation("detect") == pytest.approx(13.0)

    def test_observe_feeds_units(self):
        store = _store()
        store.observe("detect", CPU_A, 8.0, 16.0)
        assert store.units_per_invocation("detect") == 8.0

    def test_edge_ewma(self):
        store = _store()
        store.observe_edge("split", "detect", 4.0)
        assert store.edge_rates[("split", "detect")] == 4.0
        store.observe_edge("split", "detect", 8.0)
        # 0.7 x 4 + 0.3 x 8 = 5.2
        assert store.edge_rates[("split", "detect")] == pytest.approx(5.2)


class TestPersistence:
    @staticmethod
    def _learned() -> ProfileStore:
        store = _store()
        store.observe("detect", CPU_A, 2.0, 5.0)
        store.observe("detect", GPU, 1.0, 0.7)
        store.observe_edge("split", "detect", 6.0)
        store.meta["explored_on"] = "laptop"
        return store

    def test_save_load_round_trip(self, tmp_path):
        store = self._learned()
        path = store.save(tmp_path / "nested" / "profiles.json")

        back = ProfileStore.load(path)

        assert back.to_dict() == store.to_dict()
        assert back.pipeline == "p"
        assert back.ewma_weight == 0.3
        assert back.meta == {"explored_on": "laptop"}
        assert back.edge_rates == {("split", "detect"): 6.0}
        assert back.units_per_invocation("detect") == store.units_per_invocation(
            "detect"
        )
        for config in (CPU_A, CPU_B, GPU):
            assert back.predict_s_per_unit("detect", config) == pytest.approx(
                store.predict_s_per_unit("detect", config)
            )
        assert back.profile("detect", CPU_A).recent_s_per_unit == [2.5]

    def test_file_is_readable_json(self, tmp_path):
        path = self._learned().save(tmp_path / "profiles.json")
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["format"] == 1
        assert data["edges"] == {"split->detect": 6.0}
        assert "local-cpu|width_px=240" in data["ops"]["detect"]["configs"]

    def test_weight_is_kept(self, tmp_path):
        path = _store(weight=0.5).save(tmp_path / "p.json")
        assert ProfileStore.load(path).ewma_weight == 0.5

    def test_atomic_write_leaves_no_temporary_files(self, tmp_path):
        store = self._learned()
        store.save(tmp_path / "profiles.json")
        store.save(tmp_path / "profiles.json")  # over an existing file
        assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles.json"]

    def test_failed_write_keeps_the_old_file_and_no_temporary_files(self, tmp_path):
        path = tmp_path / "profiles.json"
        self._learned().save(path)
        before = path.read_text(encoding="utf-8")

        broken = self._learned()
        broken.meta["not_json"] = object()
        with pytest.raises(TypeError):
            broken.save(path)

        assert path.read_text(encoding="utf-8") == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles.json"]

    def test_missing_file_says_how_to_fix(self, tmp_path):
        with pytest.raises(ProfileError, match="llama-prefect profile"):
            ProfileStore.load(tmp_path / "absent.json")

    def test_bad_json_is_a_profile_error(self, tmp_path):
        path = tmp_path / "profiles.json"
        path.write_text("{not json", encoding="utf-8")
        with pytest.raises(ProfileError, match="not valid JSON") as info:
            ProfileStore.load(path)
        assert str(path) in str(info.value)
        assert "llama-prefect profile" in str(info.value)

    @pytest.mark.parametrize("fmt", [99, None, "1"])
    def test_wrong_format_is_a_profile_error(self, tmp_path, fmt):
        path = tmp_path / "profiles.json"
        data = self._learned().to_dict()
        data["format"] = fmt
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ProfileError, match="format must be 1") as info:
            ProfileStore.load(path)
        assert repr(fmt) in str(info.value)

    def test_json_that_is_not_an_object_is_a_profile_error(self, tmp_path):
        path = tmp_path / "profiles.json"
        path.write_text("[1, 2, 3]", encoding="utf-8")
        with pytest.raises(
            ProfileError, match="must hold a JSON object, but holds a list"
        ):
            ProfileStore.load(path)

    def test_profile_errors_are_value_errors_and_llama_errors(self):
        assert issubclass(ProfileError, ValueError)
        assert issubclass(ProfileError, LlamaError)


class TestMergeOps:
    def test_merge_copies_named_ops_only(self):
        mine = _store()
        other = ProfileStore("p")
        other.seed("detect", CPU_A, 9.0)
        other.seed("track", CPU_A, 4.0)
        mine.merge_ops(other, ["detect", "absent"])
        assert mine.predict_s_per_unit("detect", CPU_A) == 9.0
        assert not mine.has("track")


@pytest.mark.parametrize("weight", [0.0, -0.1, 1.5, float("nan")])
def test_ewma_weight_must_be_in_zero_one(weight):
    with pytest.raises(ProfileError, match=r"ewma_weight must be in \(0, 1\]"):
        ProfileStore("p", ewma_weight=weight)


def test_ewma_weight_one_is_allowed():
    assert ProfileStore("p", ewma_weight=1.0).ewma_weight == 1.0


def test_a_shift_seen_on_one_configuration_reaches_the_unused_ones_mostly():
    # CPU_A runs 30 times at 1.5x its seed (a slower video codec, say). The drift
    # must carry most of that to CPU_B, never run: with the residual learning at
    # the drift's own pace the drift ends near 1.28; at a quarter of it, near 1.42.
    store = _store()
    for _ in range(30):
        store.observe("detect", CPU_A, 1.0, 2.0 * 1.5)
    assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(3.0, rel=0.02)
    assert store.predict_s_per_unit("detect", CPU_B) >= 5.0 * 1.4


class TestPublishedFeedbackAndSpread:
    def test_per_configuration_feedback_moves_only_the_one_that_ran(self):
        store = _store()
        store.observe("detect", CPU_A, 1.0, 3.0, shared=False)
        # residual 1 x (0.7 + 0.3 x 1.5) = 1.15: 2.0 x 1.15 = 2.3; drift untouched
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(2.3)
        assert store.predict_s_per_unit("detect", CPU_B) == 5.0
        assert store.ops["detect"].drift == {}

    def test_spread_starts_at_the_prior_and_learns_the_log_error(self):
        import math

        from llama_prefect.core.profiles import PRIOR_SPREAD, SPREAD_WEIGHT

        store = _store()
        assert store.spread("detect", "local-cpu") == PRIOR_SPREAD
        store.observe("detect", CPU_A, 1.0, 2.0 * math.e)  # log ratio 1
        expected = (1 - SPREAD_WEIGHT) * PRIOR_SPREAD**2 + SPREAD_WEIGHT * 1.0
        assert store.spread("detect", "local-cpu") == pytest.approx(math.sqrt(expected))
        assert store.spread("detect", "local-gpu") == PRIOR_SPREAD

    def test_a_batched_call_teaches_units_of_one_invocation(self):
        store = _store()
        store.observe("detect", CPU_A, 8.0, 16.0, invocation_units=2.0)
        assert store.units_per_invocation("detect") == 2.0
        assert store.profile("detect", CPU_A).recent_s_per_unit == [2.0]

    def test_spread_survives_a_round_trip(self, tmp_path):
        store = _store()
        store.observe("detect", CPU_A, 1.0, 3.0)
        back = ProfileStore.load(store.save(tmp_path / "p.json"))
        assert back.spread("detect", "local-cpu") == store.spread("detect", "local-cpu")


def test_peak_memory_keeps_the_largest_seen_per_configuration() -> None:
    store = ProfileStore("p")
    config = Configuration.of("local-cpu", {"k": 1})
    store.seed("op", config, 0.01)

    for peak_mb in (120.0, 310.5, 200.0, 0.0):
        store.observe_peak_mem("op", config, peak_mb)
    store.observe_peak_mem("op", Configuration.of("local-cpu", {"k": 2}), 999.0)

    assert store.profile("op", config).peak_mem_mb == 310.5
    assert store.configurations("op") == [config]


class TestFixedPart:
    """A seed is a line in the units of a call: fixed seconds plus seconds per unit."""

    def _store(self) -> ProfileStore:
        store = ProfileStore("p")
        # 0.5 s whatever the size, plus 0.1 s per unit
        store.seed("detect", CPU_A, 0.1, fixed_s=0.5)
        store.seed("detect", CPU_B, 0.2)
        return store

    def test_a_call_is_predicted_as_fixed_plus_units_times_slope(self):
        store = self._store()
        # 0.5 + 0.1 x 10 = 1.5; the slope alone is still the per-unit prediction
        assert store.predict_s("detect", CPU_A, 10.0) == pytest.approx(1.5)
        assert store.predict_s("detect", CPU_A, 0.0) == pytest.approx(0.5)
        assert store.predict_s_per_unit("detect", CPU_A) == pytest.approx(0.1)
        # no fixed part: proportional, 0.2 x 10
        assert store.predict_s("detect", CPU_B, 10.0) == pytest.approx(2.0)

    def test_drift_and_residual_stretch_both_parts(self):
        store = self._store()
        store.ops["detect"].drift["local-cpu"] = 2.0
        store.profile("detect", CPU_A).residual = 1.5
        # (0.5 + 0.1 x 10) x 2 x 1.5 = 4.5
        assert store.predict_s("detect", CPU_A, 10.0) == pytest.approx(4.5)

    def test_one_observation_by_hand(self):
        store = self._store()
        # 10 units in 3 s against a prediction of 1.5 s: ratio 2
        store.observe("detect", CPU_A, 10.0, 3.0)
        # drift = 2 ** 0.3; residual = 2 ** (0.3 x 0.25 x 0.7) = 2 ** 0.0525
        assert store.ops["detect"].drift["local-cpu"] == pytest.approx(2**0.3)
        assert store.profile("detect", CPU_A).residual == pytest.approx(2**0.0525)
        # a call of 20 units: (0.5 + 2) x 2 ** 0.3525
        assert store.predict_s("detect", CPU_A, 20.0) == pytest.approx(2.5 * 2**0.3525)
        # what is kept per unit is the observation over its units
        assert store.profile("detect", CPU_A).recent_s_per_unit == [0.3]

    def test_a_proportional_model_would_learn_a_wrong_ratio_from_a_small_call(self):
        store = self._store()
        # a call of 1 unit in 0.6 s is exactly on the line (0.5 + 0.1): nothing moves
        store.observe("detect", CPU_A, 1.0, 0.6)
        assert store.ops["detect"].drift["local-cpu"] == pytest.approx(1.0)
        assert store.profile("detect", CPU_A).residual == pytest.approx(1.0)

    def test_negative_fixed_part_is_refused(self):
        with pytest.raises(ProfileError, match="fixed latency must be >= 0"):
            ProfileStore("p").seed("detect", CPU_A, 0.1, fixed_s=-0.1)

    def test_a_store_written_without_the_fixed_part_loads_as_proportional(self):
        old = {
            "format": 1,
            "pipeline": "p",
            "ewma_weight": 0.3,
            "ops": {
                "detect": {
                    "configs": {
                        CPU_A.key: {
                            "seed_s_per_unit": 0.1,
                            "accuracy": 0.9,
                            "residual": 1.2,
                            "observations": 3,
                            "recent_s_per_unit": [0.1],
                        }
                    },
                    "drift": {"local-cpu": 2.0},
                }
            },
        }
        store = ProfileStore.from_dict(old)
        assert store.profile("detect", CPU_A).seed_fixed_s == 0.0
        # 0.1 x 10 x 2 x 1.2 = 2.4
        assert store.predict_s("detect", CPU_A, 10.0) == pytest.approx(2.4)

    def test_the_fixed_part_survives_a_round_trip(self, tmp_path):
        path = self._store().save(tmp_path / "p.json")
        back = ProfileStore.load(path)
        assert back.profile("detect", CPU_A).seed_fixed_s == 0.5
        assert back.predict_s("detect", CPU_A, 10.0) == pytest.approx(1.5)


def test_forgetting_feedback_leaves_the_seeds_alone() -> None:
    store = _store()
    store.observe("detect", CPU_A, 4.0, 12.0)
    store.observe_edge("split", "detect", 6.0)
    units = store.units_per_invocation("detect")

    store.forget_feedback()

    assert store.predict_s_per_unit("detect", CPU_A) == 2.0
    assert store.ops["detect"].drift == {}
    assert store.spread("detect", "local-cpu") == pytest.approx(0.2)
    prof = store.profile("detect", CPU_A)
    assert (prof.residual, prof.observations, prof.recent_s_per_unit) == (1.0, 0, [])
    assert prof.accuracy == 0.9 and prof.peak_mem_mb == 300.0
    assert store.units_per_invocation("detect") == units
    assert store.edge_rates == {("split", "detect"): 6.0}
