"""The crossing ops' work units and the short exploration input, by hand."""

from __future__ import annotations

import pytest
from llama_prefect.flows.crossing import (
    PIPELINE,
    _decoded_megapixels,
    _segment_megapixels,
    _short_segment,
)

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
