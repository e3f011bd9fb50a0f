"""`llama-prefect bench --mode real` on a one-clip archive: every run, in one table.

The clip is four seconds of still street (vtest.avi's first frame repeated), so the
motion filter stops it before people detection and each of the four flow runs is
short; the profiles are the seed store shipped with the package, so nothing is
explored. What is checked is the real bench's path: the bounds, a level between
them, the Scanner-like static plan, and the JSON and table it writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources

import pytest

from llama_prefect.cli import main
from llama_prefect.video.samples import find_vtest

pytestmark = [pytest.mark.prefect, pytest.mark.video]


def _still_clip(folder) -> None:
    source = find_vtest()
    if source is None or shutil.which("ffmpeg") is None:
        pytest.fail("vtest.avi and ffmpeg are needed: run `make system`")
    ff = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    frame = folder.parent / "frame.png"
    subprocess.run([*ff, "-i", str(source), "-frames:v", "1", str(frame)], check=True)
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
    subprocess.run(
        [*ff, "-loop", "1", "-framerate", "10", "-i", str(frame), "-t", "4", *h264]
        + [str(folder / "still.mp4")],
        check=True,
    )


def test_the_real_bench_runs_the_bounds_a_level_and_the_static_plan(
    prefect_server, tmp_path, capsys
):
    videos = tmp_path / "videos"
    videos.mkdir()
    _still_clip(videos)
    profiles = tmp_path / "profiles.json"
    shipped = resources.files("llama_prefect.data") / "crossing_profile.json"
    profiles.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "bench.json"
    argv = ["bench", "--mode", "real", "--samples", str(videos)]
    argv += ["--profiles", str(profiles), "--levels", "0.5", "--out", str(out)]

    assert main(argv) == 0

    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {r["policy"]: r for r in report["rows"]}
    assert list(rows) == ["llama-fast", "llama-cheap", "llama-0.5", "scanner"]
    fast_s, cheap_s = report["fast_latency_s"], report["cheap_latency_s"]
    assert rows["llama-0.5"]["slo_s"] == pytest.approx(
        fast_s + 0.5 * (cheap_s - fast_s), abs=0.01
    )
    for row in rows.values():
        # split, motion and aggregate of the one clip; nothing failed
        assert row["invocations"] == 3 and row["failed"] == 0
        assert row["cost_usd"] > 0
    assert isinstance(rows["llama-0.5"]["met"], bool)
    assert rows["llama-fast"]["met"] is None  # the bounds run without a deadline
    printed = capsys.readouterr().out
    assert all(name in printed for name in rows)
    # the runs' profiles are copies: the shipped seed the bench was given is kept
    assert profiles.read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8")
