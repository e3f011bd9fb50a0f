"""Archive runs: which videos still need work, and what is stored as answers arrive."""

from __future__ import annotations

from llama_prefect.archive import Archive
from llama_prefect.results import content_sha256

ANSWER = {"crowded": False, "people_per_window": [1.0], "max_people": 2}


def _videos(tmp_path, n=3):
    paths = []
    for i in range(n):
        path = tmp_path / f"v{i}.mp4"
        path.write_bytes(f"video {i}".encode())
        paths.append(str(path))
    return paths


def _archive(tmp_path, videos):
    return Archive.open(
        videos,
        results_dir=str(tmp_path / "results"),
        pipeline="crossing",
        version="1",
        answer_parameters={"segment_s": 4.0},
        run_id="run-1",
        publish=False,
    )


def _records(video):
    return [
        {"op": "split", "group": video, "cost_usd": 0.5},
        {"op": "motion", "group": video, "cost_usd": 0.25},
        {"op": "split", "group": "someone else", "cost_usd": 9.0},
    ]


def test_a_first_run_has_everything_to_do(tmp_path):
    videos = _videos(tmp_path)
    archive = _archive(tmp_path, videos)
    assert archive.todo == videos and archive.progress.done == 0


def test_a_clean_answer_is_stored_with_its_own_invocations_and_cost(tmp_path):
    videos = _videos(tmp_path)
    archive = _archive(tmp_path, videos)
    archive.finish(
        {"video": videos[0], "answer": ANSWER, "errors": []}, _records(videos[0])
    )
    stored = archive.store.get(content_sha256(videos[0]))
    assert stored["answer"] == ANSWER and stored["flow_run_id"] == "run-1"
    assert stored["cost_usd"] == 0.75 and len(stored["invocations"]) == 2
    assert archive.progress.done == 1


def test_failed_and_incomplete_videos_are_not_stored_so_the_next_run_retries(tmp_path):
    videos = _videos(tmp_path)
    archive = _archive(tmp_path, videos)
    archive.finish({"video": videos[0], "answer": None, "errors": ["split: bad"]}, [])
    archive.finish({"video": videos[1], "answer": ANSWER, "errors": ["faces: x"]}, [])
    assert list(archive.store.results()) == []
    assert archive.progress.done == 2  # they are done for this run all the same
    assert _archive(tmp_path, videos).todo == videos


def test_a_rerun_reuses_stored_answers_and_keeps_archive_order(tmp_path):
    videos = _videos(tmp_path)
    first = _archive(tmp_path, videos)
    first.finish({"video": videos[1], "answer": ANSWER, "errors": []}, [])
    again = _archive(tmp_path, videos)
    assert again.todo == [videos[0], videos[2]]
    assert again.progress.done == 1 and again.progress.percent == 100 / 3
    entries = again.entries(
        [{"video": v, "answer": ANSWER, "errors": []} for v in again.todo]
    )
    assert [e["video"] for e in entries] == videos
    assert [e["reused"] for e in entries] == [False, True, False]
    assert entries[1]["from_flow_run"] == "run-1"


def test_changed_bytes_mean_a_new_video(tmp_path):
    videos = _videos(tmp_path, 1)
    _archive(tmp_path, videos).finish(
        {"video": videos[0], "answer": ANSWER, "errors": []}, []
    )
    with open(videos[0], "ab") as handle:
        handle.write(b" re-encoded")
    assert _archive(tmp_path, videos).todo == videos


def test_without_a_results_folder_nothing_is_kept(tmp_path):
    videos = _videos(tmp_path)
    archive = Archive.open(
        videos,
        results_dir=None,
        pipeline="crossing",
        version="1",
        answer_parameters={},
        publish=False,
    )
    archive.finish({"video": videos[0], "answer": ANSWER, "errors": []}, [])
    assert archive.store is None and archive.todo == videos
    assert not (tmp_path / "results").exists()
