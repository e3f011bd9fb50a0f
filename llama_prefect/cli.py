"""The `llama-prefect` command.

    llama-prefect samples [--out samples]
    llama-prefect profile crossing --videos samples [--trials 16]
    llama-prefect run crossing --videos samples --slo-s 120 [--objective cost]

`run` explores the pipeline first when its profile store does not exist yet, then runs
the flow on Prefect (a temporary local server unless PREFECT_API_URL is set), prints
each video's answer, the SLO verdict and the cost, and writes the run report.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from llama_prefect.errors import ConfigurationError, LlamaError

PIPELINES = ("crossing",)
DEFAULT_PROFILES = "runs/profiles/{pipeline}.json"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A loaded 2-core machine can take longer than the default 20 s to start it.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        return int(args.handler(args) or 0)
    except LlamaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-prefect",
        description="Run video analytics pipelines on Prefect with per-invocation "
        "latency targets and cost-based configuration (the Llama method).",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    samples = sub.add_parser("samples", help="build the sample video archive")
    samples.add_argument("--out", default="samples", help="folder to write (samples)")
    samples.add_argument("--force", action="store_true", help="rebuild existing files")
    samples.set_defaults(handler=_samples)

    profile = sub.add_parser("profile", help="explore a pipeline's configurations")
    _common(profile)
    profile.add_argument(
        "--trials",
        type=_positive(int),
        default=16,
        help="trial budget per op and backend (16)",
    )
    profile.set_defaults(handler=_profile)

    _add_run(sub)
    return parser


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run a pipeline over a folder of videos")
    _common(run)
    run.add_argument(
        "--slo-s",
        type=float,
        required=True,
        help="seconds the whole run may take (one deadline for the archive)",
    )
    run.add_argument(
        "--objective",
        choices=("cost", "latency", "cheapest"),
        default="cost",
        help="cost: cheapest that meets each target (default); latency: fastest; "
        "cheapest: ignore targets",
    )
    run.add_argument(
        "--accuracy-floor",
        type=float,
        default=0.8,
        help="never choose configurations less accurate than this (0.8)",
    )
    run.add_argument(
        "--segment-s",
        type=_positive(float),
        default=4.0,
        help="length of the segments each video is cut into, in seconds (4)",
    )
    run.add_argument(
        "--report",
        default="runs/latest/report.json",
        help="where to write the JSON run report (runs/latest/report.json)",
    )
    run.add_argument(
        "--trials",
        type=_positive(int),
        default=16,
        help="trial budget per op and backend when profiles must be explored first "
        "(16)",
    )
    run.set_defaults(handler=_run)


def _positive(kind: type) -> Any:
    """An argparse type: a finite number of `kind` above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be above 0, but got {text}")
        return value

    return parse


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", choices=PIPELINES, help="the pipeline to use")
    parser.add_argument(
        "--videos", required=True, help="a folder of videos or one video file"
    )
    parser.add_argument(
        "--profiles",
        default=None,
        help="profile store file (runs/profiles/PIPELINE.json)",
    )


def _profiles_path(args: argparse.Namespace) -> Path:
    return Path(args.profiles or DEFAULT_PROFILES.format(pipeline=args.pipeline))


def _samples(args: argparse.Namespace) -> int:
    from llama_prefect.video.samples import make_sample_archive

    made = make_sample_archive(Path(args.out), force=args.force)
    print(f"{len(made)} videos in {args.out}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from llama_prefect.flows.crossing import list_videos, seed_profiles

    path = _profiles_path(args)
    videos = list_videos(args.videos)
    result = seed_profiles(
        videos,
        path,
        n_trials=args.trials,
        journal_path=path.with_suffix(".optuna.log"),
    )
    print(
        f"profiled {sum(len(m) for m in result.measurements.values())} configurations "
        f"in {result.seconds:.1f} s (${result.cost_usd:.6f}, "
        f"{result.failed_trials} failed trials) -> {path}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from llama_prefect.flows.crossing import PIPELINE, crossing, list_videos
    from llama_prefect.runner import LlamaTaskRunner
    from llama_prefect.settings import RunSettings

    RunSettings.check(
        slo_s=args.slo_s, objective=args.objective, accuracy_floor=args.accuracy_floor
    )
    _check_writable(Path(args.report))
    list_videos(args.videos)  # fail fast, before any work, on a bad folder
    path = _profiles_path(args)
    if not path.exists():
        print(f"no profiles at {path}: exploring the pipeline first")
        _profile(args)
    flow = crossing.with_options(
        task_runner=LlamaTaskRunner(PIPELINE, profile_path=path)
    )
    report = flow(
        videos=str(args.videos),
        slo_s=args.slo_s,
        objective=args.objective,
        accuracy_floor=args.accuracy_floor,
        segment_s=args.segment_s,
        report_path=str(args.report),
    )
    _print_summary(report, args.report)
    return 1 if report["run"]["videos_failed"] else 0


def _check_writable(report: Path) -> None:
    """Fails before any work when the report could not be written at the end."""
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the report folder {report.parent} ({exc.strerror}); pass "
            "--report with a path in a folder you can write"
        ) from None
    if not os.access(report.parent, os.W_OK):
        raise ConfigurationError(
            f"cannot write the report in {report.parent}; pass --report with a path "
            "in a folder you can write"
        )


def _print_summary(report: dict[str, Any], report_path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="answers per video")
    for column in ("video", "crowded", "max people", "people per window"):
        table.add_column(column)
    for entry in report["videos"]:
        answer = entry["answer"]
        name = Path(entry["video"]).name
        if answer is None:
            table.add_row(name, "failed", "", "; ".join(entry["errors"]))
            continue
        windows = " ".join(f"{x:.1f}" for x in answer["people_per_window"])
        crowded = "yes" if answer["crowded"] else "no"
        table.add_row(name, crowded, str(answer["max_people"]), windows)
    console.print(table)
    run = report["run"]
    verdict = "met" if run["slo_met"] else "MISSED"
    failed = run["videos_failed"]
    videos = f"{run['videos'] - failed} of {run['videos']} videos answered"
    console.print(
        f"SLO {verdict}: {run['latency_s']:.1f} s of {run['slo_s']:.1f} s; {videos}; "
        f"cost ${run['cost_usd']:.6f} over {run['invocations']} invocations "
        f"({run['failed_invocations']} failed); report: {report_path}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
