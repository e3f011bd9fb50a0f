"""Tests for llama_prefect.paths: no name leads outside the results location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.errors import InputPathError
from llama_prefect.paths import MAX_KEY_BYTES, check_object_key, join_key, safe_join

AWKWARD_NAMES = [
    "caméra nord 1.mp4",
    "東京 交差点/朝 7時.mp4",
    "rue de l'été (copie).avi",
    "  spaced  .mp4",
    "a/b/c.webm",
    "…dots….mp4",
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_names_with_spaces_and_non_ascii_letters_are_kept(
    tmp_path: Path, name: str
) -> None:
    path = safe_join(tmp_path, name)

    assert path == tmp_path.resolve() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ok")
    assert path.read_text() == "ok"
    assert check_object_key(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../escape.json", "'..' segment"),
        ("a/../../escape.json", "'..' segment"),
        ("/etc/passwd", "absolute path"),
        ("nul\x00byte.mp4", "control characters"),
        ("line\nbreak.mp4", "control characters"),
        ("", "empty name"),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(InputPathError, match=words):
        safe_join(tmp_path, name)


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")

    with pytest.raises(InputPathError, match="outside the results location"):
        safe_join(root, "link/result.json")


def test_unicode_forms_of_one_name_map_to_one_place(tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9.mp4", "cafe\u0301.mp4"

    assert safe_join(tmp_path, composed) == safe_join(tmp_path, decomposed)
    assert check_object_key(decomposed) == composed


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("/videos/a.mp4", "starts with '/'"),
        ("videos//a.mp4", "empty, '.' or '..' segment"),
        ("videos/../../a.mp4", "empty, '.' or '..' segment"),
        ("videos/./a.mp4", "empty, '.' or '..' segment"),
        ("videos/", "empty, '.' or '..' segment"),
        ("", "1 to 1024 bytes"),
        ("é" * 513, "1 to 1024 bytes"),
        ("tab\there.mp4", "control characters"),
    ],
)
def test_unsafe_object_keys_are_refused(key: str, words: str) -> None:
    with pytest.raises(InputPathError, match=words):
        check_object_key(key)


def test_the_longest_key_s3_allows_is_accepted() -> None:
    key = "é" * (MAX_KEY_BYTES // 2)

    assert check_object_key(key) == key


def test_keys_join_under_a_prefix_and_each_part_is_checked() -> None:
    assert (
        join_key("results/crossing/", "東京 1.mp4.json")
        == "results/crossing/東京 1.mp4.json"
    )
    assert join_key("", "a.json") == "a.json"
    with pytest.raises(InputPathError):
        join_key("results", "../other/a.json")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=3))
def test_any_name_either_fails_or_stays_inside_the_root(parts: list[str]) -> None:
    root = Path("/tmp/llama-paths-root")
    try:
        path = safe_join(root, *parts)
    except InputPathError:
        return
    resolved = path.resolve()
    assert resolved == root.resolve() or root.resolve() in resolved.parents


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_any_accepted_key_mirrors_inside_a_folder(key: str) -> None:
    try:
        checked = check_object_key(key)
    except InputPathError:
        return
    assert safe_join("/tmp/llama-paths-root", checked).is_relative_to(
        Path("/tmp/llama-paths-root").resolve()
    )
