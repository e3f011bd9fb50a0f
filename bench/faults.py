"""Injected failures and stragglers, and a flow process killed mid-archive.

Runs the crossing flow over one archive several times, each run from a copy of the
same profiles: without faults (the baseline), with 3% and 10% of invocation attempts
made to fail once, with 3% and 10% made to straggle (5 times their own time), and as
a separate process killed with SIGKILL partway through (half the baseline's latency
after its first decode worker started), then run again. The scheduler
draws which attempts get a fault (`inject_failure_rate`, `inject_straggler_rate`,
seeded); the runner makes it happen inside the task run, so a failure is retried by
the task's own retries. The SLO is twice the baseline's latency.

For every run it prints the SLO verdict and latency, the faults injected, retries,
failed invocations, and the results against the baseline: videos answered, answers
that differ (lost or changed), and segments counted twice (duplicated). Writes JSON.

    .venv/bin/python bench/faults.py --videos 6 --out runs/bench/faults.json

When the flow takes a ``results_dir`` (a results store keyed by video content), the
killed run and the run after it share one, so the second run resumes: the row then
also gives the results stored before the rerun, the videos it took from the store,
and the stored results after it (one per video means none was duplicated).

Note:
    The runner does not duplicate stragglers or re-plan retries yet, so stragglers
    cost their full time here. Without a results store the run after the kill does
    every video again; what is measured then is that the kill leaves no decode worker
    behind and no partial report, and that the second run loses and duplicates
    nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
CASES = [
    ("baseline", 0.0, 0.0),
    ("failures 3%", 0.03, 0.0),
    ("failures 10%", 0.10, 0.0),
    ("stragglers 3%", 0.0, 0.03),
    ("stragglers 10%", 0.0, 0.10),
]


def _archive(folder: Path, videos: int) -> Path:
    """`videos` clips of 8 s cut from vtest.avi (or a test pattern without it)."""
    from llama_prefect.video.samples import find_vtest

    vtest = find_vtest()
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(videos):
        target = folder / f"street {number:02d}.mp4"
        if vtest is not None:
            source = ["-ss", str(8 * number % 70), "-t", "8", "-i", str(vtest)]
        else:
            source = ["-f", "lavfi", "-i", "testsrc=size=640x480:rate=10", "-t", "8"]
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *source, *H264,
             str(target)],
            check=True,
        )  # fmt: skip
    return folder


def _profiles(path: Path) -> Path:
    """One configuration per op, seeded with latencies of this kind of machine."""
    from llama_prefect.flows.crossing import PIPELINE

    from llama_prefect.core.pipeline import Configuration
    from llama_prefect.core.profiles import ProfileStore

    people = {"sample_every": 10, "width_px": 640, "win_stride_px": 16, "threads": 1}
    faces = {"sample_every": 20, "width_px": 320, "model": "haar", "threads": 1}
    knobs: dict[str, tuple[dict[str, Any], float]] = {
        "split": ({}, 0.05),
        "motion": ({"sample_every": 2, "width_px": 160, "device": "cpu"}, 0.004),
        "people": (people, 0.01),
        "faces": ({**faces, "device": "cpu"}, 0.003),
        "aggregate": ({}, 0.01),
    }
    store = ProfileStore(PIPELINE.name)
    for op, (values, s_per_unit) in knobs.items():
        config = {"decoder": "pyav", **values} if values else {}
        store.seed(op, Configuration.of("local-cpu", config), s_per_unit)
    store.save(path)
    return path


def _run_flow(
    archive: Path, seed_profiles: Path, work: Path, name: str, case: dict[str, Any]
) -> dict[str, Any]:
    from llama_prefect.flows.crossing import PIPELINE, crossing

    from llama_prefect.runner import LlamaTaskRunner

    profiles = work / f"{name}.profiles.json"
    shutil.copy(seed_profiles, profiles)
    extra = {}
    if case.get("results_dir") and _resumable():
        extra["results_dir"] = case["results_dir"]
    runner = LlamaTaskRunner(
        PIPELINE,
        profile_path=profiles,
        inject_failure_rate=case.get("fail", 0.0),
        inject_straggler_rate=case.get("slow", 0.0),
        seed=case.get("seed", 1),
    )
    return crossing.with_options(task_runner=runner)(
        videos=str(archive),
        slo_s=case["slo_s"],
        segment_s=1.0,
        report_path=str(work / f"{name}.report.json"),
        **extra,
    )


def _resumable() -> bool:
    """True when the crossing flow can resume from a results store."""
    import inspect

    from llama_prefect.flows.crossing import crossing

    return "results_dir" in inspect.signature(crossing.fn).parameters


def _compare(report: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """Injected faults, retries, and the results against the baseline's."""
    records = report["invocations"]
    injected = Counter(r.get("injected") for r in records if r.get("injected"))
    done = Counter(
        (r["group"], r["op"]) for r in records if r["state"] == "done" and r["group"]
    )
    answers = {v["video"]: v["answer"] for v in report["videos"]}
    row = {
        "slo_s": report["run"]["slo_s"],
        "latency_s": round(report["run"]["latency_s"], 2),
        "slo_met": report["run"]["slo_met"],
        "invocations": len(records),
        "injected_failures": injected.get("failure", 0),
        "injected_stragglers": injected.get("straggler", 0),
        "injected_share": round(sum(injected.values()) / max(1, len(records)), 3),
        "retries": report["run"].get("retries", 0),
        "failed_invocations": report["run"]["failed_invocations"],
        "videos_answered": sum(a is not None for a in answers.values()),
    }
    if baseline is not None:
        base_answers = {v["video"]: v["answer"] for v in baseline["videos"]}
        base_done = Counter(
            (r["group"], r["op"])
            for r in baseline["invocations"]
            if r["state"] == "done" and r["group"]
        )
        row["lost_or_changed"] = sum(
            answers.get(video) != answer for video, answer in base_answers.items()
        )
        row["duplicated"] = sum(
            max(0, count - base_done.get(key, 0)) for key, count in done.items()
        )
    return row


