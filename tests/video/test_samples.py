"""Tests for llama_prefect.video.samples: the archive builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_prefect.errors import VideoError
from llama_prefect.video import samples
from llama_prefect.video.segments import probe

pytestmark = pytest.mark.video

VTEST_FILES = [
    "vtest.avi",
    "vtest_h264_40s.mp4",
    "vtest_h264_480x360_last30s.mp4",
]


@pytest.fixture
def short_vtest(vtest_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the builder at a 3 s vtest clip so that transcoding stays quick."""
    clip = vtest_dir / "vtest_mpeg4.avi"
    monkeypatch.setenv(samples.VTEST_ENV, str(clip))
    return clip


def test_archive_is_made_once_and_then_kept(
    short_vtest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = samples.make_sample_archive(tmp_path)
    made = capsys.readouterr().out
    stamps = {path: path.stat().st_mtime_ns for path in first}

    second = samples.make_sample_archive(tmp_path)

    assert [p.name for p in first][:3] == VTEST_FILES
    assert made.count("made ") == len(first)
    assert second == first
    assert "made " not in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in second} == stamps
    assert not list(tmp_path.glob(".partial-*"))


def test_archive_files_are_videos_of_the_promised_shape(
    short_vtest: Path, tmp_path: Path
) -> None:
    files = {path.name: path for path in samples.make_sample_archive(tmp_path)}

    small = probe(files["vtest_h264_480x360_last30s.mp4"])
    assert (small.width_px, small.height_px, small.codec) == (480, 360, "h264")
    assert small.num_frames == 30
    assert probe(files["vtest_h264_40s.mp4"]).codec == "h264"
    assert files["vtest.avi"].read_bytes() == short_vtest.read_bytes()


def test_force_remakes_the_files(short_vtest: Path, tmp_path: Path) -> None:
    (tmp_path / "vtest.avi").write_bytes(b"stale")

    samples.make_sample_archive(tmp_path, force=True)

    assert (tmp_path / "vtest.avi").read_bytes() == short_vtest.read_bytes()


def test_missing_vtest_is_skipped_with_a_note(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(samples.VTEST_ENV, str(tmp_path / "nowhere.avi"))

    files = samples.make_sample_archive(tmp_path / "out")

    assert not {p.name for p in files} & set(VTEST_FILES)
    assert "skip vtest.avi" in capsys.readouterr().out


def test_missing_ffmpeg_says_how_to_install_it(
    short_vtest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(samples.shutil, "which", lambda name: None)

    with pytest.raises(VideoError, match="apt-get install ffmpeg"):
        samples.make_sample_archive(tmp_path)
    assert not list(tmp_path.glob("*.mp4"))
