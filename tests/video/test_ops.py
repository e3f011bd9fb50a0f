"""Tests for llama_prefect.video.ops: motion, people, faces and the aggregate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llama_prefect.errors import BackendUnavailableError, ConfigurationError
from llama_prefect.video import ops
from llama_prefect.video.ops import FaceResult, PeopleResult, VideoAnswer
from llama_prefect.video.segments import Segment, VideoInfo, probe, split

pytestmark = pytest.mark.video


def whole(path: Path) -> Segment:
    """The whole clip as one segment."""
    return split(probe(path), 1000.0)[0]


@pytest.fixture(scope="module")
def busy(vtest_dir: Path) -> Segment:
    """3 s of vtest (30 frames) with two to four pedestrians in view."""
    return whole(vtest_dir / "vtest_h264.mp4")


def test_motion_finds_walking_people(busy: Segment) -> None:
    result = ops.motion_score(busy, sample_every=5)

    assert result.moving
    assert result.score > 0.02
    assert result.frames == 6


def test_motion_is_zero_on_a_still_scene(vtest_dir: Path) -> None:
    result = ops.motion_score(whole(vtest_dir / "still_h264.mp4"))

    assert not result.moving
    assert result.score < 0.001


def test_motion_needs_two_frames(busy: Segment) -> None:
    one_frame = busy.model_copy(update={"end_frame": busy.start_frame + 1})

    assert ops.motion_score(one_frame) == ops.MotionResult(
        moving=False, score=0.0, frames=1
    )


def test_motion_on_missing_cuda_says_so(busy: Segment) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")

    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        ops.motion_score(busy, device="cuda")


@pytest.mark.parametrize(
    ("knobs", "words"),
    [({"device": "tpu"}, "device must be"), ({"threshold": 1.5}, "threshold")],
)
def test_motion_rejects_bad_knobs(
    busy: Segment, knobs: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ops.motion_score(busy, **knobs)  # type: ignore[arg-type]


def test_people_are_found_in_most_frames(busy: Segment) -> None:
    result = ops.count_people(busy, sample_every=5, width_px=768)

    assert result.frame_indices == [0, 5, 10, 15, 20, 25]
    assert result.times_s == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert sum(n >= 1 for n in result.counts) >= 5
    assert max(result.counts) <= 8


def test_people_counts_do_not_depend_on_threads(busy: Segment) -> None:
    knobs = {"sample_every": 6, "width_px": 640, "win_stride_px": 8}

    one = ops.count_people(busy, threads=1, **knobs)  # type: ignore[arg-type]
    two = ops.count_people(busy, threads=2, **knobs)  # type: ignore[arg-type]

    assert one == two


@pytest.mark.parametrize("knobs", [{"threads": 0}, {"win_stride_px": 0}])
def test_people_rejects_bad_knobs(busy: Segment, knobs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError, match="must be an int >= 1, but got 0"):
        ops.count_people(busy, **knobs)  # type: ignore[arg-type]


def test_haar_finds_the_face_in_carphone(carphone: Path) -> None:
    segment = split(probe(carphone), 1.0)[0]

    result = ops.count_faces(segment, sample_every=10, model="haar", threads=2)

    assert result.model == "haar"
    assert result.frame_indices == [0, 10, 20]
    assert all(n == 1 for n in result.counts)


def test_haar_runs_on_a_street_scene(busy: Segment) -> None:
    result = ops.count_faces(busy, sample_every=15)

    assert result.frame_indices == [0, 15]
    assert all(n >= 0 for n in result.counts)


def test_mtcnn_finds_the_face_in_carphone(carphone: Path) -> None:
    if not ops.mtcnn_available():
        pytest.skip("facenet-pytorch does not import here")
    segment = split(probe(carphone), 1.0)[0]

    result = ops.count_faces(segment, sample_every=15, model="mtcnn")

    assert result == FaceResult(frame_indices=[0, 15], counts=[1, 1], model="mtcnn")


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"model": "yolo"}, "model must be one of haar, mtcnn"),
        ({"model": "haar", "device": "cuda"}, "CPU only"),
    ],
)
def test_faces_rejects_bad_knobs(
    busy: Segment, knobs: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ops.count_faces(busy, **knobs)  # type: ignore[arg-type]


def video_30s() -> VideoInfo:
    return VideoInfo(
        path="cam.mp4",
        fps=10.0,
        num_frames=300,
        width_px=768,
        height_px=576,
        codec="h264",
    )


def people(times_s: list[float], counts: list[int]) -> PeopleResult:
    indices = [round(t * 10) for t in times_s]
    return PeopleResult(frame_indices=indices, times_s=times_s, counts=counts)


def test_aggregate_averages_people_per_window() -> None:
    results = [people([1.0, 2.0], [4, 6]), people([25.0, 29.9], [1, 0])]
    faces = [FaceResult(frame_indices=[10, 20], counts=[0, 2], model="haar")]

    answer = ops.aggregate(
        video_30s(), results, faces, segments=6, segments_with_motion=2
    )

    assert answer == VideoAnswer(
        video="cam.mp4",
        duration_s=30.0,
        window_s=10.0,
        people_per_window=[5.0, 0.0, 0.5],
        max_people=6,
        faces_seen=2,
        crowded_windows=1,
        crowded=True,
        segments=6,
        segments_with_motion=2,
        segments_with_people=2,
    )


def test_aggregate_is_calm_below_the_threshold() -> None:
    answer = ops.aggregate(
        video_30s(),
        [people([3.0, 14.0], [3, 3])],
        [],
        segments=3,
        segments_with_motion=1,
        window_s=7.0,
        crowd_threshold=3.5,
    )

    assert answer.people_per_window == [3.0, 0.0, 3.0, 0.0, 0.0]
    assert (answer.crowded_windows, answer.crowded) == (0, False)
    assert answer.faces_seen == 0


def test_aggregate_of_nothing_is_empty_windows() -> None:
    answer = ops.aggregate(video_30s(), [], [], segments=3, segments_with_motion=0)

    assert answer.people_per_window == [0.0, 0.0, 0.0]
    assert (answer.max_people, answer.segments_with_people) == (0, 0)
    assert VideoAnswer.model_validate_json(answer.model_dump_json()) == answer


@pytest.mark.parametrize("window_s", [0.0, -5.0, math.nan])
def test_aggregate_rejects_a_bad_window(window_s: float) -> None:
    with pytest.raises(ConfigurationError, match="window_s"):
        ops.aggregate(
            video_30s(), [], [], segments=1, segments_with_motion=0, window_s=window_s
        )
