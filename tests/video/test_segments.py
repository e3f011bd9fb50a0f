"""Tests for llama_prefect.video.segments: probe and split."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from pydantic import ValidationError

from llama_prefect.errors import ConfigurationError, VideoError
from llama_prefect.video.segments import Segment, VideoInfo, probe, split

pytestmark = pytest.mark.video


def decoded_frame_count(path: Path) -> int:
    """Frames a full PyAV decode returns: the ground truth for probe."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def test_probe_describes_a_synthetic_clip(clips_dir: Path) -> None:
    info = probe(clips_dir / "testsrc_h264.mp4")

    assert info.num_frames == 50
    assert info.fps == pytest.approx(25.0)
    assert (info.width_px, info.height_px, info.codec) == (320, 240, "h264")
    assert info.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["vtest_h264.mp4", "vtest_mpeg4.avi"])
def test_probe_counts_the_frames_a_decoder_returns(vtest_dir: Path, name: str) -> None:
    info = probe(vtest_dir / name)

    assert info.num_frames == decoded_frame_count(vtest_dir / name) == 30
    assert info.fps == pytest.approx(10.0)


def test_probe_trusts_packets_over_a_wrong_header(vtest_dir: Path) -> None:
    path = vtest_dir / "truncated.avi"
    with av.open(str(path)) as container:
        header_frames = container.streams.video[0].frames

    info = probe(path)

    assert info.num_frames == decoded_frame_count(path)
    assert info.num_frames < header_frames
    assert info.declared_frames == header_frames and info.cut_short


def test_a_whole_file_is_not_cut_short(vtest_dir: Path) -> None:
    info = probe(vtest_dir / "vtest_mpeg4.avi")
    assert info.declared_frames in (0, info.num_frames)
    assert not info.cut_short


def test_splitting_a_file_cut_short_warns_with_both_counts(vtest_dir) -> None:
    import logging

    from llama_prefect.flows.crossing import split as split_task

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    # A handler of the module's own: Prefect may set up logging again mid-test.
    seen = Lines()
    module_logger = logging.getLogger("llama_prefect.flows.crossing")
    module_logger.addHandler(seen)
    try:
        cut = split_task.fn(str(vtest_dir / "truncated.avi"), 1.0)
    finally:
        module_logger.removeHandler(seen)
    assert cut.info.cut_short
    (line,) = [text for text in seen.lines if "cut short" in text]
    assert f"declares {cut.info.declared_frames} frames" in line
    assert f"holds {cut.info.num_frames}" in line


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing.mp4", "does not exist"),
        ("empty.mp4", r"empty \(0 bytes\)"),
        ("not_a_video.mp4", "cannot be read as a video"),
        ("audio_only.m4a", "no video stream"),
    ],
)
def test_probe_rejects_what_is_not_a_video(
    clips_dir: Path, name: str, words: str
) -> None:
    with pytest.raises(VideoError, match=words) as caught:
        probe(clips_dir / name)

    assert name in str(caught.value)


def make_info(num_frames: int, fps: float) -> VideoInfo:
    return VideoInfo(
        path="v.mp4",
        fps=fps,
        num_frames=num_frames,
        width_px=64,
        height_px=48,
        codec="h264",
    )


@pytest.mark.parametrize(
    ("num_frames", "fps", "segment_s", "lengths"),
    [
        (30, 10.0, 1.0, [10, 10, 10]),
        (31, 10.0, 1.0, [10, 10, 10, 1]),
        (795, 10.0, 5.0, [50] * 15 + [45]),
        (120, 30000 / 1001, 1.0, [30] * 4),
        (5, 25.0, 60.0, [5]),
        (5, 25.0, 0.001, [1] * 5),
    ],
)
def test_split_covers_every_frame_once_in_order(
    num_frames: int, fps: float, segment_s: float, lengths: list[int]
) -> None:
    segments = split(make_info(num_frames, fps), segment_s)

    assert [s.num_frames for s in segments] == lengths
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[0].start_frame == 0
    assert segments[-1].end_frame == num_frames
    for before, after in zip(segments, segments[1:], strict=False):
        assert before.end_frame == after.start_frame


def test_segment_times_follow_the_frame_rate() -> None:
    second = split(make_info(100, 20.0), 2.0)[1]

    assert (second.start_frame, second.end_frame) == (40, 80)
    assert (second.start_s, second.end_s) == (2.0, 4.0)


@pytest.mark.parametrize("segment_s", [0.0, -1.0, float("nan"), float("inf")])
def test_split_rejects_a_bad_length(segment_s: float) -> None:
    with pytest.raises(ConfigurationError, match="segment_s must be a positive"):
        split(make_info(10, 10.0), segment_s)


def test_models_are_frozen_and_round_trip_through_json() -> None:
    info = make_info(30, 10.0)
    segment = split(info, 1.0)[2]

    assert VideoInfo.model_validate_json(info.model_dump_json()) == info
    assert Segment.model_validate_json(segment.model_dump_json()) == segment
    with pytest.raises(ValidationError):
        segment.index = 5  # type: ignore[misc]
