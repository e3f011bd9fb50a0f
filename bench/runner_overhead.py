"""What LlamaTaskRunner adds to Prefect: a 1,000-task no-op flow, side by side.

Runs the same flow, which submits `--tasks` invocations of a no-op op and waits for
all of them, on Prefect's `ThreadPoolTaskRunner` and on `LlamaTaskRunner` with the
same number of slots, `--rounds` times each, and prints each runner's median wall
time, the ratio of the medians and the ratio of each round, with the CPU time and
the most threads of the flow's process in each timed run. The Llama runner's
decision overhead (planning at submit plus its share of each commit round, per
invocation) is taken from its records: median, p99 and max.

Every measured flow run gets a server state of its own: a child process (``--one``)
with a new ``PREFECT_HOME`` (so a new SQLite database) starts its own temporary
Prefect server, runs a short warm-up flow on the same runner, waits, and only then
times the flow. A server that stored the events of earlier rounds is slower, so a
shared one would make the order of the rounds decide the ratio. Within a round the
two runners go in turns, the first one alternating from round to round. Server
start-up, imports and the warm-up are outside the timing.

    .venv/bin/python bench/runner_overhead.py --tasks 1000 --rounds 3

With ``--direct`` Prefect's task engine is replaced in both runners by a direct call
of the task's function that returns a Completed state: no task run is created, no
state stored, no event sent. What is left is each runner's own work around the
engine (for the Llama runner: planning, commits, the attempt's hand-over and its
records), which tells how much of the gap is ours and how much is Prefect's engine
running beside our threads. It is a diagnostic: task runs are not real there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.exceptions import PrefectHTTPStatusError  # noqa: E402
from prefect.server.api.server import SubprocessASGIServer  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline  # noqa: E402
from llama_prefect.core.profiles import ProfileStore  # noqa: E402
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner  # noqa: E402

#: Seconds to wait before the timed flow run, after the warm-up (ours).
SETTLE_S = 3.0
#: Times a flow run the server refused is created again.
RETRIES = 5
#: Tasks of the warm-up flow run (ours): enough to import and connect everything.
WARM_UP_TASKS = 10
#: The runners compared, in the order of the even rounds.
KINDS = ("threadpool", "llama")

PIPELINE = Pipeline("noop")
PIPELINE.add_op(OpSpec("noop", knobs={"mode": ("a", "b")}, group_of=lambda p: "g"))


def _noop_body(i: int, mode: str = "a") -> int:
    return i


setattr(_noop_body, OP_ATTRIBUTE, "noop")
noop = task(name="noop")(_noop_body)


#: The Llama runner's plan records of the last flow run. They are handed over here,
#: not returned: Prefect walks a flow's return value for futures, and a thousand
#: records would add a walk that the thread pool's run does not have.
RECORDS: list[dict[str, Any]] = []


@flow
def many(n: int) -> int:
    futures = [noop.submit(i) for i in range(n)]
    values = [f.result() for f in futures]
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    RECORDS[:] = runner.records() if isinstance(runner, LlamaTaskRunner) else []
    return sum(values)


def _direct_engine() -> None:
    """Replaces Prefect's task engine by a direct call of the task's function."""
    import prefect.task_engine
    from prefect.states import Completed

    def run_task_sync(
        task: Any,
        task_run_id: Any = None,
        parameters: dict[str, Any] | None = None,
        return_type: str = "result",
        **_: Any,
    ) -> Any:
        value = task.fn(**(parameters or {}))
        return Completed(data=value) if return_type == "state" else value

    # Both runners import it from the module when they submit or run a task.
    prefect.task_engine.run_task_sync = run_task_sync  # type: ignore[assignment]


def _one(kind: str, n: int, slots: int, out: Path, direct: bool = False) -> None:
    """Child process: one warm-up and one timed flow run on a fresh server."""
    if direct:
        _direct_engine()
    # The flow runs below find the server running and use it. It stops at exit,
    # after Prefect's workers have sent it the last logs and events.
    SubprocessASGIServer().start()
    _timed(kind, slots, WARM_UP_TASKS, out.parent)
    wall_s, cpu_s, threads = _timed(kind, slots, n, out.parent)
    decision_ms = [r["decision_ms"] for r in RECORDS]
    result = {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "peak_threads": threads,
        "decision_ms": decision_ms,
    }
    out.write_text(json.dumps(result))


def _runner(kind: str, slots: int, work: Path) -> Any:
    if kind == "threadpool":
        return ThreadPoolTaskRunner(max_workers=slots)
    store = ProfileStore("noop")
    store.seed("noop", Configuration.of("local-cpu", {"mode": "a"}), 0.001)
    store.seed("noop", Configuration.of("local-cpu", {"mode": "b"}), 0.002)
    return LlamaTaskRunner(
        PIPELINE,
        profile_path=store.save(work / "noop.json"),
        cpu_slots=slots,
        slo_s=3600.0,
        save_profiles=False,
    )


class _PeakThreads:
    """Samples the threads of this process every `every_s` and keeps the most seen."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.peak = threading.active_count()
        self._every_s = every_s
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _PeakThreads:
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._sampler.join()

    def _sample(self) -> None:
        while not self._stop.wait(self._every_s):
            self.peak = max(self.peak, threading.active_count())


