"""Tests for llama_prefect.video.decoders: the three decoders agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llama_prefect.errors import ConfigurationError, VideoError
from llama_prefect.video.decoders import DECODERS, read_frames, resized_shape
from llama_prefect.video.segments import Segment, probe, split

pytestmark = pytest.mark.video


def assert_decoders_agree(segment: Segment, sample_every: int) -> None:
    """Same frame numbers from every decoder, pixels within 3 levels on average."""
    results = {
        name: read_frames(segment, decoder=name, sample_every=sample_every)
        for name in DECODERS
    }
    wanted = list(range(segment.start_frame, segment.end_frame, sample_every))
    reference = results["pyav"].array.astype(np.int16)
    for name, frames in results.items():
        assert frames.indices == wanted, name
        assert frames.array.shape == reference.shape, name
        assert frames.array.dtype == np.uint8, name
        assert np.abs(frames.array - reference).mean() < 3.0, name


@pytest.mark.parametrize("name", ["vtest_h264.mp4", "vtest_mpeg4.avi"])
def test_decoders_agree_on_every_segment(vtest_dir: Path, name: str) -> None:
    for segment in split(probe(vtest_dir / name), 1.3):
        assert_decoders_agree(segment, sample_every=3)


def test_decoders_agree_on_b_frames(clips_dir: Path) -> None:
    segment = split(probe(clips_dir / "testsrc_h264.mp4"), 0.7)[1]

    assert_decoders_agree(segment, sample_every=2)


def test_decoders_agree_after_a_seek_into_a_long_gop(vtest_full: Path) -> None:
    segment = split(probe(vtest_full), 4.0)[10]  # frames 400-439

    assert_decoders_agree(segment, sample_every=7)


def test_frames_differ_from_one_sample_to_the_next(clips_dir: Path) -> None:
    segment = split(probe(clips_dir / "testsrc_h264.mp4"), 10.0)[0]

    frames = read_frames(segment, decoder="opencv", sample_every=10)

    assert frames.indices == [0, 10, 20, 30, 40]
    assert all(
        np.any(a != b) for a, b in zip(frames.array[:-1], frames.array[1:], strict=True)
    )


@pytest.mark.parametrize("decoder", DECODERS)
def test_resize_keeps_the_aspect_ratio(vtest_dir: Path, decoder: str) -> None:
    segment = split(probe(vtest_dir / "vtest_h264.mp4"), 1.0)[0]

    frames = read_frames(segment, decoder=decoder, sample_every=5, width_px=320)

    assert frames.array.shape == (2, 240, 320, 3)


def test_resized_shape_rounds_height_to_even_and_never_enlarges() -> None:
    assert resized_shape(576, 768, 320) == (240, 320)
    assert resized_shape(272, 640, 100) == (42, 100)
    assert resized_shape(240, 320, 100) == (76, 100)
    assert resized_shape(144, 176, 640) == (144, 176)
    assert resized_shape(144, 176, None) == (144, 176)


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"decoder": "ffmpeg", "sample_every": 1}, "pyav, decord, opencv.*'ffmpeg'"),
        ({"decoder": "pyav", "sample_every": 0}, "sample_every must be >= 1.* 0"),
        ({"decoder": "pyav", "sample_every": 2.5}, "sample_every must be an int"),
        ({"decoder": "pyav", "sample_every": 1, "width_px": 4}, "width_px .* 4"),
    ],
)
def test_read_frames_rejects_bad_knobs(
    clips_dir: Path, knobs: dict[str, object], words: str
) -> None:
    segment = split(probe(clips_dir / "testsrc_h264.mp4"), 1.0)[0]

    with pytest.raises(ConfigurationError, match=words):
        read_frames(segment, **knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_names_a_file_it_cannot_open(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "gone.mp4"
    segment = Segment(
        video=str(path),
        index=0,
        start_frame=0,
        end_frame=10,
        fps=10.0,
        width_px=64,
        height_px=48,
    )

    with pytest.raises(VideoError, match="gone.mp4"):
        read_frames(segment, decoder=decoder, sample_every=1)


@pytest.mark.parametrize("decoder", DECODERS)
def test_read_frames_reports_frames_past_the_end(clips_dir: Path, decoder: str) -> None:
    info = probe(clips_dir / "testsrc_h264.mp4")
    beyond = split(info, 1.0)[1].model_copy(update={"end_frame": 60})

    with pytest.raises(VideoError, match="did not return frames \\[50, 55\\]"):
        read_frames(beyond, decoder=decoder, sample_every=5)


_DECODE_DAMAGED = """
import sys
from llama_prefect.video.decoders import read_frames_here
from llama_prefect.video.segments import probe, split
for decoder in ("opencv", "decord"):
    segment = split(probe(sys.argv[1]), 100.0)[0]
    try:
        read_frames_here(segment, decoder=decoder, sample_every=1)
    except Exception as exc:  # a damaged file may end the read: not the point here
        print(type(exc).__name__)
"""


@pytest.mark.parametrize("logs", ["", "1"])
def test_ffmpeg_messages_about_damaged_data_stay_off_the_terminal(
    vtest_full, tmp_path, logs
):
    # The MS-MPEG-4 clip cut off mid-stream: OpenCV's and decord's FFmpeg print
    # lines such as "[msmpeg4 @ 0x...] ac-tex damaged" for it. They stay quiet
    # unless LLAMA_PREFECT_DECODER_LOGS=1 asks for them (a fresh process each
    # time: OpenCV reads its FFmpeg level once per process).
    import os
    import subprocess
    import sys

    damaged = tmp_path / "cut.avi"
    damaged.write_bytes(vtest_full.read_bytes()[:600_000])
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    env["LLAMA_PREFECT_DECODER_LOGS"] = logs
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_DAMAGED, str(damaged)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ffmpeg_lines = [x for x in done.stderr.splitlines() if "[msmpeg4 @" in x]
    assert bool(ffmpeg_lines) is (logs == "1")
