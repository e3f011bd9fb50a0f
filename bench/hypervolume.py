"""Exploration against the exhaustive grid on the people op's knob space.

Measures every configuration of the crossing pipeline's ``people`` op on the sample
segments the exploration would use (the whole grid), then runs the exploration with a
budget of a quarter of the grid, once for real and then replayed over several sampler
seeds on the grid's own measurements. For each it prints the hypervolume of its
feasible front (latency and cost per unit, accuracy at the floor) as a share of the
grid's, both normalized by the grid's range (`llama_prefect.tuning.hypervolume`).

The real run measures its configurations again, so its own numbers carry the
machine's noise; its front is also scored with the grid's numbers for the same
configurations, which isolates how well the search chose. Replays use the grid's
numbers only.

    .venv/bin/python bench/hypervolume.py --videos samples --out runs/bench/hv.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from llama_prefect.flows.crossing import (
    PIPELINE,
    exploration_probes,
    list_videos,
    sample_work,
)
from llama_prefect.tuning.explore import (
    Measurement,
    explore_op,
    feasible_front,
    measure,
)
from llama_prefect.tuning.hypervolume import normalized_hypervolume

from llama_prefect.core.pricing import PriceCatalog

OP, BACKEND = "people", "local-cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="samples")
    parser.add_argument("--floor", type=float, default=0.8)
    parser.add_argument("--share", type=float, default=0.25, help="budget / grid")
    parser.add_argument("--seeds", type=int, default=20, help="replayed seeds")
    parser.add_argument("--out", default="runs/bench/hv.json")
    args = parser.parse_args()

    spec = PIPELINE.ops[OP]
    probe = exploration_probes(sample_work(list_videos(args.videos)), [])[OP]
    prices = PriceCatalog.load()
    grid = _measure_grid(spec, probe, prices)
    budget = max(1, int(args.share * len(grid)))
    print(f"grid: {len(grid)} configurations of {OP}; budget {budget} trials")

    rows = [_real_run(spec, probe, prices, grid, budget, args.floor)]
    rows += [
        _replay(spec, probe, prices, grid, budget, args.floor, seed)
        for seed in range(args.seeds)
    ]
    _print(rows, grid, args.floor)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"grid": len(grid), "budget": budget, "rows": rows}))
    print(f"saved {out}")


def _measure_grid(spec, probe, prices) -> dict[str, Measurement]:
    start = time.perf_counter()
    reference = spec.reference_configuration(BACKEND)
    ref = measure(probe, reference, prices)
    found = {reference.key: ref}
    for config in spec.configurations([BACKEND]):
        if config.key not in found:
            found[config.key] = measure(
                probe, config, prices, reference_outputs=ref.outputs
            )
    for m in found.values():
        m.outputs = []
    print(f"grid measured in {time.perf_counter() - start:.0f} s")
    return found


def _points(measurements, floor):
    return [
        (m.s_per_unit, m.cost_usd_per_unit) for m in feasible_front(measurements, floor)
    ]


def _grid_points(grid, floor):
    feasible = [m for m in grid.values() if m.accuracy >= floor]
    return [(m.s_per_unit, m.cost_usd_per_unit) for m in feasible]


def _ratio(points, grid, floor) -> float:
    space = _grid_points(grid, floor)
    whole = normalized_hypervolume(_points(list(grid.values()), floor), space)
    return normalized_hypervolume(points, space) / whole


def _real_run(spec, probe, prices, grid, budget, floor) -> dict:
    start = time.perf_counter()
    record = explore_op(
        spec, probe, BACKEND, prices, n_trials=budget, accuracy_floor=floor
    )
    seconds = time.perf_counter() - start
    own = _ratio(_points(record.measured, floor), grid, floor)
    chosen = [grid[m.config.key] for m in record.front]
    # How far a second measurement of the same configuration lands from the first.
    spread = [
        abs(m.s_per_unit - grid[m.config.key].s_per_unit)
        / grid[m.config.key].s_per_unit
        for m in record.measured
    ]
    return {
        "run": "real",
        "trials": record.trials_run,
        "hv_own": own,
        "hv_grid_values": _ratio(_points(chosen, floor), grid, floor),
        "seconds": seconds,
        "remeasure_median_rel_diff": statistics.median(spread),
    }


def _replay(spec, probe, prices, grid, budget, floor, seed) -> dict:
    def recorded(probe, config, prices, **_):
        return dataclasses.replace(grid[config.key], outputs=[])

    record = explore_op(
        spec,
        probe,
        BACKEND,
        prices,
        n_trials=budget,
        accuracy_floor=floor,
        seed=seed,
        measure_fn=recorded,
    )
    ratio = _ratio(_points(record.measured, floor), grid, floor)
    return {
        "run": f"replay seed {seed}",
        "trials": record.trials_run,
        "hv_own": ratio,
        "hv_grid_values": ratio,
        "seconds": 0.0,
    }


def _print(rows, grid, floor) -> None:
    front = feasible_front(list(grid.values()), floor)
    print(
        f"grid front at accuracy >= {floor}: "
        + "; ".join(f"{m.config.key} {m.s_per_unit:.4f} s/unit" for m in front)
    )
    print(
        f"{'run':16} {'trials':>6} {'trials/grid':>11} {'HV own':>7} "
        f"{'HV grid values':>14}"
    )
    for r in rows:
        print(
            f"{r['run']:16} {r['trials']:>6} {r['trials'] / len(grid):>11.2f} "
            f"{r['hv_own']:>7.3f} {r['hv_grid_values']:>14.3f}"
        )
    real = next((r for r in rows if r["run"] == "real"), None)
    if real is not None:
        print(
            "real run: same configuration measured twice differs by a median "
            f"{real['remeasure_median_rel_diff']:.0%} in latency per unit; "
            f"exploration took {real['seconds']:.0f} s"
        )
    replays = [r["hv_grid_values"] for r in rows if r["run"] != "real"]
    if replays:
        print(
            f"replays: median {statistics.median(replays):.3f}, min "
            f"{min(replays):.3f}, share >= 0.95: "
            f"{sum(1 for v in replays if v >= 0.95) / len(replays):.2f}"
        )


if __name__ == "__main__":
    main()
