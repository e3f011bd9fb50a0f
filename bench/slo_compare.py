"""Loose against tight SLOs on the same input, side by side in one run.

Explores the crossing pipeline once, then runs the flow for each case from a fresh copy
of the same seeded profiles, so every case starts from the same knowledge. Prints a
table of latency, cost and the configurations chosen for the people op, with the tight
run's ratios to the loose one, and writes it all as JSON.

    .venv/bin/python bench/slo_compare.py --videos samples --out runs/bench/slo.json

Cases: the whole archive (many segments: throughput-bound on a small machine) and one
video cut into a single segment (a chain of single invocations: latency-bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _cases(videos: Path, single: Path, loose_s: float) -> list[dict[str, Any]]:
    return [
        {
            "name": "archive",
            "videos": videos,
            "segment_s": 4.0,
            "slos": [loose_s, 20.0],
        },
        {
            "name": "one-segment",
            "videos": single,
            "segment_s": 40.0,
            "slos": [loose_s, 6.0],
        },
    ]


def _run(case: dict[str, Any], slo_s: float, seed: Path, work: Path) -> dict[str, Any]:
    from llama_prefect.flows.crossing import PIPELINE, crossing

    from llama_prefect.runner import LlamaTaskRunner

    profiles = work / f"{case['name']}-{slo_s:g}.json"
    shutil.copy(seed, profiles)
    runner = LlamaTaskRunner(PIPELINE, profile_path=profiles)
    report = crossing.with_options(task_runner=runner)(
        videos=str(case["videos"]),
        slo_s=slo_s,
        segment_s=case["segment_s"],
        report_path=str(work / f"{case['name']}-{slo_s:g}-report.json"),
    )
    people = Counter(
        f"threads={r['configuration'].get('threads')}"
        for r in report["invocations"]
        if r["op"] == "people"
    )
    run = report["run"]
    return {
        "case": case["name"],
        "slo_s": slo_s,
        "latency_s": round(run["latency_s"], 2),
        "slo_met": run["slo_met"],
        "cost_usd": run["cost_usd"],
        "predicted_misses": run["predicted_misses"],
        "people_configs": dict(people),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="samples")
    parser.add_argument("--single", default="samples/vtest_h264_40s.mp4")
    parser.add_argument("--loose-s", type=float, default=300.0)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--out", default="runs/bench/slo.json")
    args = parser.parse_args()

    from llama_prefect.flows.crossing import list_videos, seed_profiles

    work = Path(tempfile.mkdtemp(prefix="llama-bench-"))
    seed = work / "seed.json"
    seed_profiles(list_videos(args.videos), seed, n_trials=args.trials)
    rows = []
    for case in _cases(Path(args.videos), Path(args.single), args.loose_s):
        loose, tight = (_run(case, slo, seed, work) for slo in case["slos"])
        tight["latency_vs_loose"] = round(tight["latency_s"] / loose["latency_s"], 3)
        tight["cost_vs_loose"] = round(tight["cost_usd"] / loose["cost_usd"], 3)
        rows += [loose, tight]
    _print(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"written to {args.out}")


def _print(rows: list[dict[str, Any]]) -> None:
    print("case          slo_s  latency_s  met    cost_usd    x lat  x cost  people")
    for r in rows:
        x_lat, x_cost = r.get("latency_vs_loose", 1.0), r.get("cost_vs_loose", 1.0)
        print(
            f"{r['case']:<12} {r['slo_s']:>6.0f} {r['latency_s']:>10.2f}  "
            f"{str(r['slo_met']):<5} {r['cost_usd']:>10.6f}  "
            f"{x_lat:>5.2f}  {x_cost:>6.2f}  {r['people_configs']}"
        )


if __name__ == "__main__":
    main()
