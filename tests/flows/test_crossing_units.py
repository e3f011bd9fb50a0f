"""The crossing ops' work units and the exploration's keyframe inputs, by hand."""

from __future__ import annotations

import pytest
from llama_prefect.flows.crossing import (
    PIPELINE,
    _decoded_megapixels,
    _keyframe_segment,
    _segment_megapixels,
    _short_segment,
    _with_keyframe_twins,
)
from llama_prefect.tuning.explore import fit_line

from llama_prefect.video.segments import Segment

# frames 280 to 320 of a 768x576 video whose keyframe before them is frame 250
SEGMENT = Segment(
    video="v.mp4",
    index=7,
    start_frame=280,
    end_frame=320,
    fps=10.0,
    width_px=768,
    height_px=576,
    anchor_frame=250,
    anchor_pts=25000,
)
MPX = 768 * 576 / 1e6


def test_decoding_work_counts_from_the_keyframe_and_detection_only_the_segment():
    # 320 - 250 = 70 frames decoded, 40 frames of the segment itself
    assert _decoded_megapixels({"segment": SEGMENT}) == pytest.approx(70 * MPX)
    assert _segment_megapixels({"segment": SEGMENT}) == pytest.approx(40 * MPX)


@pytest.mark.parametrize(
    ("op", "unit"),
    [("motion", "decoded megapixel"), ("faces", "decoded megapixel")],
)
def test_decode_bound_ops_are_measured_in_decoded_megapixels(op, unit):
    spec = PIPELINE.ops[op]
    assert spec.unit == unit
    assert spec.units({"segment": SEGMENT}) == pytest.approx(70 * MPX)


def test_people_are_measured_in_the_segments_own_megapixels():
    spec = PIPELINE.ops["people"]
    assert spec.unit == "megapixel"
    assert spec.units({"segment": SEGMENT}) == pytest.approx(40 * MPX)


def test_the_short_input_starts_at_the_keyframe_and_is_an_eighth_long():
    short = _short_segment(SEGMENT)
    # round(40 x 0.125) = 5 frames from the keyframe 250: nothing before it to decode
    assert (short.start_frame, short.end_frame) == (250, 255)
    assert (short.anchor_frame, short.anchor_pts) == (250, 25000)
    assert _decoded_megapixels({"segment": short}) == pytest.approx(5 * MPX)


def test_the_short_input_has_at_least_two_frames():
    tiny = SEGMENT.model_copy(update={"start_frame": 250, "end_frame": 253})
    assert _short_segment(tiny).num_frames == 2


def test_the_short_input_is_a_multiple_of_every_sampling_step():
    # faces sample every 5, 10 or 20 frames: 5 frames round up to 20
    assert _short_segment(SEGMENT, (5, 10, 20)).num_frames == 20
    # motion's 1, 2 and 4: 5 frames round up to 8
    assert _short_segment(SEGMENT, (1, 2, 4)).num_frames == 8


def _sampled(seg: Segment, every: int) -> int:
    return len(range(seg.start_frame, seg.end_frame, every))


def test_the_keyframe_input_is_a_whole_segment_from_the_keyframe():
    low = _keyframe_segment(SEGMENT)
    # 40 frames from the keyframe 250: its own frames are all there is to decode
    assert (low.start_frame, low.end_frame) == (250, 290)
    assert (low.anchor_frame, low.anchor_pts) == (250, 25000)
    assert _decoded_megapixels({"segment": low}) == pytest.approx(40 * MPX)


@pytest.mark.parametrize("op", ["motion", "faces"])
def test_the_keyframe_input_analyses_as_many_frames_as_a_segment(op):
    for every in PIPELINE.ops[op].knobs["sample_every"]:
        assert _sampled(_keyframe_segment(SEGMENT), every) == _sampled(SEGMENT, every)
    # A few frames from the keyframe sample fewer (faces every 20: 1 of 2).
    assert _sampled(_short_segment(SEGMENT, (5, 10, 20)), 20) == 1
    assert _sampled(SEGMENT, 20) == 2


def test_the_line_through_the_keyframe_input_keeps_the_analysis_in_its_fixed_part():
    # A body that takes 0.05 s per analysed frame and 0.002 s per decoded megapixel,
    # sampling every 20th frame: every whole segment analyses 2 frames, 0.1 s a call.
    def seconds(seg: Segment) -> float:
        decoded = _decoded_megapixels({"segment": seg})
        return 0.05 * _sampled(seg, 20) + 0.002 * decoded

    far = SEGMENT.model_copy(update={"start_frame": 450, "end_frame": 490})
    full = [SEGMENT, far]  # 70 and 240 frames from the keyframe 250

    def line(extra: Segment) -> tuple[float, float]:
        segs = [*full, extra]
        return fit_line(
            [(_decoded_megapixels({"segment": s}), seconds(s)) for s in segs]
        )

    fixed_s, per_mpx_s = line(_keyframe_segment(SEGMENT))
    assert fixed_s == pytest.approx(0.1)
    assert per_mpx_s == pytest.approx(0.002)
    # 20 frames from the keyframe analyse 1 frame: that point lies 0.05 s below the
    # line. Least squares over 70, 240 and 20 decoded frames (mean 110, squares about
    # the mean 26600) fits those offsets (0, 0, -0.05) with a slope of
    # (-40 x 0.05/3 + 130 x 0.05/3 + 90 x 0.1/3) / 26600 = 4.5 / 26600 s per frame
    # and moves the fixed part by -0.05/3 - 110 x 4.5 / 26600 = -0.035 s: a whole
    # segment near its keyframe is then predicted too fast.
    short_fixed_s, short_per_mpx_s = line(_short_segment(SEGMENT, (5, 10, 20)))
    assert short_fixed_s == pytest.approx(0.1 - 0.05 / 3 - 110 * 4.5 / 26600)
    assert short_per_mpx_s == pytest.approx(0.002 + 4.5 / 26600 / MPX)


def test_each_sample_segment_gets_its_own_twin_from_its_keyframe():
    at_keyframe = SEGMENT.model_copy(update={"start_frame": 250, "end_frame": 290})
    other = SEGMENT.model_copy(update={"video": "w.mp4"})
    inputs = _with_keyframe_twins([SEGMENT, at_keyframe, other])
    spans = [(p["segment"].video, p["segment"].start_frame) for p in inputs]
    # SEGMENT's twin is `at_keyframe` itself, so it comes once; w.mp4's twin stays
    # in w.mp4: a pair never mixes two videos' decoding costs.
    assert spans == [("v.mp4", 280), ("v.mp4", 250), ("w.mp4", 280), ("w.mp4", 250)]
