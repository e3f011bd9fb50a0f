"""The bad-input corpus: every case ends the way it should, within its time bound.

Each case of `corpus.CASES` has one expected outcome at the video layer: it fails to
probe with a `VideoError` that names the file and says why, or it probes with the
trusted facts asserted here and every decoder reads every segment of it. Decoding runs
in worker processes throughout (the default), so these tests also cross the isolation
boundary on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from llama_prefect.errors import VideoError
from llama_prefect.video.decoders import DECODERS, read_frames
from llama_prefect.video.segments import Segment, probe, segment_of, split

from .corpus import CASES

pytestmark = pytest.mark.video


@dataclass(frozen=True)
class Fails:
    """Probing raises a `VideoError` whose message holds `words`."""

    words: str


@dataclass(frozen=True)
class Reads:
    """Probing gives these facts; every decoder reads all `frames` frames."""

    frames: int
    size: tuple[int, int] = (160, 120)
    rotation_deg: int = 0
    constant_rate: bool = True


EXPECTED: dict[str, Fails | Reads] = {
    "zero_byte.mp4": Fails(r"is empty \(0 bytes\)"),
    "truncated.mp4": Fails("cannot be read as a video"),
    "not_a_video.mp4": Fails("cannot be read as a video"),
    "audio_only.mp4": Fails("has no video stream"),
    "truncated.avi": Reads(frames=13),
    "corrupt_middle.mp4": Reads(frames=100),
    "header_lies.avi": Reads(frames=30),
    "vfr.mp4": Reads(frames=50, constant_rate=False),
    "rotate_90.mp4": Reads(frames=25, rotation_deg=90),
    "rotate_180.mp4": Reads(frames=25, rotation_deg=180),
    "rotate_270.mp4": Reads(frames=25, rotation_deg=270),
    "vp8_long.webm": Reads(frames=650, size=(64, 48)),
    "huge.mp4": Reads(frames=3, size=(7680, 4320)),
}


def test_every_case_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize(
    "case", sorted(c for c, e in EXPECTED.items() if isinstance(e, Fails))
)
def test_unreadable_cases_fail_to_probe_naming_the_file_and_the_reason(
    corpus: Path, case: str
) -> None:
    expected = EXPECTED[case]
    assert isinstance(expected, Fails)

    with pytest.raises(VideoError, match=expected.words) as caught:
        probe(corpus / case)

    assert case in str(caught.value)


@pytest.mark.parametrize(
    "case", sorted(c for c, e in EXPECTED.items() if isinstance(e, Reads))
)
def test_readable_cases_probe_to_their_trusted_facts(corpus: Path, case: str) -> None:
    expected = EXPECTED[case]
    assert isinstance(expected, Reads)

    info = probe(corpus / case)

    assert info.num_frames == expected.frames
    assert (info.width_px, info.height_px) == expected.size
    assert info.rotation_deg == expected.rotation_deg
    assert info.constant_rate == expected.constant_rate


READ_WHOLE = [
    "truncated.avi",
    "header_lies.avi",
    "vfr.mp4",
    "rotate_90.mp4",
    "rotate_180.mp4",
    "rotate_270.mp4",
    "vp8_long.webm",
]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("case", READ_WHOLE)
def test_every_decoder_reads_every_segment_of_the_readable_cases(
    corpus: Path, case: str, decoder: str
) -> None:
    info = probe(corpus / case)
    every = 7 if info.num_frames > 100 else 1

    found = [
        index
        for segment in split(info, 1.5)
        for index in read_frames(segment, decoder=decoder, sample_every=every).indices
    ]

    assert found == [
        i for s in split(info, 1.5) for i in range(s.start_frame, s.end_frame, every)
    ]


def test_the_header_of_the_lying_avi_claims_three_times_its_frames(
    corpus: Path,
) -> None:
    with av.open(str(corpus / "header_lies.avi")) as container:
        assert container.streams.video[0].frames == 90


@pytest.mark.parametrize("decoder", DECODERS)
def test_frames_only_the_header_claims_fail_naming_them(
    corpus: Path, decoder: str
) -> None:
    info = probe(corpus / "header_lies.avi")
    claimed = segment_of(info, 1, 25, 40)  # the header's 90 frames, not the 30

    with pytest.raises(VideoError, match=r"did not return frames \[30, 31, 32"):
        read_frames(claimed, decoder=decoder, sample_every=1)


# Segment 2 (frames 50-74) holds the damaged frames 60-62. Segment 3 starts at a
# keyframe after them: PyAV and decord seek straight to it; OpenCV's own seek starts
# decoding some frames earlier, runs into the damage and stops there. decord's
# threaded decoder sends packets ahead of the frame asked for, so whether a segment
# before the damage (frames 0-24, 25-49) reaches it first depends on its threads'
# timing (on a loaded machine even segment 0 can): either it is read whole or it
# fails naming the file and its own segment (`MAY_FAIL`).
MAY_FAIL = "ok or failed on its own segment"
CORRUPT_SEGMENTS = {
    "pyav": ["ok", "ok", "failed on segment 2", "ok"],
    "decord": [MAY_FAIL, MAY_FAIL, "failed on segment 2", "ok"],
    "opencv": [
        "ok",
        "ok",
        r"did not return frames \[60, 61",
        r"did not return frames \[75",
    ],
}


@pytest.mark.parametrize("decoder", DECODERS)
def test_corrupt_frames_fail_their_segment_alone(corpus: Path, decoder: str) -> None:
    path = corpus / "corrupt_middle.mp4"
    segments = split(probe(path), 1.0)
    assert [s.start_frame for s in segments] == [0, 25, 50, 75]

    for segment, expected in zip(segments, CORRUPT_SEGMENTS[decoder], strict=True):
        if expected == MAY_FAIL:
            _whole_or_failed_naming_the_file(segment, decoder)
            continue
        if expected == "ok":
            frames = read_frames(segment, decoder=decoder, sample_every=1)
            assert len(frames.indices) == 25
            continue
        with pytest.raises(VideoError, match=expected) as caught:
            read_frames(segment, decoder=decoder, sample_every=1)
        assert "corrupt_middle.mp4" in str(caught.value)
        assert repr(decoder) in str(caught.value)


def _whole_or_failed_naming_the_file(segment: Segment, decoder: str) -> None:
    try:
        frames = read_frames(segment, decoder=decoder, sample_every=1)
    except VideoError as exc:
        assert "corrupt_middle.mp4" in str(exc) and repr(decoder) in str(exc)
        assert f"failed on segment {segment.index}" in str(exc)
    else:
        assert len(frames.indices) == 25


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_huge_frame_size_is_read_downscaled(corpus: Path, decoder: str) -> None:
    segment = split(probe(corpus / "huge.mp4"), 10.0)[0]

    frames = read_frames(segment, decoder=decoder, sample_every=1, width_px=320)

    assert frames.array.shape == (3, 180, 320, 3)
    assert abs(int(frames.array.mean()) - 128) < 8  # the grey test card


def test_a_huge_read_past_the_memory_cap_is_refused_before_decoding(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment: Segment = split(probe(corpus / "huge.mp4"), 10.0)[0]
    monkeypatch.setenv("LLAMA_PREFECT_MAX_FRAMES_MB", "200")

    with pytest.raises(VideoError, match=r"3 frames of 7680x4320 px .* 285 MB"):
        read_frames(segment, decoder="pyav", sample_every=1)
