"""Run reports: the static plan in the summary, reading reports back, progress."""

from __future__ import annotations

import json

import pytest

from llama_prefect.errors import ConfigurationError
from llama_prefect.report import (
    PROGRESS_LISTENERS,
    ArchiveProgress,
    build_report,
    read_report,
    summary_markdown,
    write_report,
)

ANSWER = {"crowded": True, "people_per_window": [4.5, 1.0], "max_people": 6}
PLAN = {
    "configurations": {"people": "local-cpu|sample_every=5"},
    "cost_usd": 0.0012,
    "latency_bound_s": 31.5,
    "meets_slo": True,
    "exact": True,
    "run_cost_same_model_usd": 0.0015,
    "plans_considered": 42,
    "method": "cheapest single configuration per op ...",
    "skipped_ops": [],
}


def _report(static_plan=PLAN):
    records = [
        {
            "op": "people",
            "task_run_id": "t1",
            "group": "/a/street.mp4",
            "target_s": 3.0,
            "configuration": {"sample_every": 5},
            "backend": "local-cpu",
            "predicted_s": 2.0,
            "observed_s": 2.5,
            "cost_usd": 0.002,
            "state": "done",
        },
    ]
    videos = [
        {"video": "/a/street.mp4", "answer": ANSWER, "errors": [], "reused": False},
        {"video": "/a/old.mp4", "answer": ANSWER, "errors": [], "reused": True},
    ]
    return build_report(
        pipeline="crossing",
        records=records,
        videos=videos,
        slo_s=60.0,
        latency_s=30.0,
        settings={},
        static_plan=static_plan,
    )


def test_the_summary_gives_verdict_cost_static_plan_and_method():
    text = summary_markdown(_report())
    assert "## crossing: SLO met" in text
    assert "best static plan: $0.001200" in text
    assert "this run's own choices priced the same way: $0.001500" in text
    assert "how: cheapest single configuration per op" in text
    assert "1 taken from earlier runs' results" in text
    assert "| old.mp4 | yes | 6 | 4.5 1.0 | earlier run |" in text
    assert "| street.mp4 | yes | 6 | 4.5 1.0 | this run |" in text


def test_a_run_that_invoked_nothing_says_there_is_no_plan_to_compare():
    assert "none to compare" in summary_markdown(_report(static_plan=None))


def test_reports_round_trip_and_bad_files_are_refused(tmp_path):
    path = write_report(_report(), tmp_path / "r.json")
    assert read_report(path)["run"]["videos_reused"] == 1
    with pytest.raises(ConfigurationError, match="no run report"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigurationError, match="not a run report"):
        read_report(tmp_path / "other.json")


def test_progress_counts_stored_videos_and_tells_listeners():
    seen = []
    PROGRESS_LISTENERS.append(lambda done, total: seen.append((done, total)))
    try:
        progress = ArchiveProgress("crossing", total=4, done=1, publish=False)
        progress.advance()
        progress.advance(5)  # never past the total
    finally:
        PROGRESS_LISTENERS.clear()
    assert seen == [(1, 4), (2, 4), (4, 4)]
    assert progress.percent == 100.0
