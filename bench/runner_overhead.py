"""What LlamaTaskRunner adds to Prefect: a 1,000-task no-op flow, side by side.

Runs the same flow, which submits `--tasks` invocations of a no-op op and waits for
all of them, alternately on Prefect's `ThreadPoolTaskRunner` and on `LlamaTaskRunner`
with the same number of slots, `--rounds` times each on one Prefect server, and
prints the median wall time of each and their ratio. The Llama runner's decision
overhead (planning at submit plus its share of each commit round, per invocation) is
taken from its records: median, p99 and max.

    .venv/bin/python bench/runner_overhead.py --tasks 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.exceptions import PrefectHTTPStatusError  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline  # noqa: E402
from llama_prefect.core.profiles import ProfileStore  # noqa: E402
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner  # noqa: E402

#: Seconds to wait before each flow run, outside the timing (ours).
SETTLE_S = 3.0
#: Times a flow run the server refused is created again.
RETRIES = 5

PIPELINE = Pipeline("noop")
PIPELINE.add_op(OpSpec("noop", knobs={"mode": ("a", "b")}, group_of=lambda p: "g"))


def _noop_body(i: int, mode: str = "a") -> int:
    return i


setattr(_noop_body, OP_ATTRIBUTE, "noop")
noop = task(name="noop")(_noop_body)


@flow
def many(n: int) -> dict[str, Any]:
    futures = [noop.submit(i) for i in range(n)]
    values = [f.result() for f in futures]
    runner = FlowRunContext.get().task_runner
    records = runner.records() if isinstance(runner, LlamaTaskRunner) else []
    return {"sum": sum(values), "records": records}


def _profiles(path: Path) -> Path:
    store = ProfileStore("noop")
    store.seed("noop", Configuration.of("local-cpu", {"mode": "a"}), 0.001)
    store.seed("noop", Configuration.of("local-cpu", {"mode": "b"}), 0.002)
    return store.save(path)


def _timed(runner: Any, n: int) -> tuple[float, dict[str, Any]]:
    """Runs the flow once on `runner`; returns its wall time and its output.

    The local server takes a while to store the events of a thousand task runs; a
    flow run it refuses meanwhile (503 at creation, before anything ran) is created
    again after a pause, and only the run that happened is timed.
    """
    for left in range(RETRIES, -1, -1):
        time.sleep(SETTLE_S)  # let the server store the last round's events
        started = time.perf_counter()
        try:
            out = many.with_options(task_runner=runner)(n=n)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 503 or not left:
                raise
            print(f"server busy ({exc.response.status_code}); trying again")
            continue
        wall_s = time.perf_counter() - started
        assert out["sum"] == n * (n - 1) // 2
        return wall_s, out
    raise AssertionError("unreachable")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--out", default="runs/bench/runner_overhead.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llama-overhead-"))
    profiles = _profiles(work / "noop.json")
    _timed(ThreadPoolTaskRunner(max_workers=args.slots), 10)  # start the server
    threads, llamas, decisions = [], [], []
    for _ in range(args.rounds):
        wall_s, _ = _timed(ThreadPoolTaskRunner(max_workers=args.slots), args.tasks)
        threads.append(wall_s)
        runner = LlamaTaskRunner(
            PIPELINE,
            profile_path=profiles,
            cpu_slots=args.slots,
            slo_s=3600.0,
            save_profiles=False,
        )
        wall_s, out = _timed(runner, args.tasks)
        llamas.append(wall_s)
        decisions += [r["decision_ms"] for r in out["records"]]
    summary = {
        "tasks": args.tasks,
        "slots": args.slots,
        "thread_pool_s": [round(x, 2) for x in threads],
        "llama_s": [round(x, 2) for x in llamas],
        "ratio_of_medians": round(
            statistics.median(llamas) / statistics.median(threads), 3
        ),
        "decision_ms": {
            "median": round(statistics.median(decisions), 4),
            "p99": round(_p(decisions, 0.99), 4),
            "max": round(max(decisions), 4),
            "invocations": len(decisions),
        },
    }
    print(
        f"{args.tasks} no-op tasks on {args.slots} slots, {args.rounds} rounds: "
        f"ThreadPoolTaskRunner {summary['thread_pool_s']} s, LlamaTaskRunner "
        f"{summary['llama_s']} s; ratio of medians {summary['ratio_of_medians']}"
    )
    d = summary["decision_ms"]
    print(
        f"decision overhead per invocation: median {d['median']} ms, p99 {d['p99']} "
        f"ms, max {d['max']} ms over {d['invocations']} invocations"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