def _kill_case(
    archive: Path, seed_profiles: Path, work: Path, slo_s: float, after_s: float
) -> dict[str, Any]:
    """Runs the flow in a child process, kills it `after_s` after decoding began."""
    report_path = work / "killed.report.json"
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", str(archive), str(seed_profiles),
         str(work), str(slo_s)],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180.0  # its temporary Prefect server starts first
    while not _decode_workers(child.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(after_s)
    workers_before = _decode_workers(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    time.sleep(1.0)
    workers_after = [pid for pid in workers_before if _alive(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # the child's temporary Prefect server
    return {
        "killed_after_s": after_s,
        "decode_workers_at_kill": len(workers_before),
        "decode_workers_left": len(workers_after),
        "partial_report_left": report_path.exists(),
    }


def _decode_workers(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"llama_prefect.video._worker" in argv and str(parent).encode() in argv:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _child(argv: list[str]) -> None:
    archive, seed_profiles, work, slo_s = argv
    case = {"slo_s": float(slo_s), "results_dir": str(Path(work) / "results")}
    _run_flow(Path(archive), Path(seed_profiles), Path(work), "killed", case)


def _stored_results(work: Path) -> dict[str, Any]:
    """Whole result files in the results store (partial ones start with a dot)."""
    files = [
        p for p in (work / "results").rglob("*.json") if not p.name.startswith(".")
    ]
    return {"stored_results": len(files)}


def _print(name: str, row: dict[str, Any]) -> None:
    fields = " ".join(f"{k}={v}" for k, v in row.items())
    print(f"{name:16} {fields}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--videos",
        type=int,
        default=6,
        help="how many 8 s clips of vtest.avi the archive has (6)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench/faults.json"),
        help="where to write the JSON (runs/bench/faults.json)",
    )
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        archive = _archive(work / "archive é", args.videos)
        seed = _profiles(work / "seed.json")
        _run_flow(archive, seed, work, "warm-up", {"slo_s": 600.0})
        baseline = _run_flow(archive, seed, work, "baseline", {"slo_s": 600.0})
        slo_s = round(2 * baseline["run"]["latency_s"], 1)
        baseline["run"]["slo_s"] = slo_s
        baseline["run"]["slo_met"] = baseline["run"]["latency_s"] <= slo_s
        results["baseline"] = _compare(baseline, None)
        _print("baseline", results["baseline"])
        for name, fail, slow in CASES[1:]:
            case = {"slo_s": slo_s, "fail": fail, "slow": slow, "seed": 7}
            report = _run_flow(archive, seed, work, name.replace(" ", "-"), case)
            results[name] = _compare(report, baseline)
            _print(name, results[name])
        # Half the baseline's latency after decoding began: midway through the archive.
        kill = _kill_case(archive, seed, work, slo_s, 0.25 * slo_s)
        if _resumable():
            kill.update(stored_before_rerun=_stored_results(work)["stored_results"])
        case = {"slo_s": slo_s, "results_dir": str(work / "results")}
        rerun = _run_flow(archive, seed, work, "after-kill", case)
        row = {**kill, **_compare(rerun, baseline)}
        if _resumable():
            row.update(
                videos_reused=rerun["run"].get("videos_reused"),
                stored_after_rerun=_stored_results(work)["stored_results"],
            )
        results["killed, then rerun"] = row
        _print("killed, rerun", results["killed, then rerun"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
