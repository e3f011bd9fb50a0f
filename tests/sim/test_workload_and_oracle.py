"""Tests of the simulated workload (expansion, truth, archives) and of the oracle.

The oracle is checked against brute force: every combination of configurations of a
small video, its latency from the critical path, the cheapest that meets the SLO.
"""

from __future__ import annotations

import itertools
import math

import pytest

from llama_prefect.core.options import build_options
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.sim.oracle import Oracle
from llama_prefect.sim.workload import (
    GPU,
    LAMBDA,
    OPS,
    VM,
    ArchiveMix,
    Assumptions,
    build_workload,
    load_source,
    make_archive,
)

CPU = "local-cpu"


def _source() -> ProfileStore:
    store = ProfileStore("crossing")
    store.seed("split", Configuration(CPU), 0.01)
    store.seed("aggregate", Configuration(CPU), 0.001)
    store.seed("motion", Configuration.of(CPU, {"sample_every": 1}), 0.04)
    store.seed("motion", Configuration.of(CPU, {"sample_every": 4}), 0.012)
    store.seed("people", Configuration.of(CPU, {"stride": 8, "threads": 1}), 0.5)
    store.seed("people", Configuration.of(CPU, {"stride": 8, "threads": 2}), 0.3)
    store.seed(
        "people", Configuration.of(CPU, {"stride": 16, "threads": 1}), 0.1, accuracy=0.7
    )
    store.seed("faces", Configuration.of(CPU, {"model": "mtcnn", "threads": 1}), 0.3)
    store.seed("faces", Configuration.of(CPU, {"model": "haar", "threads": 1}), 0.05)
    for op in OPS:
        store.observe_units(op, 10.0 if op in ("motion", "people", "faces") else 1.0)
    return store


class TestExpansion:
    def test_every_cpu_configuration_runs_on_the_pool_and_on_lambda(self):
        w = build_workload(_source())
        people = w.profiles.configurations("people")
        t2 = Configuration.of(CPU, {"stride": 8, "threads": 2})
        assert Configuration.of(VM, t2.as_dict()) in people
        for memory in (1024, 1769, 3008):
            lam = Configuration.of(LAMBDA, {**t2.as_dict(), "memory_mb": memory})
            # two threads want 2 x 1769 MB of CPU: 1024 MB runs 3.46x slower
            slower = max(1.0, 2 / (memory / 1769))
            assert w.profiles.predict_s_per_unit("people", lam) == pytest.approx(
                0.3 * slower
            )
        assert not any(c.backend == GPU for c in people)  # HOG: no GPU build

    def test_torch_bodies_also_run_on_the_gpu_one_or_eight_per_call(self):
        w = build_workload(_source())
        gpu = [c for c in w.profiles.configurations("faces") if c.backend == GPU]
        assert sorted(c.call_batch for c in gpu) == [1, 8]  # MTCNN only, not Haar
        assert all(c.as_dict()["model"] == "mtcnn" for c in gpu)
        one = next(c for c in gpu if c.call_batch == 1)
        assert w.profiles.predict_s_per_unit("faces", one) == pytest.approx(0.3 * 0.1)

    def test_the_steep_workload_gives_people_a_gpu_build(self):
        w = build_workload(_source(), assumptions=Assumptions.steep())
        assert any(c.backend == GPU for c in w.profiles.configurations("people"))

    def test_truth_differs_from_the_profile_by_a_seeded_error(self):
        a = build_workload(_source(), seed=3)
        b = build_workload(_source(), seed=3)
        assert a.true_s_per_unit == b.true_s_per_unit
        ratios = [
            a.true_s_per_unit[(op, c.key)] / a.profiles.predict_s_per_unit(op, c)
            for op in OPS
            for c in a.profiles.configurations(op)
        ]
        assert len(set(ratios)) > 10 and all(0.4 < r < 2.5 for r in ratios)

    def test_missing_ops_say_how_to_fix(self):
        with pytest.raises(ValueError, match="llama-prefect profile"):
            build_workload(ProfileStore("crossing"))

    def test_the_shipped_seed_profile_loads(self):
        store, origin = load_source(None)
        assert origin.endswith("crossing_profile.json")
        assert all(store.has(op) for op in OPS)


class TestArchives:
    def test_archives_are_drawn_once_from_their_seed(self):
        w = build_workload(_source())
        mix = ArchiveMix(videos=20, seed=5)
        first, again = make_archive(w, mix), make_archive(w, mix)
        assert [v.segments for v in first] == [v.segments for v in again]
        assert [v.noise for v in first] == [v.noise for v in again]
        assert all(6 <= v.segments <= 20 for v in first)
        assert [v.arrival_s for v in first[:3]] == [0.0, 2.0, 4.0]

    def test_branch_odds_and_content_vary_per_video(self):
        w = build_workload(_source())
        videos = make_archive(w, ArchiveMix(videos=50, seed=2))
        moving = [sum(v.moving) / v.segments for v in videos]
        assert max(moving) - min(moving) > 0.3
        assert len({round(v.content["people"], 3) for v in videos}) > 40


def _points(w, video, op: str, segment: int) -> list[tuple[float, float]]:
    """(latency, cost) of every eligible configuration of one invocation."""
    capacity = {LAMBDA: 1 << 20}
    options = build_options(
        w.profiles, PriceCatalog.load(), op, capacity, dict.fromkeys(capacity, True)
    )
    out = []
    for o in options:
        if o.accuracy < 0.8:
            continue
        run_s = w.true_s(video, op, o.config.key, segment, 1.0) * o.call_batch
        out.append((run_s, o.usd(run_s) / o.call_batch))
    return out


def _brute_force(w, video, slo_s: float) -> float:
    """Cheapest plan by trying every combination (small videos only)."""
    instances = [("split", 0), ("aggregate", 0)]
    for s in range(video.segments):
        instances.append(("motion", s))
        if video.moving[s]:
            instances.append(("people", s))
            if video.faces[s]:
                instances.append(("faces", s))
    options = {(op, s): _points(w, video, op, s) for op, s in instances}
    best = math.inf
    for choice in itertools.product(*(options[i] for i in instances)):
        points = dict(zip(instances, choice, strict=True))
        chains = [
            sum(
                points[(op, s)][0]
                for op in ("motion", "people", "faces")
                if (op, s) in points
            )
            for s in range(video.segments)
        ]
        latency = points[("split", 0)][0] + max(chains) + points[("aggregate", 0)][0]
        if latency <= slo_s:
            best = min(best, sum(p[1] for p in points.values()))
    return best


@pytest.mark.parametrize("slo_s", [3.0, 6.0, 30.0])
def test_oracle_matches_brute_force_on_small_videos(slo_s):
    w = build_workload(_source())
    videos = make_archive(w, ArchiveMix(videos=4, segments=(1, 2), seed=11))
    oracle = Oracle(w, (LAMBDA,), accuracy_floor=0.8, drift=1.0)
    for video in videos:
        found = oracle.video(video, slo_s)
        expected = _brute_force(w, video, slo_s)
        if math.isinf(expected):
            assert not found.feasible
        else:
            assert found.feasible and found.latency_s <= slo_s + 1e-9
            assert found.cost_usd == pytest.approx(expected, rel=1e-9)


def test_oracle_respects_the_accuracy_floor():
    w = build_workload(_source())
    oracle = Oracle(w, (LAMBDA,), accuracy_floor=0.8, drift=1.0)
    used = {o.config.as_dict().get("stride") for _, o in oracle._eligible["people"]}
    assert 16 not in used  # the 0.7-accurate configuration never counts
