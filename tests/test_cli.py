"""The `llama-prefect` command: arguments, help, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest

from llama_prefect.cli import main


def test_run_on_a_missing_folder_fails_fast_with_a_fix(tmp_path, capsys):
    code = main(
        [
            "run",
            "crossing",
            "--videos",
            str(tmp_path / "nope"),
            "--slo-s",
            "5",
            "--profiles",
            str(tmp_path / "p.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "pass an existing file or folder" in err
    assert "make samples" not in err  # a user's own folder is not the sample archive
    assert not (tmp_path / "p.json").exists()  # no exploration was started


def test_a_missing_sample_folder_says_how_to_build_it(tmp_path, capsys):
    argv = ["run", "crossing", "--videos", str(tmp_path / "samples"), "--slo-s", "5"]
    assert main(argv + ["--profiles", str(tmp_path / "p.json")]) == 2
    assert "run `make samples`" in capsys.readouterr().err


def test_an_s3_report_makes_no_local_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "run",
            "crossing",
            "--videos",
            str(tmp_path / "nope"),
            "--slo-s",
            "5",
            "--report",
            "s3://bucket/runs/report.json",
        ]
    )
    assert code == 2  # the missing folder stops it, after the report check
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_on_a_folder_without_videos_names_the_suffixes(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no video here")
    code = main(["run", "crossing", "--videos", str(tmp_path), "--slo-s", "5"])
    assert code == 2
    assert ".mp4" in capsys.readouterr().err


def test_run_requires_an_slo(capsys):
    with pytest.raises(SystemExit):
        main(["run", "crossing", "--videos", "samples"])
    assert "--slo-s" in capsys.readouterr().err


def test_help_explains_the_objective(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "cheapest that meets each target" in out


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--slo-s", "0"], "slo_s"),
        (["--slo-s", "-5"], "slo_s"),
        (["--slo-s", "nan"], "slo_s"),
        (["--slo-s", "inf"], "slo_s"),
        (["--slo-s", "10", "--accuracy-floor", "1.5"], "accuracy_floor"),
    ],
)
def test_bad_run_settings_fail_before_any_work(tmp_path, capsys, extra, named):
    (tmp_path / "v.mp4").write_bytes(b"not checked: settings fail first")
    profiles = tmp_path / "p.json"
    code = main(
        [
            "run",
            "crossing",
            "--videos",
            str(tmp_path),
            "--profiles",
            str(profiles),
            *extra,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "invalid run settings" in err and named in err
    assert not profiles.exists()


@pytest.mark.parametrize("flag", ["--segment-s", "--trials"])
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_non_positive_counts_and_lengths_are_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit):
        main(["run", "crossing", "--videos", "samples", "--slo-s", "10", flag, value])
    assert flag in capsys.readouterr().err


def test_an_unwritable_report_path_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"")
    blocker = tmp_path / "file"
    blocker.write_text("a file, so no folder can be made under it")
    code = main(
        [
            "run",
            "crossing",
            "--videos",
            str(tmp_path),
            "--slo-s",
            "10",
            "--profiles",
            str(tmp_path / "p.json"),
            "--report",
            str(blocker / "report.json"),
        ]
    )
    assert code == 2
    assert "--report" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_profile_refuses_a_floor_outside_zero_to_one_before_any_work(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"not read: the floor fails first")
    profiles = tmp_path / "p.json"
    code = main(
        [
            "profile",
            "crossing",
            "--videos",
            str(tmp_path),
            "--profiles",
            str(profiles),
            "--accuracy-floor",
            "1.5",
        ]
    )
    assert code == 2
    assert "--accuracy-floor must be in [0, 1]" in capsys.readouterr().err
    assert not profiles.exists()


def test_profile_help_names_reuse_and_the_time_bound(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    out = capsys.readouterr().out
    assert "--reexplore" in out and "--trial-timeout-s" in out


def _saved_report(tmp_path):
    from llama_prefect.report import build_report, write_report

    record = {
        "op": "people",
        "task_run_id": "t1",
        "group": "/v/a.mp4",
        "target_s": 3.0,
        "configuration": {"sample_every": 5},
        "backend": "local-cpu",
        "predicted_s": 2.0,
        "observed_s": 2.5,
        "cost_usd": 0.002,
        "state": "done",
    }
    answer = {"crowded": False, "people_per_window": [1.0], "max_people": 2}
    report = build_report(
        pipeline="crossing",
        records=[record],
        videos=[{"video": "/v/a.mp4", "answer": answer, "errors": []}],
        slo_s=60.0,
        latency_s=12.0,
        settings={},
    )
    return write_report(report, tmp_path / "report.json")


def test_report_prints_the_verdict_and_with_a_flag_the_invocations(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at 80 columns
    path = _saved_report(tmp_path)
    assert main(["report", str(path), "--invocations"]) == 0
    out = capsys.readouterr().out
    assert "SLO met" in out and "a.mp4" in out
    assert "sample_every=5" in out and "1 invocations" in out


def test_a_piped_report_keeps_its_table_cells_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    path = _saved_report(tmp_path)
    record = json.loads(path.read_text())
    record["invocations"][0]["configuration"] = {
        "decoder": "decord",
        "sample_every": 5,
        "threads": 1,
        "width_px": 768,
        "win_stride_px": 8,
    }
    path.write_text(json.dumps(record))
    assert main(["report", str(path), "--invocations"]) == 0
    out = capsys.readouterr().out
    assert "decoder=decord" in out and "win_stride_px=8" in out
    assert "…" not in out


def test_report_as_json_is_the_file(tmp_path, capsys):
    import json

    path = _saved_report(tmp_path)
    assert main(["report", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(path.read_text())


def test_report_of_a_missing_file_says_how_to_make_one(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.json")]) == 2
    assert "llama-prefect run" in capsys.readouterr().err


def test_results_lists_one_row_per_stored_video(tmp_path, capsys):
    from llama_prefect.results import ResultStore

    store = ResultStore(tmp_path, "crossing", "v1-abc")
    for key, video in (("k1", "/v/a.mp4"), ("k2", "/v/b.mp4")):
        store.put(key, {"video": video, "answer": {"crowded": True}, "cost_usd": 0.1})
    assert main(["results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a.mp4" in out and "b.mp4" in out and "2 results" in out


def test_results_of_an_empty_folder_says_where_results_come_from(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert "--results" in capsys.readouterr().err


def test_results_of_a_file_says_it_is_a_file(tmp_path, capsys):
    video = tmp_path / "bikes.mp4"
    video.write_bytes(b"\x00")
    assert main(["results", str(video)]) == 2
    assert "is a file, not a folder of results" in capsys.readouterr().err


def test_profiles_naming_a_folder_says_folder(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"")
    folder = tmp_path / "store"
    folder.mkdir()
    argv = ["run", "crossing", "--videos", str(tmp_path), "--slo-s", "10"]
    assert main(argv + ["--profiles", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "it is a folder" in err and "move the folder away" in err


@pytest.mark.parametrize(
    "command, phrase",
    [
        (["run", "--help"], "skip videos already answered"),
        (["run", "--help"], "llama-price-catalog block"),
        (["report", "--help"], "best static plan"),
        (["blocks", "--help"], "switch backends or prices"),
        (["results", "--help"], "one per video content"),
    ],
)
def test_help_explains_the_new_options(command, phrase, capsys):
    with pytest.raises(SystemExit):
        main(command)
    out = " ".join(capsys.readouterr().out.split())
    assert phrase in out


def test_bench_runs_every_policy_side_by_side_and_writes_json(tmp_path, capsys):
    import json

    from llama_prefect.benchmark.simulated import DRAW, DRAWS, DRIFTS
    from llama_prefect.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "--videos", "8", "--workloads", "measured", "--levels", "0,1"]
    assert main(argv + ["--workers", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    w = report["workloads"]["measured"]
    policies = {r["policy"] for r in w["rows"]}
    assert {
        "llama",
        "llama-published",
        "grandslam",
        "static",
        "scanner",
        "gg",
        "nexus",
    } <= policies
    assert {r["policy"] for r in w["ablations"]} >= {"no-feedback", "no-batching"}
    assert [r["policy"] for r in w["failures"]] == ["llama-fail-0.03", "llama-fail-0.1"]
    assert all(r["oracle_usd"] > 0 for r in w["rows"])
    assert all(0.0 <= r["oracle_attainment"] <= 1.0 for r in w["rows"])
    # The top level is Llama-cheap's p95, or twice Llama-fast's when that is
    # further (a flat cost curve, as both workloads have at scale).
    cal = w["calibration"]
    assert cal["flat"] == (cal["cheap_p95_s"] < 2 * cal["fast_p95_s"])
    top = 2 * cal["fast_p95_s"] if cal["flat"] else cal["cheap_p95_s"]
    assert w["slo_levels"]["1.0"] == pytest.approx(top, abs=0.02)
    # Every video ends, the last ones of the archive too: none of them waits
    # for a batched call's mates that no longer come (the calibration runs
    # have no deadline to end such a wait).
    for key in ("fast", "cheap"):
        assert cal[f"{key}_p95_s"] <= cal[f"{key}_max_s"] < 600.0
    assert all(r["p95_s"] <= r["max_s"] for r in w["rows"] if r["max_s"])
    # Llama at the middle level once per draw of the simulated truth, the
    # tables' own draw among them, each against the oracle of its own draw.
    draws = w["draws"]
    assert sorted({r["draw"] for r in draws}) == sorted({*DRAWS, DRAW})
    assert all(r["policy"] == "llama" and r["x_oracle"] > 0 for r in draws)
    oracle_usd = {(r["drift"], r["draw"]): r["oracle_usd"] for r in draws}
    assert len(set(oracle_usd.values())) > len(DRIFTS)  # each draw its own truth
    summary = w["draws_summary"]["drift_1"]
    assert summary["draws"] == len(DRAWS) + 1
    assert summary["x_oracle_max"] >= summary["x_oracle_median"]
    out = capsys.readouterr().out
    assert "x_orcl" in out and "(slowest " in out and "other draws" in out
    # Of levels 0 and 1 the later is the one the ablations run at, and so named.
    assert {r["level"] for r in w["ablations"]} == {1.0}
    assert "-- ablations (level 1, drift 1.3)" in out


def test_bench_refuses_levels_outside_zero_one(capsys):
    from llama_prefect.cli import main

    assert main(["bench", "--levels", "0,2"]) == 2
    assert "--levels" in capsys.readouterr().err


def test_real_bench_refuses_a_missing_archive_or_profile_store(tmp_path, capsys):
    from llama_prefect.cli import main

    argv = ["bench", "--mode", "real", "--out", str(tmp_path / "b.json")]
    assert main(argv + ["--samples", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"\0")
    missing = str(tmp_path / "p.json")
    assert main(argv + ["--samples", str(tmp_path / "v"), "--profiles", missing]) == 2
    assert "--profiles" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_run_keeps_a_store_only_in_the_crossing_ops_current_work_units(tmp_path):
    from llama_prefect.flows.crossing import PIPELINE

    from llama_prefect.cli import _units_match
    from llama_prefect.core.profiles import ProfileStore

    path = tmp_path / "p.json"
    store = ProfileStore("crossing")
    store.save(path)
    assert not _units_match(path)  # explored before units were recorded
    store.meta["units"] = {op: spec.unit for op, spec in PIPELINE.ops.items()}
    store.save(path)
    assert _units_match(path)
    store.meta["units"]["faces"] = "megapixel"
    store.save(path)
    assert not _units_match(path)


def test_ctrl_c_in_profile_exits_130_without_the_interpreter_shutdown(
    monkeypatch, capsys
):
    # A native thread still in an op body can abort the interpreter's shutdown, so
    # an interrupted `profile` leaves at once; other commands return normally.
    from llama_prefect import cli

    def interrupted(args):
        raise KeyboardInterrupt

    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(cli, "_profile", interrupted)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        cli.main(["profile", "crossing", "--videos", "samples"])
    assert exits == [130]
    assert "journal" in capsys.readouterr().err

    monkeypatch.setattr(cli, "_bench", interrupted)
    assert cli.main(["bench", "--videos", "2"]) == 130
    assert exits == [130]  # no second exit: bench returned


@pytest.mark.parametrize(
    "content", ["notjson", '{"format": 1, "run": {}, "videos": []}', "[1, 2]"]
)
@pytest.mark.parametrize("command", ["run", "profile"])
def test_a_profiles_path_that_holds_no_store_is_refused_and_left_alone(
    tmp_path, capsys, command, content
):
    # Exploring writes the store at --profiles; a file there that is no store (a
    # report, anything else) would be overwritten with no copy kept.
    (tmp_path / "v.mp4").write_bytes(b"")
    target = tmp_path / "mine.json"
    target.write_text(content)
    argv = [command, "crossing", "--videos", str(tmp_path), "--profiles", str(target)]
    if command == "run":
        argv += ["--slo-s", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds no profile store" in err and "left as it is" in err
    assert target.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "v.mp4"]


@pytest.mark.parametrize(
    "flag, place",
    [
        ("--report", "folder"),  # an existing folder: the report cannot replace it
        ("--results", "afile/sub"),  # under a file: no folder can be made there
        ("--profiles", "afile/p.json"),
    ],
)
def test_an_output_path_that_cannot_be_used_is_refused_before_any_work(
    tmp_path, capsys, flag, place
):
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "afile").write_text("a file, so no folder can be made under it")
    (tmp_path / "folder").mkdir()
    argv = ["run", "crossing", "--videos", str(tmp_path), "--slo-s", "10"]
    if flag != "--profiles":
        argv += ["--profiles", str(tmp_path / "p.json")]
    argv += [flag, str(tmp_path / place)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()  # nothing was explored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder", "v.mp4"]


def test_results_naming_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = ["run", "crossing", "--videos", str(tmp_path), "--slo-s", "10"]
    argv += ["--profiles", str(tmp_path / "p.json"), "--results", str(afile)]
    assert main(argv) == 2
    assert "--results" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    "content",
    [b'{"format": 1, "pipeline": "crossing", "ops": {}}', b"\xff\xfe\x00binary"],
)
def test_report_of_a_file_that_is_no_report_says_so(tmp_path, capsys, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "llama-prefect run" in err and "Traceback" not in err


def test_samples_into_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["samples", "--out", str(afile)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_report_piped_into_a_reader_that_stops_ends_quietly(tmp_path):
    import subprocess
    import sys

    path = _saved_report(tmp_path)
    report = json.loads(path.read_text())
    report["invocations"] = report["invocations"] * 3000  # far more than a pipe holds
    path.write_text(json.dumps(report))
    code = "from llama_prefect.cli import main; raise SystemExit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "report", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(100)  # read a little, as `head` does, then stop
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_an_unknown_block_fails_before_exploring(tmp_path, capsys, prefect_server):
    (tmp_path / "v.mp4").write_bytes(b"")
    argv = ["run", "crossing", "--videos", str(tmp_path), "--slo-s", "10"]
    argv += ["--profiles", str(tmp_path / "p.json"), "--price-catalog", "nosuch"]
    assert main(argv) == 2
    assert "no llama-price-catalog block named 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()  # nothing was explored


def test_a_folder_without_videos_says_what_to_pass(tmp_path, capsys):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "v.mp4").write_bytes(b"")  # subfolders are not searched
    (tmp_path / "notes.txt").write_text("no video")
    argv = ["run", "crossing", "--videos", str(tmp_path), "--slo-s", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no video files" in err and "subfolders are not searched" in err


def test_the_summary_says_which_answers_came_from_earlier_runs(capsys):
    # A resumed run answers one video itself and takes the other from the results
    # of the run that was interrupted: the console says so, as the report does.
    from llama_prefect.cli import _print_summary

    answer = {"crowded": False, "max_people": 2, "people_per_window": [0.5, 1.0]}
    report = {
        "videos": [
            {"video": "a/bikes.mp4", "answer": answer, "errors": [], "reused": True},
            {"video": "a/carphone.mp4", "answer": answer, "errors": []},
        ],
        "run": {
            "slo_met": True,
            "latency_s": 12.0,
            "slo_s": 120.0,
            "videos": 2,
            "videos_failed": 0,
            "videos_reused": 1,
            "cost_usd": 0.0005,
            "invocations": 40,
            "failed_invocations": 0,
        },
    }
    _print_summary(report, "runs/latest/report.json")
    out = " ".join(capsys.readouterr().out.split())
    assert "2 of 2 videos answered (1 taken from earlier runs' results)" in out
    assert out.count("earlier run") == 2 and "this run" in out


def test_version_is_printed(capsys):
    from llama_prefect import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"llama-prefect {__version__}"
