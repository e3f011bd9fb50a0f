"""The crossing pipeline end to end: exploration, then the flow through the runner.

A small archive is cut from real footage (vtest.avi's pedestrians), plus a still clip
in which nothing moves, so the motion branch must stop it before people detection.
Exploration runs with a tiny trial budget; the flow runs on Prefect's local server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from llama_prefect.flows.crossing import PIPELINE, crossing, seed_profiles
from prefect.client.orchestration import get_client

from llama_prefect.runner import LlamaTaskRunner
from llama_prefect.video.samples import find_vtest

pytestmark = [pytest.mark.prefect, pytest.mark.video]

INVOCATION_FIELDS = {
    "op",
    "task_run_id",
    "target_s",
    "configuration",
    "backend",
    "predicted_s",
    "observed_s",
    "cost_usd",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    source = find_vtest()
    if source is None or shutil.which("ffmpeg") is None:
        pytest.fail("vtest.avi and ffmpeg are needed: run `make system`")
    folder = tmp_path_factory.mktemp("archive")
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
    _ffmpeg(
        "-ss", "20", "-t", "12", "-i", str(source), *h264, str(folder / "street.mp4")
    )
    _ffmpeg("-ss", "20", "-i", str(source), "-frames:v", "1", str(folder / "s.png"))
    _ffmpeg(
        "-loop",
        "1",
        "-framerate",
        "10",
        "-i",
        str(folder / "s.png"),
        "-t",
        "4",
        *h264,
        str(folder / "still.mp4"),
    )
    (folder / "s.png").unlink()
    (folder / "broken.mp4").write_bytes(b"")  # a zero-byte file in the archive
    return folder


@pytest.fixture(scope="module")
def report(archive, tmp_path_factory, prefect_server) -> dict:
    work = tmp_path_factory.mktemp("run")
    profiles = work / "profiles.json"
    seed_profiles(
        [str(p) for p in sorted(archive.iterdir())],
        profiles,
        n_trials=3,
        progress=False,
    )
    runner = LlamaTaskRunner(PIPELINE, profile_path=profiles)
    flow = crossing.with_options(task_runner=runner)
    return flow(
        videos=str(archive),
        slo_s=300.0,
        report_path=str(work / "report.json"),
    )


def test_report_holds_every_invocation_of_the_pipeline_with_its_decision(report):
    ops = {r["op"] for r in report["invocations"]}
    assert ops >= {"split", "motion", "people", "aggregate"}
    for record in report["invocations"]:
        assert set(record) >= INVOCATION_FIELDS
        assert record["observed_s"] > 0 and record["cost_usd"] > 0
        assert record["target_s"] > 0
    # 12 s of street in 4 s segments and 4 s of still footage: 4 motion invocations
    assert report["run"]["by_op"]["motion"] == 4
    assert report["run"]["by_op"]["split"] == 3
    assert report["run"]["by_op"]["aggregate"] == 2


def test_a_broken_file_fails_alone_and_the_report_says_why(report):
    broken = next(v for v in report["videos"] if v["video"].endswith("broken.mp4"))
    assert broken["answer"] is None
    assert any("broken.mp4" in e and "empty" in e for e in broken["errors"])
    assert report["run"]["videos_failed"] == 1
    (failed,) = [r for r in report["invocations"] if r["state"] != "done"]
    assert failed["op"] == "split" and "broken.mp4" in failed["error"]


def test_still_footage_stops_at_the_motion_filter(report):
    still = next(v for v in report["videos"] if v["video"].endswith("still.mp4"))
    assert still["answer"]["segments_with_motion"] == 0
    people_videos = {r["group"] for r in report["invocations"] if r["op"] == "people"}
    assert all(not g.endswith("still.mp4") for g in people_videos)


def test_people_are_counted_in_every_window_of_the_street(report):
    street = next(v for v in report["videos"] if v["video"].endswith("street.mp4"))
    windows = street["answer"]["people_per_window"]
    assert len(windows) == 2  # 12 s in 10 s windows
    assert all(count > 0 for count in windows)


def test_run_verdict_and_cost_add_up(report, tmp_path_factory):
    run = report["run"]
    assert run["slo_s"] == 300.0
    assert run["slo_met"] == (run["latency_s"] <= run["slo_s"])
    total = sum(r["cost_usd"] for r in report["invocations"])
    assert run["cost_usd"] == pytest.approx(total)


def test_chosen_knobs_reach_task_run_names_and_artifacts_exist(report):
    people = [r for r in report["invocations"] if r["op"] == "people"]
    with get_client(sync_client=True) as client:
        names = {str(t.id): t.name for t in client.read_task_runs()}
        keys = {a.key for a in client.read_artifacts()}
    for record in people:
        knobs = record["configuration"]
        name = names[record["task_run_id"]]
        assert f"s{knobs['sample_every']} w{knobs['width_px']}" in name
        assert f"t{knobs['threads']}" in name
    assert {"crossing-invocations", "crossing-summary", "crossing-progress"} <= keys


def test_report_file_matches_the_returned_report(report):
    path = Path(report["settings"].get("report_path", ""))
    if not path.name:
        pytest.fail("the report does not say where it was written")
    assert json.loads(path.read_text())["run"] == report["run"]
