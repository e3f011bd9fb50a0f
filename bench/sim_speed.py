"""How fast the simulator drives the scheduler: invocations per second, at scale.

Runs Llama (cost objective, every mechanism on) over archives of the measured
workload until the invocations asked for are simulated, one archive per worker
process (each its own scheduler, Lambda and GPU pool, so the runs are independent),
and prints the invocations, the wall time of the whole and each worker's rate.

    .venv/bin/python bench/sim_speed.py --invocations 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any


def _one(videos: int, seed: int, slo_s: float) -> dict[str, Any]:
    from llama_prefect.sim import policies
    from llama_prefect.sim.engine import Simulation
    from llama_prefect.sim.workload import (
        ArchiveMix,
        build_workload,
        load_source,
        make_archive,
    )

    source, origin = load_source(None)
    workload = build_workload(source, origin=origin)
    archive = make_archive(workload, ArchiveMix(videos=videos, seed=seed))
    result = Simulation(workload, archive, policies.llama("llama", slo_s, 0.8)).run()
    met = result.met()
    return {
        "videos": videos,
        "invocations": result.invocations,
        "attempts": result.attempts,
        "wall_s": round(result.wall_s, 2),
        "cpu_s": round(result.cpu_s, 2),
        "per_wall_s": round(result.invocations / result.wall_s),
        "per_cpu_s": round(result.invocations / result.cpu_s),
        "attainment": round(sum(met) / len(met), 4),
        "sim_s": round(result.sim_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slo-s", type=float, default=20.0)
    parser.add_argument("--out", default="runs/bench/sim_speed.json")
    args = parser.parse_args()

    per_video = (
        32.7  # split + 13 segments x (motion, 0.8 people, 0.56 faces) + aggregate
    )
    videos = int(args.invocations / per_video / args.workers) + 1
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(
            pool.map(
                _one,
                [videos] * args.workers,
                range(1, args.workers + 1),
                [args.slo_s] * args.workers,
            )
        )
    wall_s = time.perf_counter() - started
    total = sum(r["invocations"] for r in runs)
    summary = {
        "invocations": total,
        "workers": args.workers,
        "wall_s": round(wall_s, 1),
        "invocations_per_s": round(total / wall_s),
        "runs": runs,
    }
    for r in runs:
        print(
            f"worker: {r['videos']} videos, {r['invocations']} invocations in "
            f"{r['wall_s']} s wall, {r['cpu_s']} s CPU ({r['per_cpu_s']}/CPU-s), "
            f"attainment {r['attainment']}"
        )
    print(
        f"total: {total} invocations in {summary['wall_s']} s on {args.workers} "
        f"workers: {summary['invocations_per_s']} invocations/s"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
