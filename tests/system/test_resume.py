"""An archive run killed midway resumes: one result per video, finished ones not redone.

`llama-prefect run --results DIR` runs against the real server in its own process.
As soon as the first video's result is stored, the whole process group is killed with
SIGKILL, as a lost machine would be. The rerun with the same folder must process only
the videos without a result, leave the stored ones untouched, and end with exactly
one result per video.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.video]

KILL_WAIT_S = 300


def _stored(results: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in results.rglob("*.json")
        if not p.name.startswith(".partial-")
    }


def _wait_for_first_result(process, results: Path, log: Path) -> None:
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        if _stored(results):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before any result:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    pytest.fail(f"no result within {KILL_WAIT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def interrupted(system_server, street_clips, street_profiles, tmp_path_factory):
    """Runs the archive, kills it after its first result, then runs it again."""
    work = tmp_path_factory.mktemp("resume")
    archive = work / "archive"
    shutil.copytree(street_clips, archive)
    profiles = work / "profiles.json"
    shutil.copy(street_profiles, profiles)
    results = work / "results"

    def command(report: str) -> list[str]:
        return [
            str(system_server.bin / "llama-prefect"),
            "run",
            "crossing",
            "--videos",
            str(archive),
            "--slo-s",
            "600",
            "--profiles",
            str(profiles),
            "--results",
            str(results),
            "--report",
            str(work / report),
            "--no-progress",
        ]

    log = work / "first.log"
    first = system_server.start(*command("first.json"), log=log, cwd=work)
    try:
        _wait_for_first_result(first, results, log)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        system_server.stop(first)
    at_kill = _stored(results)
    second = system_server.run(*command("second.json"), cwd=work, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    return {
        "archive": archive,
        "results": results,
        "at_kill": at_kill,
        "first_killed": first.returncode == -signal.SIGKILL,
        "report": json.loads((work / "second.json").read_text()),
        "first_report_written": (work / "first.json").exists(),
    }


def test_the_kill_landed_midway(interrupted):
    assert interrupted["first_killed"]
    assert not interrupted["first_report_written"]
    videos = len(list(interrupted["archive"].iterdir()))
    assert 1 <= len(interrupted["at_kill"]) < videos


def test_the_rerun_ends_with_exactly_one_result_per_video(interrupted):
    stored = _stored(interrupted["results"])
    records = [json.loads(data) for data in stored.values()]
    videos = sorted(str(p) for p in interrupted["archive"].iterdir())
    assert sorted(r["video"] for r in records) == videos
    assert len({r["key"] for r in records}) == len(videos)
    assert not list(interrupted["results"].rglob(".partial-*"))
    assert all(v["answer"] is not None for v in interrupted["report"]["videos"])


def test_the_rerun_does_not_redo_videos_finished_before_the_kill(interrupted):
    report = interrupted["report"]
    finished = {json.loads(data)["video"] for data in interrupted["at_kill"].values()}
    reused = {v["video"] for v in report["videos"] if v["reused"]}
    assert reused == finished
    assert report["run"]["videos_reused"] == len(finished)
    redone = {r["group"] for r in report["invocations"]} & finished
    assert not redone, f"the rerun processed finished videos again: {redone}"
    stored = _stored(interrupted["results"])
    for name, data in interrupted["at_kill"].items():
        assert stored[name] == data  # the stored result was not rewritten


def test_the_rerun_processes_every_video_still_missing(interrupted):
    report = interrupted["report"]
    missing = {v["video"] for v in report["videos"] if not v["reused"]}
    assert missing
    assert {r["group"] for r in report["invocations"] if r["op"] == "split"} == missing
