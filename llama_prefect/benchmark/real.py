"""The real benchmark: the crossing pipeline on this machine, policies side by side.

Every run takes the same videos (the sample archive `make samples` builds) and starts
from a fresh copy of the same explored profiles, on Prefect's local server:

1. Llama-fast (latency objective) and Llama-cheap (cheapest) bound the SLO levels:
   level 0 is Llama-fast's latency, level 1 Llama-cheap's.
2. Llama (cost objective) at every level in between.
3. A Scanner-like static plan: every op's reference configuration (the most
   accurate, as explored), on the same local slots.

One run is one archive under one deadline, so attainment is met or missed per run.
Costs are what the same work would cost on the cloud (see `core/pricing.py`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_prefect.core.profiles import ProfileStore
from llama_prefect.sim.policies import fixed_objective

LEVELS = (0.25, 0.5, 0.75)


def _reference_plan(store: ProfileStore) -> dict[str, Any]:
    """Every op's most accurate configuration, the slowest among equals."""
    plan = {}
    for op in store.ops:
        ranked = []
        for config in store.configurations(op):
            profile = store.profile(op, config)
            ranked.append((profile.accuracy, profile.seed_s_per_unit, config))
        plan[op] = max(ranked, key=lambda r: (r[0], r[1]))[2]
    return plan


def _run(
    name: str,
    seed: Path,
    work: Path,
    videos: str,
    slo_s: float,
    **runner: Any,
) -> dict[str, Any]:
    from llama_prefect.flows.crossing import PIPELINE, crossing
    from llama_prefect.runner import LlamaTaskRunner

    profiles = work / f"{name}.json"
    shutil.copy(seed, profiles)
    objective = runner.pop("objective", "cost")
    task_runner = LlamaTaskRunner(PIPELINE, profile_path=profiles, **runner)
    started = time.perf_counter()
    report = crossing.with_options(task_runner=task_runner)(
        videos=videos,
        slo_s=slo_s,
        objective=objective,
        report_path=str(work / f"{name}-report.json"),
    )
    run = report["run"]
    records = report["invocations"]
    return {
        "policy": name,
        "slo_s": round(slo_s, 2),
        "latency_s": round(run["latency_s"], 2),
        "met": bool(run["slo_met"]),
        "cost_usd": run["cost_usd"],
        "invocations": run["invocations"],
        "duplicates": sum(r.get("duplicates", 0) for r in records),
        "failed": run["failed_invocations"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def run_real(
    videos: str, profiles: str | None, levels: tuple[float, ...] = LEVELS
) -> dict[str, Any]:
    """Runs the real benchmark; returns its report (JSON-ready)."""
    from llama_prefect.flows.crossing import list_videos, seed_profiles

    work = Path(tempfile.mkdtemp(prefix="llama-bench-real-"))
    seed = work / "seed.json"
    runs = 3 + len(levels)
    if profiles is not None:
        shutil.copy(profiles, seed)
        print(f"real bench: {runs} flow runs on {videos}, profiles from {profiles}")
    else:
        print(f"real bench: exploring on {videos} (16 trials), then {runs} flow runs")
        seed_profiles(list_videos(videos), seed, n_trials=16)
    loose_s = 3600.0
    fast = _run("llama-fast", seed, work, videos, loose_s, objective="latency")
    cheap = _run("llama-cheap", seed, work, videos, loose_s, objective="cheapest")
    fast_s, cheap_s = fast["latency_s"], cheap["latency_s"]
    if cheap_s <= fast_s:
        cheap_s = fast_s * 1.5
    rows = []
    for lv in levels:
        slo_s = fast_s + lv * (cheap_s - fast_s)
        row = _run(f"llama-{lv:g}", seed, work, videos, slo_s)
        row["level"] = lv
        rows.append(row)
    plan = _reference_plan(ProfileStore.load(seed))
    mid_s = fast_s + 0.5 * (cheap_s - fast_s)
    scanner = _run(
        "scanner", seed, work, videos, mid_s, objective_fn=fixed_objective(plan)
    )
    for row in (fast, cheap):
        row["slo_s"] = None
        row["met"] = None
    return {
        "videos": videos,
        "fast_latency_s": fast_s,
        "cheap_latency_s": cheap_s,
        "rows": [fast, cheap, *rows, scanner],
        "note": (
            "one run is one archive under one deadline (the SLO); costs are what the "
            "same work would cost on the cloud; the Scanner-like run takes every op's "
            "reference configuration, at the middle level's SLO"
        ),
    }


def real_table(report: dict[str, Any]) -> str:
    """The real benchmark's rows as aligned columns."""
    head = f"{'policy':<14}{'slo_s':>8}{'latency_s':>11}{'met':>7}{'cost_usd':>11}"
    head += f"{'invocations':>13}{'dups':>6}"
    lines = [head]
    for r in report["rows"]:
        slo = "-" if r["slo_s"] is None else f"{r['slo_s']:.1f}"
        met = "-" if r["met"] is None else str(r["met"])
        lines.append(
            f"{r['policy']:<14}{slo:>8}{r['latency_s']:>11.2f}{met:>7}"
            f"{r['cost_usd']:>11.6f}{r['invocations']:>13}{r['duplicates']:>6}"
        )
    return "\n".join(lines)
