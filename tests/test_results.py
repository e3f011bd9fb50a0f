"""The results store: content keys, atomic writes, one result per video and version."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from llama_prefect.errors import ConfigurationError
from llama_prefect.results import ResultStore, content_sha256, version_tag


def _store(tmp_path, tag="v1-x"):
    return ResultStore(tmp_path / "results", "crossing", tag)


def test_the_key_follows_the_bytes_not_the_name(tmp_path):
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    c.write_bytes(b"other bytes")
    assert content_sha256(a) == content_sha256(b) != content_sha256(c)
    assert content_sha256(a) == hashlib.sha256(b"same bytes").hexdigest()


def test_the_version_tag_changes_with_the_version_and_answer_parameters():
    base = version_tag("1", {"segment_s": 4.0, "window_s": 10.0})
    assert base.startswith("v1-")
    assert version_tag("1", {"window_s": 10.0, "segment_s": 4.0}) == base
    assert version_tag("2", {"segment_s": 4.0, "window_s": 10.0}) != base
    assert version_tag("1", {"segment_s": 2.0, "window_s": 10.0}) != base
    with pytest.raises(ConfigurationError, match="without '/'"):
        version_tag("a/b", {})


def test_put_then_get_round_trips_and_adds_the_key(tmp_path):
    store = _store(tmp_path)
    path = store.put("abc", {"video": "v.mp4", "answer": {"crowded": True}})
    assert path == store.folder / "abc.json"
    got = store.get("abc")
    assert got["answer"] == {"crowded": True} and got["key"] == "abc"
    assert got["version_tag"] == "v1-x" and got["pipeline"] == "crossing"
    assert store.get("missing") is None


def test_a_second_put_replaces_so_a_video_keeps_one_result(tmp_path):
    store = _store(tmp_path)
    store.put("abc", {"answer": 1})
    store.put("abc", {"answer": 2})
    results = list(store.results())
    assert [r.key for r in results] == ["abc"]
    assert results[0].data["answer"] == 2


def test_other_versions_do_not_see_each_others_results(tmp_path):
    _store(tmp_path, "v1-a").put("abc", {"answer": 1})
    assert _store(tmp_path, "v2-a").get("abc") is None


def test_a_writer_killed_before_the_rename_leaves_no_result(tmp_path, monkeypatch):
    store = _store(tmp_path)
    store.put("old", {"answer": 0})

    def killed(*args):
        raise KeyboardInterrupt  # stands in for the process dying at the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put("new", {"answer": 1})
    monkeypatch.undo()
    assert store.get("new") is None
    assert [r.key for r in store.results()] == ["old"]
    assert not list(store.folder.glob(".partial-*"))  # cleaned up on the way out


def test_partial_files_of_a_killed_process_are_skipped_and_cleaned(tmp_path):
    store = _store(tmp_path)
    store.put("abc", {"answer": 1})
    (store.folder / ".partial-x1y2").write_text('{"answer": ')  # half written
    assert [r.key for r in store.results()] == ["abc"]
    assert store.clean_partials() == 1
    assert sorted(p.name for p in store.folder.iterdir()) == ["abc.json"]
    assert json.loads((store.folder / "abc.json").read_text())["answer"] == 1
