"""S3 as video source, results store and profile store, end to end against moto."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_prefect import s3
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError, StorageError

pytestmark = pytest.mark.aws


@pytest.mark.parametrize(
    "uri",
    [
        "/local/file.mp4",
        "s3://",
        "s3://UPPER/key",
        "s3://ok-bucket/../etc/passwd",
        "s3://ok-bucket/a/../../b",
        "s3://ok-bucket/back\\slash",
        "s3://ok-bucket/new\nline",
    ],
)
def test_parse_uri_refuses_what_is_not_a_plain_s3_location(uri):
    with pytest.raises(ConfigurationError):
        s3.parse_uri(uri)


def test_parse_uri_splits_bucket_and_key_and_keeps_spaces_and_unicode():
    where = s3.parse_uri("s3://my-bucket/videos/cam 1/straße.mp4")
    assert (where.bucket, where.key) == ("my-bucket", "videos/cam 1/straße.mp4")
    assert (
        str(where.join("x", "y.json"))
        == "s3://my-bucket/videos/cam 1/straße.mp4/x/y.json"
    )


def test_list_videos_returns_the_video_uris_under_a_prefix_sorted(moto):
    bucket = moto.new_bucket()
    client = moto.client("s3")
    for key in ["in/b.mp4", "in/a.AVI", "in/sub/c.mkv", "in/notes.txt", "out/d.mp4"]:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")

    found = s3.list_videos(f"s3://{bucket}/in/")

    assert found == [
        f"s3://{bucket}/in/a.AVI",
        f"s3://{bucket}/in/b.mp4",
        f"s3://{bucket}/in/sub/c.mkv",
    ]


def test_list_videos_says_so_when_a_prefix_holds_no_video(moto):
    bucket = moto.new_bucket()
    moto.client("s3").put_object(Bucket=bucket, Key="in/readme.txt", Body=b"x")
    with pytest.raises(ConfigurationError, match="no video files"):
        s3.list_videos(f"s3://{bucket}/in/")


def test_list_videos_of_a_missing_bucket_is_a_storage_error(moto):
    with pytest.raises(StorageError, match="cannot list"):
        s3.list_videos("s3://no-such-bucket-here/in/")


def test_local_path_downloads_once_and_again_when_the_object_changes(
    moto, tmp_path, monkeypatch
):
    monkeypatch.setenv(s3.CACHE_ENV, str(tmp_path / "cache"))
    bucket = moto.new_bucket()
    client = moto.client("s3")
    client.put_object(Bucket=bucket, Key="v/clip.mp4", Body=b"first")
    uri = f"s3://{bucket}/v/clip.mp4"
    downloads = []
    real = s3._download
    monkeypatch.setattr(
        s3, "_download", lambda *a: (downloads.append(a[1]), real(*a))[1]
    )

    first = s3.local_path(uri)
    again = s3.local_path(uri)
    client.put_object(Bucket=bucket, Key="v/clip.mp4", Body=b"second")
    changed = s3.local_path(uri)

    assert first == again and Path(first).read_bytes() == b"first"
    assert changed != first and Path(changed).read_bytes() == b"second"
    assert len(downloads) == 2
    assert Path(first).parent == tmp_path / "cache" and first.endswith(".mp4")


def test_local_path_leaves_local_paths_alone_and_names_a_missing_object(moto):
    assert s3.local_path("/tmp/x.mp4") == "/tmp/x.mp4"
    bucket = moto.new_bucket()
    with pytest.raises(StorageError, match="cannot read"):
        s3.local_path(f"s3://{bucket}/missing.mp4")


def test_json_objects_round_trip(moto):
    uri = f"s3://{moto.new_bucket()}/results/run-1/answer.json"
    value = {"video": "s3://b/v.mp4", "people": [1, 2, 3], "crowded": False}
    assert s3.put_json(uri, value) == uri
    assert s3.get_json(uri) == value


def test_profiles_round_trip_through_s3_as_through_a_file(moto, tmp_path):
    store = ProfileStore("crossing")
    config = Configuration.of("local-cpu", {"sample_every": 5, "width_px": 640})
    store.seed("people", config, 0.02, accuracy=0.9)
    store.observe("people", config, 40, 1.0)
    uri = f"s3://{moto.new_bucket()}/profiles/crossing.json"

    s3.save_profiles(store, uri)
    s3.save_profiles(store, tmp_path / "crossing.json")
    from_s3 = s3.load_profiles(uri)
    from_file = s3.load_profiles(tmp_path / "crossing.json")

    assert from_s3.to_dict() == from_file.to_dict() == store.to_dict()
    assert from_s3.predict_s_per_unit("people", config) == pytest.approx(
        store.predict_s_per_unit("people", config)
    )


def test_a_run_report_is_written_to_s3(moto):
    uri = f"s3://{moto.new_bucket()}/reports/latest.json"
    report = {"run": {"slo_s": 10.0, "slo_met": True}, "invocations": []}
    assert s3.write_report(report, uri) == uri
    assert s3.get_json(uri) == report
