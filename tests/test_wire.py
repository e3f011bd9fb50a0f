"""The JSON wire format: what crosses to a remote backend and back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llama_prefect import wire
from llama_prefect.errors import ConfigurationError
from llama_prefect.video.ops import PeopleResult
from llama_prefect.video.segments import Segment, VideoInfo

SEGMENT = Segment(
    video="s3://bucket/v.mp4",
    index=2,
    start_frame=20,
    end_frame=30,
    fps=10.0,
    width_px=768,
    height_px=576,
)


def _round_trip(value):
    return wire.decode(json.loads(json.dumps(wire.encode(value))))


def test_models_dataclasses_and_containers_survive_a_json_round_trip():
    from llama_prefect.flows.crossing import VideoSplit

    info = VideoInfo(
        path="s3://bucket/v.mp4",
        fps=10.0,
        num_frames=30,
        width_px=768,
        height_px=576,
        codec="h264",
    )
    value = {
        "segment": SEGMENT,
        "split": VideoSplit(info, [SEGMENT, SEGMENT]),
        "results": [PeopleResult(frame_indices=[1], times_s=[0.1], counts=[3])],
        "plain": {"a": [1, 2.5, "x", None, True]},
        "count": np.int64(7),
    }

    back = _round_trip(value)

    assert back["segment"] == SEGMENT and isinstance(back["segment"], Segment)
    assert isinstance(back["split"], VideoSplit)
    assert back["split"].info == info and back["split"].segments == [SEGMENT] * 2
    assert back["results"][0].counts == [3]
    assert back["plain"] == {"a": [1, 2.5, "x", None, True]}
    assert back["count"] == 7 and type(back["count"]) is int


def test_arrays_and_unknown_objects_are_refused_with_how_to_fix():
    with pytest.raises(ConfigurationError, match="write large data such as arrays"):
        wire.encode({"frames": np.zeros((2, 2))})
    with pytest.raises(ConfigurationError):
        wire.encode(object())


def test_a_dict_that_looks_like_a_tagged_value_is_refused():
    with pytest.raises(ConfigurationError, match=r"\$model"):
        wire.encode({"$model": "os:system"})


def test_names_outside_the_allowed_modules_are_never_imported(monkeypatch):
    forged = {"$model": "os:system", "data": {}}
    with pytest.raises(ConfigurationError, match="allowed modules"):
        wire.decode(forged)
    with pytest.raises(ConfigurationError, match="allowed modules"):
        wire.op_function("subprocess:run")
    monkeypatch.setenv(wire.MODULES_ENV, "json")
    assert wire.op_function("json:dumps") is json.dumps


def test_a_name_inside_the_package_that_is_not_a_model_is_refused():
    with pytest.raises(ConfigurationError, match="not a pydantic model"):
        wire.decode({"$model": "llama_prefect.wire:encode", "data": {}})


def test_an_op_body_is_named_by_its_task_and_resolves_to_the_plain_function():
    from llama_prefect.flows import crossing

    ref = wire.ref_of(crossing.people.fn)
    assert ref == "llama_prefect.flows.crossing:people"
    assert wire.op_function(ref) is crossing.people.fn
