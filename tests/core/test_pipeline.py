"""Tests of `llama_prefect.core.pipeline`: configurations, knob spaces and the DAG."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.errors import ConfigurationError, LlamaError

# -- Configuration ---------------------------------------------------------------------


class TestConfiguration:
    def test_key_lists_backend_then_knobs_sorted_by_name(self):
        config = Configuration.of(
            "local-cpu", {"width_px": 480, "sample_every": 5, "flip": True}
        )
        assert config.key == "local-cpu|flip=True,sample_every=5,width_px=480"

    def test_key_round_trip_keeps_int_float_bool_and_str(self):
        knobs = {"every": 5, "scale": 0.5, "whole": 2.0, "flip": False, "model": "yolo"}
        config = Configuration.of("local-gpu", knobs)

        back = Configuration.from_key(config.key)

        assert back == config
        assert back.backend == "local-gpu"
        for name, value in knobs.items():
            assert back.as_dict()[name] == value
            # bool is a subclass of int and 1 == True, so the types must match too.
            assert type(back.as_dict()[name]) is type(value)

    def test_empty_knobs_round_trip(self):
        config = Configuration("lambda")
        assert config.key == "lambda|"
        assert Configuration.from_key(config.key) == config
        assert config.as_dict() == {}

    def test_equal_settings_compare_equal_whatever_the_order(self):
        one = Configuration.of("local-cpu", {"a": 1, "b": "x"})
        two = Configuration.of("local-cpu", {"b": "x", "a": 1})
        assert one == two
        assert hash(one) == hash(two)
        assert one != Configuration.of("local-gpu", {"a": 1, "b": "x"})

    def test_slots_come_from_the_threads_knob(self):
        assert Configuration.of("local-cpu", {"mode": "fast"}).slots == 1
        assert Configuration.of("local-cpu", {"threads": 2}).slots == 2
        assert Configuration.from_key("local-cpu|threads=4").slots == 4

    @settings(max_examples=200, database=None)
    @given(
        backend=st.sampled_from(["local-cpu", "local-gpu", "lambda", "ecs-gpu"]),
        knobs=st.dictionaries(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
            st.one_of(
                st.integers(-(10**9), 10**9),
                st.floats(allow_nan=False, allow_infinity=False),
                st.booleans(),
                # Letters only, and not a word that float() or the bool parser reads.
                st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).filter(
                    lambda s: s.lower() not in {"nan", "inf", "infinity"}
                ),
            ),
            max_size=5,
        ),
    )
    def test_key_round_trip_property(self, backend, knobs):
        config = Configuration.of(backend, knobs)
        back = Configuration.from_key(config.key)
        assert back == config
        assert [type(v) for _, v in back.knobs] == [type(v) for _, v in config.knobs]


# -- OpSpec ----------------------------------------------------------------------------


def _detect() -> OpSpec:
    return OpSpec(
        "detect",
        knobs={
            "sample_every": (1, 5),
            "width_px": (240, 480, 960),
            "device": ("cpu", "cuda"),
        },
        backends=("local-cpu", "local-gpu"),
        device_by_backend={"local-gpu": "cuda"},
    )


class TestOpSpec:
    def test_configurations_are_the_cartesian_product_per_backend(self):
        configs = _detect().configurations()

        # 2 sample_every x 3 width_px per backend, 2 backends; device is not searched.
        assert len(configs) == 2 * 3 * 2
        assert len(set(configs)) == len(configs)
        for backend in ("local-cpu", "local-gpu"):
            mine = [c for c in configs if c.backend == backend]
            got = {(c.as_dict()["sample_every"], c.as_dict()["width_px"]) for c in mine}
            assert got == set(itertools.product((1, 5), (240, 480, 960)))

    def test_device_knob_is_fixed_by_the_backend(self):
        for config in _detect().configurations():
            expected = "cuda" if config.backend == "local-gpu" else "cpu"
            assert config.as_dict()["device"] == expected

    def test_device_defaults_to_cpu_on_a_backend_without_a_mapping(self):
        spec = OpSpec("x", knobs={"device": ("cpu", "cuda")}, backends=("lambda",))
        assert spec.configurations() == [Configuration.of("lambda", {"device": "cpu"})]

    def test_configurations_only_on_requested_backends_the_op_declares(self):
        spec = _detect()
        gpu_only = spec.configurations(["local-gpu"])
        assert len(gpu_only) == 6
        assert {c.backend for c in gpu_only} == {"local-gpu"}
        assert spec.configurations(["lambda"]) == []

    def test_op_without_knobs_has_one_configuration_per_backend(self):
        spec = OpSpec("merge", backends=("local-cpu", "lambda"))
        assert spec.configurations() == [
            Configuration("local-cpu"),
            Configuration("lambda"),
        ]

    def test_reference_configuration_defaults_to_first_values(self):
        ref = _detect().reference_configuration("local-gpu")
        assert ref == Configuration.of(
            "local-gpu", {"sample_every": 1, "width_px": 240, "device": "cuda"}
        )

    def test_reference_configuration_takes_declared_reference(self):
        spec = OpSpec(
            "detect",
            knobs={"sample_every": (5, 1), "width_px": (240, 960), "device": ("cpu",)},
            backends=("local-cpu", "local-gpu"),
            reference={"sample_every": 1, "width_px": 960},
            device_by_backend={"local-gpu": "cuda"},
        )
        assert spec.reference_configuration("local-cpu") == Configuration.of(
            "local-cpu", {"sample_every": 1, "width_px": 960, "device": "cpu"}
        )
        assert spec.reference_configuration("local-gpu").as_dict()["device"] == "cuda"

    def test_knob_without_values_is_rejected(self):
        with pytest.raises(ConfigurationError, match="width_px"):
            OpSpec("detect", knobs={"width_px": ()})

    def test_op_without_backends_is_rejected(self):
        with pytest.raises(ConfigurationError, match="at least one backend"):
            OpSpec("detect", backends=())

    def test_units_and_group_come_from_parameters(self):
        spec = OpSpec(
            "detect",
            units_of=lambda params: params["frames"],
            group_of=lambda params: params["video"],
        )
        assert spec.units({"frames": 12, "video": "a.mp4"}) == 12.0
        assert spec.group({"frames": 12, "video": "a.mp4"}) == "a.mp4"
        plain = OpSpec("plain")
        assert plain.units({}) == 1.0
        assert plain.group({}) is None


# -- Pipeline --------------------------------------------------------------------------


def _pipeline(name: str, ops: list[str], gather: tuple[str, ...] = ()) -> Pipeline:
    p = Pipeline(name)
    for op in ops:
        p.add_op(OpSpec(op, gather=op in gather))
    return p


def _diamond() -> Pipeline:
    # s -> a -> t and s -> b -> t
    p = _pipeline("diamond", ["s", "a", "b", "t"])
    for u, v in [("s", "a"), ("s", "b"), ("a", "t"), ("b", "t")]:
        p.add_edge(u, v)
    return p


class TestPipelineValidation:
    def test_duplicate_op_is_rejected(self):
        p = _pipeline("p", ["a"])
        with pytest.raises(ConfigurationError, match="already has an op named 'a'"):
            p.add_op(OpSpec("a"))

    @pytest.mark.parametrize(("u", "v"), [("a", "nope"), ("nope", "a")])
    def test_edge_to_unknown_op_is_rejected(self, u, v):
        p = _pipeline("p", ["a"])
        with pytest.raises(ConfigurationError, match="no op 'nope'"):
            p.add_edge(u, v)

    @pytest.mark.parametrize(
        ("fanout", "fire_prob"), [(0.0, 1.0), (-2.0, 1.0), (1.0, 1.5), (1.0, -0.1)]
    )
    def test_bad_fanout_or_fire_prob_is_rejected(self, fanout, fire_prob):
        p = _pipeline("p", ["a", "b"])
        with pytest.raises(ConfigurationError, match="fanout must be > 0"):
            p.add_edge("a", "b", fanout=fanout, fire_prob=fire_prob)
        assert not p.graph.has_edge("a", "b")

    def test_fire_prob_bounds_are_allowed(self):
        p = _pipeline("p", ["a", "b", "c"])
        p.add_edge("a", "b", fire_prob=0.0)
        p.add_edge("a", "c", fire_prob=1.0)
        assert p.edge_rate("a", "b") == 0.0

    def test_cycle_is_rejected_and_graph_left_unchanged(self):
        p = _pipeline("p", ["a", "b", "c"])
        p.add_edge("a", "b")
        p.add_edge("b", "c")
        with pytest.raises(ConfigurationError, match="cycle"):
            p.add_edge("c", "a")
        assert not p.graph.has_edge("c", "a")
        assert p.paths() == [["a", "b", "c"]]

    def test_self_loop_is_a_cycle(self):
        p = _pipeline("p", ["a"])
        with pytest.raises(ConfigurationError, match="cycle"):
            p.add_edge("a", "a")

    def test_errors_are_value_errors_and_llama_errors(self):
        p = _pipeline("p", ["a"])
        with pytest.raises(ValueError):
            p.add_edge("a", "zzz")
        with pytest.raises(LlamaError):
            p.add_edge("a", "zzz")


class TestPaths:
    def test_paths_from_source_of_a_diamond(self):
        p = _diamond()
        assert sorted(p.paths_from("s")) == [["s", "a", "t"], ["s", "b", "t"]]
        assert sorted(p.paths()) == [["s", "a", "t"], ["s", "b", "t"]]

    def test_paths_from_inner_op_and_sink(self):
        p = _diamond()
        assert p.paths_from("a") == [["a", "t"]]
        assert p.paths_from("t") == [["t"]]

    def test_paths_reach_every_sink(self):
        # s -> a -> t, s -> b (b is a second sink), x -> t (a second source)
        p = _pipeline("p", ["s", "a", "b", "t", "x"])
        for u, v in [("s", "a"), ("a", "t"), ("s", "b"), ("x", "t")]:
            p.add_edge(u, v)
        assert sorted(p.sources()) == ["s", "x"]
        assert sorted(p.sinks()) == ["b", "t"]
        assert sorted(p.paths_from("s")) == [["s", "a", "t"], ["s", "b"]]
        assert sorted(p.paths()) == [["s", "a", "t"], ["s", "b"], ["x", "t"]]

    def test_depth_is_the_longest_path_from_a_source(self):
        # s -> a -> b -> t and the shortcut s -> t; a second source x -> t.
        p = _pipeline("p", ["s", "a", "b", "t", "x"])
        for u, v in [("s", "a"), ("a", "b"), ("b", "t"), ("s", "t"), ("x", "t")]:
            p.add_edge(u, v)
        assert p.depth("s") == 0
        assert p.depth("x") == 0
        assert p.depth("a") == 1
        assert p.depth("b") == 2
        assert p.depth("t") == 3  # s-a-b-t has 3 edges; s-t and x-t have 1

    def test_depth_of_a_lone_op_is_zero(self):
        assert _pipeline("p", ["a"]).depth("a") == 0


class TestExpectedCounts:
    @staticmethod
    def _video() -> Pipeline:
        # split -(8)-> seg -(1, p=0.25)-> alarm -(2)-> join
        #              seg -(3)----------> crop  -(1)-> join
        # join -(5)-> merge (gather) -(2)-> post
        p = _pipeline(
            "video",
            ["split", "seg", "alarm", "crop", "join", "merge", "post"],
            gather=("merge",),
        )
        p.add_edge("split", "seg", fanout=8)
        p.add_edge("seg", "alarm", fire_prob=0.25)
        p.add_edge("seg", "crop", fanout=3)
        p.add_edge("alarm", "join", fanout=2)
        p.add_edge("crop", "join")
        p.add_edge("join", "merge", fanout=5)
        p.add_edge("merge", "post", fanout=2)
        return p

    def test_declared_fanout_branch_odds_and_gather(self):
        counts = self._video().expected_counts()
        assert counts == pytest.approx(
            {
                "split": 1.0,  # a source
                "seg": 8.0,  # 1 x 8
                "alarm": 2.0,  # 8 x (1 x 0.25)
                "crop": 24.0,  # 8 x 3
                "join": 24.0,  # max(alarm 2 x 2 = 4, crop 24 x 1 = 24)
                "merge": 1.0,  # gather: once per source whatever comes in
                "post": 2.0,  # 1 x 2
            }
        )

    def test_learned_edge_rates_override_declared_ones(self):
        learned = {("seg", "crop"): 0.5, ("alarm", "join"): 20.0}
        counts = self._video().expected_counts(learned)
        assert counts["seg"] == pytest.approx(8.0)  # not learned: 1 x 8
        assert counts["alarm"] == pytest.approx(2.0)  # not learned: 8 x 0.25
        assert counts["crop"] == pytest.approx(4.0)  # learned: 8 x 0.5
        assert counts["join"] == pytest.approx(40.0)  # max(2 x 20 = 40, 4 x 1 = 4)
        assert counts["merge"] == pytest.approx(1.0)

    def test_edge_rate_is_fanout_times_fire_prob(self):
        p = self._video()
        assert p.edge_rate("seg", "alarm") == pytest.approx(0.25)  # 1 x 0.25
        assert p.edge_rate("split", "seg") == pytest.approx(8.0)  # 8 x 1
