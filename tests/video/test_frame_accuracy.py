"""Frame accuracy: sparse and batched reads return the frames a sequential pass does.

For each decoder, the ground truth is that decoder's own plain pass over the whole file
from the first frame (written here, independent of the adapters): frame i is the i-th
picture it returns, turned upright by the probed rotation. Sparse reads (`read_frames`
on segments that start between keyframes, every third frame) and batched reads
(`read_batch` of scattered frame numbers) must return the very same pictures, byte for
byte, compared by hash. Files: constant rate, B-frames, variable rate, long VP8 and
MPEG-4 Part 2.

What each decoder needs from its adapter to pass, in short: PyAV numbers frames from
the anchor keyframe instead of from timestamps (on the variable-rate file its
timestamps times the average rate skip and repeat numbers); decord is used as it is;
OpenCV reads a variable-rate file from its start, because its seek by frame number is
a seek by timestamp. Rotation: PyAV ignores the display matrix and the adapter turns
its frames; OpenCV's own turning is switched off and the adapter turns its frames the
same way; decord 0.6 turns frames upright itself, so the adapter leaves them (and the
sequential pass here does too).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import av
import numpy as np
import pytest

from llama_prefect.video.decoders import DECODERS, read_batch, read_frames
from llama_prefect.video.segments import probe, split

pytestmark = pytest.mark.video

FILES = ["cfr.mp4", "bframes.mp4", "vfr.mp4", "vp8_long.webm", "mpeg4.avi"]


def upright(rgb: np.ndarray, rotation_deg: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, k=-(rotation_deg // 90)))


def sequential_frames(path: Path, decoder: str) -> list[np.ndarray]:
    """Every frame, in order, from one plain pass of `decoder` over the file."""
    if decoder == "pyav":
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if decoder == "decord":
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        frames = []
        while True:
            try:
                frames.append(reader.next().asnumpy())
            except StopIteration:
                return frames
    import cv2

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            capture.release()
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def digest(frame: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def truth(corpus: Path) -> dict[tuple[str, str], list[str]]:
    """Hashes of every frame of every file, per decoder, from sequential passes."""
    hashes = {}
    for name in FILES:
        rotation = probe(corpus / name).rotation_deg
        for decoder in DECODERS:
            frames = sequential_frames(corpus / name, decoder)
            turn = 0 if decoder == "decord" else rotation
            hashes[name, decoder] = [digest(upright(f, turn)) for f in frames]
    return hashes


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", FILES)
def test_the_trusted_count_is_what_a_sequential_pass_returns(
    corpus: Path, truth: dict, name: str, decoder: str
) -> None:
    assert probe(corpus / name).num_frames == len(truth[name, decoder])


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", FILES)
def test_sparse_reads_return_the_sequential_frames(
    corpus: Path, truth: dict, name: str, decoder: str
) -> None:
    info = probe(corpus / name)
    # Segments of 0.9 s start between keyframes; on the long VP8 file every fifth.
    segments = split(info, 0.9)[:: 5 if info.num_frames > 200 else 1]

    for segment in segments:
        frames = read_frames(segment, decoder=decoder, sample_every=3)
        expected = [truth[name, decoder][i] for i in frames.indices]
        assert [digest(f) for f in frames.array] == expected, segment.index
        assert frames.indices == list(range(segment.start_frame, segment.end_frame, 3))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", FILES)
def test_batched_reads_return_the_sequential_frames(
    corpus: Path, truth: dict, name: str, decoder: str
) -> None:
    info = probe(corpus / name)
    wanted = sorted(random.Random(name).sample(range(info.num_frames), 12))

    frames = read_batch(info, wanted, decoder=decoder)

    assert frames.indices == wanted
    assert [digest(f) for f in frames.array] == [
        truth[name, decoder][i] for i in wanted
    ]


def test_on_the_variable_rate_file_timestamps_would_misnumber_frames(
    corpus: Path,
) -> None:
    """Why PyAV counts from a keyframe: pts x average rate is not a frame number."""
    info = probe(corpus / "vfr.mp4")
    with av.open(str(corpus / "vfr.mp4")) as container:
        stream = container.streams.video[0]
        by_time = [
            round(float(f.pts * stream.time_base) * info.fps)
            for f in container.decode(stream)
        ]

    assert not info.constant_rate
    assert by_time != list(range(info.num_frames))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_videos_come_out_upright(
    corpus: Path, decoder: str, degrees: int
) -> None:
    reference = split(probe(corpus / "upright.mp4"), 10.0)[0]
    rotated = split(probe(corpus / f"rotate_{degrees}.mp4"), 10.0)[0]

    want = read_frames(reference, decoder=decoder, sample_every=6).array.astype(int)
    got = read_frames(rotated, decoder=decoder, sample_every=6).array.astype(int)

    assert got.shape == want.shape == (5, 120, 160, 3)
    assert np.abs(got - want).mean() < 8  # the same picture, encoded twice
    assert np.abs(got[:, ::-1, ::-1] - want).mean() > 30  # a half turn is far off


@pytest.mark.parametrize("degrees", [90, 270])
def test_decord_turns_frames_upright_itself_and_pyav_does_not(
    corpus: Path, degrees: int
) -> None:
    """Why the adapter turns PyAV's frames and not decord's (decord 0.6)."""
    import decord

    path = str(corpus / f"rotate_{degrees}.mp4")
    with av.open(path) as container:
        stored = next(container.decode(video=0)).to_ndarray(format="rgb24")

    assert stored.shape == (160, 120, 3)
    assert decord.VideoReader(path).next().asnumpy().shape == (120, 160, 3)


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_rotated_read_is_resized_to_the_upright_width(
    corpus: Path, decoder: str
) -> None:
    segment = split(probe(corpus / "rotate_90.mp4"), 10.0)[0]

    frames = read_frames(segment, decoder=decoder, sample_every=10, width_px=80)

    assert frames.array.shape == (3, 60, 80, 3)