def _timed(kind: str, slots: int, n: int, work: Path) -> tuple[float, float, int]:
    """Runs the flow once on a new runner.

    A flow run the server refuses (503 at creation, before anything ran) is created
    again after a pause, and only the run that happened is timed.

    Returns:
        Its wall time and the CPU time of this process (every thread) meanwhile,
        in seconds, and the most threads the process had meanwhile (the sampler's
        own included).
    """
    for left in range(RETRIES, -1, -1):
        time.sleep(SETTLE_S)  # let the server store what came before
        runner = _runner(kind, slots, work)
        started_s, cpu_s = time.perf_counter(), time.process_time()
        try:
            with _PeakThreads() as threads:
                total = many.with_options(task_runner=runner)(n=n)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 503 or not left:
                raise
            print(f"server busy ({exc.response.status_code}); trying again")
            continue
        wall_s = time.perf_counter() - started_s
        assert total == n * (n - 1) // 2
        return wall_s, time.process_time() - cpu_s, threads.peak
    raise AssertionError("unreachable")


def _spawn(kind: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Runs one measured flow run in a child process with a Prefect home of its own."""
    home = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    out = home / "result.json"
    command = [sys.executable, __file__, "--one", kind, "--result", str(out)]
    command += ["--tasks", str(args.tasks), "--slots", str(args.slots)]
    if args.direct:
        command.append("--direct")
    log = home / "child.log"
    with log.open("w") as sink:  # the servers' shutdown noise, kept out of sight
        done = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(log.read_text()[-4000:])
        raise SystemExit(f"the {kind} flow run failed (exit {done.returncode})")
    return dict(json.loads(out.read_text()))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(args: argparse.Namespace, runs: list[dict[str, dict[str, Any]]]) -> Any:
    threads = [r["threadpool"]["wall_s"] for r in runs]
    llamas = [r["llama"]["wall_s"] for r in runs]
    decisions = [d for r in runs for d in r["llama"]["decision_ms"]]
    cpu_s = {k: [round(r[k]["cpu_s"], 2) for r in runs] for k in KINDS}
    threads_peak = {k: [r[k]["peak_threads"] for r in runs] for k in KINDS}
    return {
        "tasks": args.tasks,
        "slots": args.slots,
        "direct_engine": args.direct,
        "first_in_round": [KINDS[i % 2] for i in range(len(runs))],
        "thread_pool_s": [round(x, 2) for x in threads],
        "llama_s": [round(x, 2) for x in llamas],
        "ratio_per_round": [
            round(b / a, 3) for a, b in zip(threads, llamas, strict=True)
        ],
        "ratio_of_medians": round(
            statistics.median(llamas) / statistics.median(threads), 3
        ),
        "flow_process_cpu_s": cpu_s,
        "flow_process_peak_threads": threads_peak,
        "decision_ms": {
            "median": round(statistics.median(decisions), 4),
            "p99": round(_p(decisions, 0.99), 4),
            "max": round(max(decisions), 4),
            "invocations": len(decisions),
        },
    }


def _print(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    engine = " (task engine replaced by a direct call)" if args.direct else ""
    print(
        f"{args.tasks} no-op tasks on {args.slots} slots{engine}, {args.rounds} "
        "rounds, a fresh server per flow run: ThreadPoolTaskRunner "
        f"{summary['thread_pool_s']} s, LlamaTaskRunner {summary['llama_s']} s; "
        "ratio per round "
        f"{summary['ratio_per_round']}, ratio of medians {summary['ratio_of_medians']}"
    )
    cpu_s = summary["flow_process_cpu_s"]
    print(
        f"CPU time of the flow's process: ThreadPoolTaskRunner {cpu_s['threadpool']} "
        f"s, LlamaTaskRunner {cpu_s['llama']} s"
    )
    peak = summary["flow_process_peak_threads"]
    print(
        f"most threads of the flow's process: ThreadPoolTaskRunner "
        f"{peak['threadpool']}, LlamaTaskRunner {peak['llama']}"
    )
    d = summary["decision_ms"]
    print(
        f"decision overhead per invocation: median {d['median']} ms, p99 {d['p99']} "
        f"ms, max {d['max']} ms over {d['invocations']} invocations"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--out", default="runs/bench/runner_overhead.json")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="replace Prefect's task engine by a direct call (a diagnostic)",
    )
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.tasks, args.slots, args.result, args.direct)
        return

    runs: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="llama-overhead-") as work:
        for i in range(args.rounds):
            order = KINDS if i % 2 == 0 else KINDS[::-1]
            runs.append({kind: _spawn(kind, args, Path(work)) for kind in order})
    summary = _summary(args, runs)
    _print(args, summary)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
