"""Prediction fidelity of explored profiles on real runs, before and after feedback.

Explores the crossing pipeline on the archive once (or takes `--profiles`), then runs
the crossing flow twice on the same archive, each from a copy of the same profiles.
What earlier runs taught a given store (drift, residuals; see
`ProfileStore.forget_feedback`) is dropped first, so both runs start from the
exploration's seeds: once with online feedback off (every prediction comes from the
seeds) and once with it on (each finished invocation corrects the profiles). For each
run it prints, per op and overall, the median and p95 of
``abs(predicted - observed) / observed`` per invocation after warm-up (see
`llama_prefect.fidelity`), the bias (median signed error), the floor (the error of
the line in the units fitted to the run's own invocations, which shows the noise
no profile can remove) and the median seconds spent outside the op's body, and
draws the predicted-against-observed plot.

    .venv/bin/python bench/fidelity.py --videos samples --out runs/bench/fidelity
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from llama_prefect.flows.crossing import PIPELINE, crossing, list_videos, seed_profiles

from llama_prefect.core.profiles import ProfileStore
from llama_prefect.fidelity import (
    by_op,
    line_floor,
    outside_body_s,
    prediction_errors,
    summarize,
)
from llama_prefect.plots import fidelity_plot
from llama_prefect.runner import LlamaTaskRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="samples")
    parser.add_argument("--profiles", default=None, help="explored store to start from")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--slo-s", type=float, default=120.0)
    parser.add_argument("--out", default="runs/bench/fidelity")
    args = parser.parse_args()
    # A loaded machine can take longer than Prefect's default 20 s to start it.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = out / "seed.json"
    if args.profiles:
        if Path(args.profiles).resolve() != seed.resolve():
            shutil.copy(args.profiles, seed)
    else:
        seed_profiles(list_videos(args.videos), seed, n_trials=args.trials)
    store = ProfileStore.load(seed)
    store.forget_feedback()
    store.save(seed)
    results = {}
    for feedback in (False, True):
        name = "after feedback" if feedback else "before feedback"
        report = _run(args, out, seed, feedback)
        fidelity_plot(report, out / f"fidelity-feedback-{feedback}.png".lower())
        results[name] = _summary(report)
    _print(results)
    (out / "fidelity.json").write_text(json.dumps(results, indent=1))
    print(f"saved {out / 'fidelity.json'}")


def _run(args: argparse.Namespace, out: Path, seed: Path, feedback: bool) -> dict:
    profiles = out / f"profiles-feedback-{feedback}.json".lower()
    shutil.copy(seed, profiles)
    runner = LlamaTaskRunner(
        PIPELINE, profile_path=profiles, feedback=feedback, save_profiles=False
    )
    flow = crossing.with_options(task_runner=runner)
    return flow(
        videos=str(args.videos),
        slo_s=args.slo_s,
        report_path=str(out / f"report-feedback-{feedback}.json".lower()),
    )


def _summary(report: dict) -> dict:
    errors = prediction_errors(report)
    rows: dict = {}
    for op, summary in by_op(errors).items():
        floor = line_floor(errors, op=op)
        rows[op] = {
            **vars(summary),
            "floor_median": floor.median if floor else None,
            "floor_p95": floor.p95 if floor else None,
            "outside_body_s": outside_body_s(errors, op=op),
        }
    overall, floor = summarize(errors), line_floor(errors)
    rows["all"] = vars(overall) if overall else {}
    if overall and floor:
        rows["all"].update(floor_median=floor.median, floor_p95=floor.p95)
    rows["load_average"] = os.getloadavg()[0]
    rows["warmup_left_out"] = sum(1 for e in errors if e.warmup)
    rows["run_latency_s"] = report["run"]["latency_s"]
    return rows


def _print(results: dict) -> None:
    print(
        f"{'run':16} {'op':10} {'n':>4} {'median':>7} {'p95':>7} {'<=10%':>6} "
        f"{'bias':>7} {'floor':>7} {'fl.p95':>7} {'outside':>8}"
    )
    for name, rows in results.items():
        for op, row in rows.items():
            if not isinstance(row, dict) or not row:
                continue
            outside = row.get("outside_body_s")
            print(
                f"{name:16} {op:10} {row['n']:>4} {row['median']:>7.1%} "
                f"{row['p95']:>7.1%} {row['within_10pct']:>6.0%} "
                f"{row['bias']:>+7.1%} {_pct(row.get('floor_median'))} "
                f"{_pct(row.get('floor_p95'))} "
                f"{'' if outside is None else f'{outside:.3f} s':>8}"
            )
        print(
            f"{name:16} warm-up invocations left out: {rows['warmup_left_out']}; "
            f"run took {rows['run_latency_s']:.1f} s; load average "
            f"{rows['load_average']:.1f}"
        )


def _pct(value: float | None) -> str:
    return f"{'':>7}" if value is None else f"{value:>7.1%}"


if __name__ == "__main__":
    main()
