"""The corpus as an archive: bad files fail alone, the rest is answered, all reported.

The crossing flow runs on Prefect's local server over an archive of corpus files plus
three copies of a good clip into whose decode worker faults are injected: one crashes
(SIGSEGV) on every call, one hangs, and one fails once with an I/O error. The run must
finish, answer every video that can be answered, and list each failure with its
reason; the transient failure must be retried and pass, the deterministic ones not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from llama_prefect.flows.crossing import PIPELINE, crossing

from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import LlamaTaskRunner
from llama_prefect.video import isolation

pytestmark = [pytest.mark.prefect, pytest.mark.video]

BROKEN = ["zero_byte.mp4", "not_a_video.mp4", "audio_only.mp4", "truncated.mp4"]
GOOD = ["header_lies.avi", "vfr.mp4", "rotate_90.mp4", "corrupt_middle.mp4"]
# A good clip under a name with spaces and non-ASCII letters, in a folder like it.
AWKWARD_NAME = "vidéo 東京 nord 1.mp4"
FAULTY = {"crash_me.mp4": "crash", "hang_me.mp4": "hang", "flaky.mp4": "oserrorx1"}
# What ends each video: the error type of its split, or None when it is answered.
SPLIT_ERRORS = {
    "zero_byte.mp4": "VideoError",
    "not_a_video.mp4": "VideoError",
    "audio_only.mp4": "VideoError",
    "truncated.mp4": "VideoError",
    "crash_me.mp4": "DecoderCrashError",
    "hang_me.mp4": "DecodeTimeoutError",
}


def one_config_profiles(path: Path) -> Path:
    """Profiles with one PyAV configuration per op, so the run is reproducible."""
    store = ProfileStore(PIPELINE.name)
    knobs = {
        "split": {},
        "motion": {
            "decoder": "pyav",
            "sample_every": 2,
            "width_px": 160,
            "device": "cpu",
        },
        "people": {
            "decoder": "pyav",
            "sample_every": 10,
            "width_px": 640,
            "win_stride_px": 16,
            "threads": 1,
        },
        "faces": {
            "decoder": "pyav",
            "sample_every": 20,
            "width_px": 320,
            "model": "haar",
            "threads": 1,
            "device": "cpu",
        },
        "aggregate": {},
    }
    for op, values in knobs.items():
        store.seed(op, Configuration.of("local-cpu", values), 0.001)
    store.save(path)
    return path


@pytest.fixture(scope="module")
def report(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory, prefect_server
) -> dict:
    archive = tmp_path_factory.mktemp("bad archive é")
    for name in BROKEN + GOOD:
        shutil.copy(corpus / name, archive / name)
    shutil.copy(corpus / "cfr.mp4", archive / AWKWARD_NAME)
    for name in FAULTY:
        shutil.copy(corpus / "cfr.mp4", archive / name)
    work = tmp_path_factory.mktemp("run")
    faults = ",".join(f"{kind}:{name}" for name, kind in FAULTY.items())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(isolation.FAULTS_ENV, faults)
        patch.setenv(isolation.TIMEOUT_ENV, "5")
        # No straggler duplicates here: starting the decoder workers can make a
        # run's first tries stragglers, and a duplicate that wins would hide the
        # transient failure from the task's retries, which this module checks.
        runner = LlamaTaskRunner(
            PIPELINE,
            profile_path=one_config_profiles(work / "profiles.json"),
            duplication=False,
        )
        return crossing.with_options(task_runner=runner)(
            videos=str(archive),
            slo_s=600.0,
            segment_s=1.0,
            report_path=str(work / "report.json"),
        )


def entry(report: dict, name: str) -> dict:
    return next(v for v in report["videos"] if Path(v["video"]).name == name)


def test_every_video_of_the_archive_is_in_the_report(report: dict) -> None:
    names = {Path(v["video"]).name for v in report["videos"]}
    assert names == set(BROKEN + GOOD + list(FAULTY) + [AWKWARD_NAME])


def test_a_name_with_spaces_and_non_ascii_letters_works_end_to_end(
    report: dict,
) -> None:
    video = entry(report, AWKWARD_NAME)
    assert video["complete"] and video["answer"]["segments"] == 4
    assert video["answer"]["video"] == video["video"]
    saved = json.loads(Path(report["settings"]["report_path"]).read_text())
    assert AWKWARD_NAME in {Path(v["video"]).name for v in saved["videos"]}
    motion = [r for r in report["invocations"] if r["group"] == video["video"]]
    assert {r["op"] for r in motion} >= {"split", "motion", "aggregate"}


@pytest.mark.parametrize("name", sorted(SPLIT_ERRORS))
def test_a_bad_file_fails_its_split_alone_naming_the_file(
    report: dict, name: str
) -> None:
    (failure,) = [f for f in report["failures"] if Path(f["video"]).name == name]
    assert failure["op"] == "split"
    assert failure["error_type"] == SPLIT_ERRORS[name]
    assert failure["deterministic"] is True
    assert name in failure["message"]
    assert entry(report, name)["answer"] is None
    (record,) = [
        r for r in report["invocations"] if r["task_run_id"] == failure["task_run_id"]
    ]
    assert record["state"] == "failed" and record["retries"] == 0


@pytest.mark.parametrize("name", ["header_lies.avi", "vfr.mp4", "rotate_90.mp4"])
def test_awkward_but_sound_files_are_answered_completely(
    report: dict, name: str
) -> None:
    video = entry(report, name)
    assert video["complete"] and video["errors"] == []
    info_segments = {"header_lies.avi": 3, "vfr.mp4": 4, "rotate_90.mp4": 1}
    assert video["answer"]["segments"] == info_segments[name]


def test_a_corrupt_segment_fails_alone_and_the_video_is_answered_without_it(
    report: dict,
) -> None:
    video = entry(report, "corrupt_middle.mp4")
    assert video["failed_segments"] == [2]
    assert not video["complete"]
    assert video["answer"]["segments"] == 4
    motion = [
        r["state"]
        for r in report["invocations"]
        if r["op"] == "motion" and r["group"] == video["video"]
    ]
    assert sorted(motion) == ["done", "done", "done", "failed"]
    (failure,) = [f for f in report["failures"] if f["video"] == video["video"]]
    assert (failure["op"], failure["segment"], failure["frames"]) == (
        "motion",
        2,
        [50, 75],
    )
    assert failure["error_type"] == "VideoError" and failure["deterministic"]


def test_a_transient_failure_is_retried_and_the_video_answered(report: dict) -> None:
    video = entry(report, "flaky.mp4")
    assert video["complete"]
    splits = [
        r
        for r in report["invocations"]
        if r["op"] == "split" and Path(r["group"]).name == "flaky.mp4"
    ]
    assert [(r["state"], r["retries"]) for r in splits] == [("done", 1)]


def test_the_run_counts_failures_and_the_verdict_lists_them(report: dict) -> None:
    run = report["run"]
    assert len(report["failures"]) == len(SPLIT_ERRORS) + 1
    assert run["videos_failed"] == len(SPLIT_ERRORS)
    assert run["videos_incomplete"] == 1
    assert run["retries"] == 1
    from llama_prefect.report import summary_markdown

    markdown = summary_markdown(report)
    assert "7 failed invocations" in markdown
    assert (
        "| crash_me.mp4 | split |  | no (deterministic) | DecoderCrashError" in markdown
    )


def test_the_profile_keeps_the_largest_peak_memory_seen(report: dict) -> None:
    store = ProfileStore.load(Path(report["settings"]["profile_path"]))
    motion = [
        r["peak_memory_mb"]
        for r in report["invocations"]
        if r["op"] == "motion" and r["state"] == "done"
    ]
    (config,) = store.configurations("motion")

    assert store.profile("motion", config).peak_mem_mb == pytest.approx(
        max(motion), abs=0.1
    )


def test_invocations_record_their_peak_memory(report: dict) -> None:
    motion = [
        r for r in report["invocations"] if r["op"] == "motion" and r["state"] == "done"
    ]
    assert motion
    for record in motion:
        assert record["decode_calls"] == 1
        assert record["decode_peak_rss_mb"] > 20
        assert record["peak_memory_mb"] >= record["decode_peak_rss_mb"]
