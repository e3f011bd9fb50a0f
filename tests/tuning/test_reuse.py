"""Tests of profile reuse: signatures, their distance, and the reuse decision.

The decision is tested on real clips cut from vtest.avi, with the exploration itself
replaced by a stand-in that counts its calls (the exploration has its own tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from llama_prefect.tuning.reuse import (
    REUSE_DISTANCE,
    ArchiveSignature,
    distance,
    distance_terms,
    nearest_profile,
)

from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.video.samples import find_vtest

BASE = ArchiveSignature(
    videos=2,
    frames=400,
    megapixels_per_frame=0.44,
    fps=10.0,
    codecs={"h264": 1.0},
    motion_share=0.8,
    people_per_frame=2.5,
)


def _with(**changes) -> ArchiveSignature:
    return ArchiveSignature(**{**BASE.to_dict(), **changes})


class TestDistance:
    def test_same_archive_is_at_distance_zero(self):
        assert distance(BASE, ArchiveSignature.from_dict(BASE.to_dict())) == 0.0

    @pytest.mark.parametrize(
        "changes, term",
        [
            ({"megapixels_per_frame": 0.44 * 1.5}, "megapixels_per_frame"),
            ({"fps": 15.0}, "fps"),
            ({"codecs": {"h264": 0.75, "mpeg4": 0.25}}, "codecs"),
            ({"motion_share": 0.55}, "motion_share"),
            ({"people_per_frame": 1.5 * 3.5 - 1}, "people_per_frame"),
        ],
    )
    def test_each_statistic_at_its_tolerance_is_distance_one(self, changes, term):
        terms = distance_terms(_with(**changes), BASE)
        assert terms[term] == pytest.approx(1.0)
        assert distance(_with(**changes), BASE) == pytest.approx(1.0)

    def test_the_worst_statistic_decides(self):
        other = _with(megapixels_per_frame=0.44 * 4, motion_share=0.7)
        assert distance(other, BASE) == pytest.approx(2.0 / 0.58496, rel=1e-3)

    def test_signature_weights_videos_by_frames(self):
        sig = ArchiveSignature.of_videos(
            [(300, 0.4, 10.0, "h264"), (100, 0.1, 30.0, "mpeg4")],
            motion_share=0.5,
            people_per_frame=1.0,
        )
        assert sig.frames == 400
        assert sig.megapixels_per_frame == pytest.approx(0.325)
        assert sig.fps == pytest.approx(15.0)
        assert sig.codecs == {"h264": 0.75, "mpeg4": 0.25}


def _store_file(folder: Path, name: str, signature, floor=0.8, pipeline="crossing"):
    store = ProfileStore(pipeline)
    store.seed("people", Configuration.of("local-cpu", {"w": 1}), 0.1)
    store.meta["exploration"] = {"accuracy_floor": floor}
    if signature is not None:
        store.meta["measured_on"] = {"signature": signature.to_dict()}
    return store.save(folder / name)


class TestNearest:
    def test_picks_the_nearest_of_the_same_pipeline_and_floor(self, tmp_path):
        _store_file(tmp_path, "far.json", _with(motion_share=0.0))
        near = _store_file(tmp_path, "near.json", _with(motion_share=0.7))
        _store_file(tmp_path, "other-floor.json", BASE, floor=0.5)
        _store_file(tmp_path, "other-pipeline.json", BASE, pipeline="other")
        _store_file(tmp_path, "old.json", None)
        (tmp_path / "notes.json").write_text("not a store")
        match = nearest_profile(BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8)
        assert match.path == near and match.reusable
        assert match.distance == pytest.approx(0.4)

    def test_the_store_in_use_wins_a_tie_with_its_older_copy(self, tmp_path):
        # An older save of the same archive sorts first ("crossing.<digest>");
        # taking it would swap the two stores at every call.
        _store_file(tmp_path, "crossing.aef73be0.json", BASE)
        in_use = _store_file(tmp_path, "crossing.json", BASE)
        first = nearest_profile(BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8)
        assert first.path.name == "crossing.aef73be0.json"  # by name alone
        match = nearest_profile(
            BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8, prefer=in_use
        )
        assert match.path == in_use and match.distance == 0.0

    def test_nothing_close_is_not_reusable_and_says_why(self, tmp_path):
        _store_file(tmp_path, "far.json", _with(codecs={"mpeg4": 1.0}))
        match = nearest_profile(BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8)
        assert match.distance > REUSE_DISTANCE and not match.reusable
        assert "codecs 4.00" in match.why()

    def test_an_empty_folder_has_no_match(self, tmp_path):
        assert (
            nearest_profile(BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8)
            is None
        )


# -- the decision on real clips --------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, list[str]]:
    """Three one-clip archives: two H.264 cuts of vtest, and a quarter-size MPEG-4."""
    source = find_vtest()
    if source is None or shutil.which("ffmpeg") is None:
        pytest.skip("vtest.avi and ffmpeg are needed: run `make system`")
    folder = tmp_path_factory.mktemp("reuse")
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
    cuts = {"a": ("20", h264, []), "a2": ("40", h264, [])}
    cuts["small"] = (
        "20",
        ["-c:v", "mpeg4", "-q:v", "3", "-an"],
        ["-vf", "scale=384:288"],
    )
    found = {}
    for name, (at, codec, scale) in cuts.items():
        path = folder / name / f"{name}.mp4"
        path.parent.mkdir()
        _ffmpeg("-ss", at, "-t", "8", "-i", str(source), *scale, *codec, str(path))
        found[name] = [str(path)]
    return found


@pytest.fixture()
def stand_in(monkeypatch):
    """Replaces the exploration with a toy one and counts its calls."""
    import llama_prefect.flows.crossing as crossing
    from llama_prefect.tuning.explore import ExplorationResult

    calls = []

    def fake(work, videos, floor, *args):
        calls.append(list(videos))
        store = ProfileStore("crossing")
        store.seed("people", Configuration.of("local-cpu", {"w": 1}), 0.1)
        store.meta["exploration"] = {"accuracy_floor": floor}
        return ExplorationResult(store, [], 1.0, 1e-6)

    monkeypatch.setattr(crossing, "_explore_archive", fake)
    return calls


@pytest.mark.video
def test_a_similar_archive_reuses_and_a_different_one_explores(
    archives, stand_in, tmp_path
):
    from llama_prefect.flows.crossing import seed_profiles

    path = tmp_path / "profiles" / "crossing.json"
    first = seed_profiles(archives["a"], path, reexplore=False, progress=False)
    assert first.exploration is not None and len(stand_in) == 1

    again = seed_profiles(archives["a2"], path, reexplore=False, progress=False)
    assert again.exploration is None and len(stand_in) == 1  # reused, not explored
    assert again.reused.path == path and again.reused.distance <= REUSE_DISTANCE

    plots = path.with_suffix(".plots")  # what the CLI draws of the first store
    plots.mkdir()
    (plots / "pareto-people-local-cpu.png").write_bytes(b"first")
    other = seed_profiles(archives["small"], path, reexplore=False, progress=False)
    assert other.exploration is not None and len(stand_in) == 2
    # the first archive's store stays in the folder, renamed, for later reuse
    kept = [p for p in path.parent.glob("crossing.*.json")]
    assert len(kept) == 1
    data = json.loads(kept[0].read_text())
    assert data["meta"]["measured_on"]["videos"] == archives["a"]
    # its plots go with it: none is left to pass for the new store's
    assert not plots.exists()
    kept_plot = kept[0].with_suffix(".plots") / "pareto-people-local-cpu.png"
    assert kept_plot.read_bytes() == b"first"
    plots.mkdir()
    (plots / "pareto-people-local-cpu.png").write_bytes(b"small")

    back = seed_profiles(archives["a2"], path, reexplore=False, progress=False)
    assert back.exploration is None and back.reused.path == kept[0]
    assert json.loads(path.read_text())["meta"]["reused_from"]["path"] == str(kept[0])
    # the reused store's plots come back with it
    assert (plots / "pareto-people-local-cpu.png").read_bytes() == b"first"

    # The store in use now fits as well as its copy beside it: it stays in use,
    # with what it learned, instead of trading places with the copy at every call.
    in_use = path.read_text()
    stays = seed_profiles(archives["a2"], path, reexplore=False, progress=False)
    assert stays.exploration is None and stays.reused.path == path
    assert path.read_text() == in_use


@pytest.mark.video
def test_reexplore_forces_an_exploration(archives, stand_in, tmp_path):
    from llama_prefect.flows.crossing import seed_profiles

    path = tmp_path / "crossing.json"
    seed_profiles(archives["a"], path, reexplore=False, progress=False)
    first = path.read_text()
    seed_profiles(archives["a"], path, reexplore=True, progress=False)
    assert len(stand_in) == 2
    # the store it replaced, and all it had learned, is kept beside it
    (kept,) = tmp_path.glob("crossing.*.json")
    assert kept.read_text() == first


def test_a_store_of_other_work_units_is_never_reused(tmp_path):
    units = {"people": "megapixel"}
    _store_file(tmp_path, "unsaid.json", BASE)  # written before units were recorded
    other = ProfileStore.load(_store_file(tmp_path, "frames.json", BASE))
    other.meta["units"] = {"people": "frame"}
    other.save(tmp_path / "frames.json")
    assert (
        nearest_profile(
            BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8, units=units
        )
        is None
    )
    same = ProfileStore.load(tmp_path / "frames.json")
    same.meta["units"] = dict(units)
    same.save(tmp_path / "same.json")
    match = nearest_profile(
        BASE, tmp_path, pipeline="crossing", accuracy_floor=0.8, units=units
    )
    assert match.path == tmp_path / "same.json" and match.distance == 0.0
