"""Run settings are validated with messages that name the setting and the fix."""

from __future__ import annotations

import pytest

from llama_prefect.errors import ConfigurationError
from llama_prefect.settings import CrossingParameters, RunSettings, parse_video_source
from llama_prefect.sources import list_videos


def test_good_settings_pass_and_default_to_cost():
    s = RunSettings.check(slo_s=30)
    assert s.slo_s == 30.0 and s.objective == "cost" and s.accuracy_floor == 0.0


@pytest.mark.parametrize(
    "values, named",
    [
        ({"slo_s": 0}, "slo_s"),
        ({"slo_s": float("nan")}, "slo_s"),
        ({"slo_s": 10, "objective": "fastest"}, "objective"),
        ({"slo_s": 10, "accuracy_floor": -0.1}, "accuracy_floor"),
        ({"slo_s": 10, "colour": "red"}, "colour"),
    ],
)
def test_bad_settings_raise_a_configuration_error_naming_them(values, named):
    with pytest.raises(ConfigurationError, match=named) as info:
        RunSettings.check(**values)
    assert isinstance(info.value, ValueError)
    assert "got" in str(info.value)


# -- video sources and the crossing flow's parameters ---------------------------------


def test_a_local_folder_and_an_s3_prefix_parse(tmp_path):
    local = parse_video_source(str(tmp_path))
    assert local.kind == "local" and local.path == tmp_path
    s3 = parse_video_source("s3://my-archive/cams/north/")
    assert (s3.kind, s3.bucket, s3.prefix) == ("s3", "my-archive", "cams/north/")
    assert parse_video_source("s3://my-archive").prefix == ""


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty"),
        ("s3://No_Caps/x", "bucket"),
        ("s3://ab/x", "bucket"),  # two characters: too short
        ("gs://bucket/x", "gs:// scheme is not supported"),
        ("/no/such/folder", "does not exist"),
    ],
)
def test_bad_video_sources_are_refused_with_the_reason(text, says):
    with pytest.raises(ConfigurationError, match=says):
        parse_video_source(text)


def test_an_s3_source_is_listed_by_the_s3_lister_after_validation(monkeypatch):
    from llama_prefect import s3, sources

    CrossingParameters.check(videos="s3://my-archive/cams", slo_s=60)
    asked = []
    monkeypatch.setattr(s3, "list_videos", lambda uri: asked.append(uri) or [uri])
    assert sources.list_videos("s3://my-archive/cams") == ["s3://my-archive/cams"]
    assert asked == ["s3://my-archive/cams"]
    with pytest.raises(ConfigurationError, match="bucket"):
        list_videos("s3://No_Caps/x")  # refused before S3 is asked


def test_results_in_an_object_store_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="results_dir must be a local"):
        CrossingParameters.check(
            videos=str(tmp_path), slo_s=60, results_dir="s3://bucket/results"
        )


def test_crossing_parameters_fill_defaults_and_keep_what_was_given(tmp_path):
    p = CrossingParameters.check(videos=str(tmp_path), slo_s=60, results_dir="r")
    assert p.segment_s == 4.0 and p.results_dir == "r" and p.price_catalog is None


@pytest.mark.parametrize(
    "extra, named",
    [
        ({"segment_s": 0}, "segment_s"),
        ({"window_s": float("inf")}, "window_s"),
        ({"crowd_threshold": -1}, "crowd_threshold"),
        ({"price_catalog": "Not A Name"}, "price_catalog"),
        ({"objective": "fast"}, "objective"),
        ({"slo": 5}, "slo"),
    ],
)
def test_bad_crossing_parameters_name_the_parameter(tmp_path, extra, named):
    with pytest.raises(ConfigurationError, match=named) as info:
        CrossingParameters.check(videos=str(tmp_path), slo_s=60, **extra)
    assert "invalid crossing parameters" in str(info.value)
