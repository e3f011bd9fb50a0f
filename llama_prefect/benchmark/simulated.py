"""The simulated benchmark: every policy on the same archives, side by side.

For each workload (``measured``: the crossing profiles as measured, with Lambda's
nearly flat pricing; ``steep``: the same with a GPU build of the person detector and a
higher accuracy floor, where costs differ steeply):

1. **Calibration.** Llama-fast (latency objective) and Llama-cheap (cheapest) run
   once; their 95th-percentile video latencies bound the SLO levels, spread evenly
   from the fast one (level 0) to the cheap one (level 1), or to twice the fast one
   when the cheap one is closer (`MIN_SPREAD`).
2. **Levels.** At every level, with true latencies as profiled and 1.3x above them:
   Llama, Llama as published, the GrandSLAm-like split, the best static plan tuned
   on the same archive, and the oracle. The Scanner-, gg- and Nexus-like baselines
   do not depend on the SLO: each runs once per drift and is scored at every level.
3. **Ablations** at the middle level with drift: Llama with one mechanism off at a
   time (`policies.ABLATIONS`).
4. **Failures**: 3% and 10% of attempts injected to fail, at the middle level.
5. **Transfer**: the static plan tuned on the street archive, run on a busier archive
   (more people and faces, different content) with 1.3x drift, against Llama there.
6. **Draws** of the profiles' error: the simulator draws each configuration's true
   latency around its profile once per workload (`build_workload`'s seed), and
   which configurations the exploration got wrong, and by how much, decides much
   of what Llama pays against the oracle. Llama at the middle level runs again on
   `DRAWS` other draws (the tables above are of `DRAW`), with their own oracles.

The oracle is each video's cheapest plan in hindsight (`llama_prefect.sim.oracle`):
true latencies known, no queueing, no start-up, full batches: a lower bound on the
cost a policy can be charged for that video. Costs are reported twice: as billed
(idle GPU time, a fixed pool's whole run and Lambda start-ups included), and as
attributed to videos (what each invocation's own run cost). Ratios to the oracle use
the attributed cost, over all videos and over the videos that met the SLO.

Runs are independent and go to a pool of worker processes.
"""

from __future__ import annotations

import concurrent.futures
import functools
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llama_prefect.sim import policies
from llama_prefect.sim.engine import RunResult, RunSpec, Simulation
from llama_prefect.sim.oracle import Oracle
from llama_prefect.sim.workload import (
    GPU,
    LAMBDA,
    ArchiveMix,
    Assumptions,
    Workload,
    build_workload,
    load_source,
    make_archive,
)

DRIFTS = (1.0, 1.3)
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
FAILURE_RATES = (0.03, 0.10)
#: The draw of the simulated truth that every table but the draws' is of.
DRAW = 7
#: Other draws of the truth Llama runs on at the middle level (ours: eight in all).
DRAWS = (1, 2, 3, 4, 5, 6, 8)
PAPER = {"latency_x": 7.8, "cost_x": 16.0}
#: Accuracy floor of each workload.
FLOORS = {"measured": 0.8, "steep": 0.9}
#: The SLO levels reach at least this many times Llama-fast's p95 (ours). When
#: Llama-cheap is little slower than Llama-fast (a flat cost curve) every level
#: would otherwise sit near Llama-fast's own p95, which 5% of videos miss by
#: definition. A threshold on the ratio instead (levels to Llama-cheap's p95 from
#: 1.1 times Llama-fast's up) made the levels jump: Llama-cheap at 1.03x and then
#: 1.12x on the steep workload moved the loosest level from 30 s to 16.8 s.
MIN_SPREAD = 2.0


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run covers.

    Attributes:
        videos: Videos per archive.
        workloads: Which workloads (``measured``, ``steep``).
        levels: SLO levels, 0 (Llama-fast) to 1 (Llama-cheap).
        workers: Worker processes.
        profiles: A profile store to draw the workload from (default: the shipped
            seed profile).
        tuning_videos: Videos the static plan is tuned on (a prefix of the archive).
        tuning_trials: Optuna trials of the static plan.
        seed: Seed of the archives.
    """

    videos: int = 1000
    workloads: tuple[str, ...] = ("measured", "steep")
    levels: tuple[float, ...] = LEVELS
    workers: int = 2
    profiles: str | None = None
    tuning_videos: int = 300
    tuning_trials: int = 150
    seed: int = 1


@dataclass(frozen=True)
class Job:
    """One simulated run, as plain data a worker process can take."""

    workload: str
    mix: str
    drift: float
    policy: str
    slo_s: float
    level: float | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    plan: tuple[tuple[str, str], ...] = ()
    draw: int = DRAW


@dataclass
class Summary:
    """What the main process keeps of one run."""

    job: Job
    latency_s: list[float]
    failed: list[bool]
    cost_usd: list[float]
    billed_usd: dict[str, float]
    invocations: int
    attempts: int
    duplicates: int
    retries: int
    cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def met(self, slo_s: float) -> list[bool]:
        """Per video, whether it met `slo_s`."""
        return [
            not f and lat <= slo_s + 1e-9
            for lat, f in zip(self.latency_s, self.failed, strict=True)
        ]


# -- what runs in a worker -------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _workload(name: str, profiles: str | None, draw: int = DRAW) -> Workload:
    source, origin = load_source(profiles)
    assumptions = Assumptions.steep() if name == "steep" else Assumptions()
    return build_workload(source, assumptions=assumptions, seed=draw, origin=origin)


def _mix(name: str, videos: int, seed: int) -> ArchiveMix:
    if name == "busy":
        return ArchiveMix(
            name="busy",
            videos=videos,
            motion_odds=(19.0, 1.0),
            faces_odds=(9.0, 1.0),
            busy=1.2,
            seed=seed + 100,
        )
    return ArchiveMix(name="street", videos=videos, seed=seed)


@functools.lru_cache(maxsize=8)
def _archive(
    workload: str,
    mix: str,
    videos: int,
    seed: int,
    profiles: str | None,
    draw: int = DRAW,
):
    return make_archive(_workload(workload, profiles, draw), _mix(mix, videos, seed))


def run_job(job: Job, config: BenchConfig) -> Summary:
    """Runs one job (in a worker process)."""
    workload = _workload(job.workload, config.profiles, job.draw)
    videos = _archive(
        job.workload, job.mix, config.videos, config.seed, config.profiles, job.draw
    )
    spec, objective = _spec(job, workload, config)
    result = Simulation(
        workload, videos, spec, drift=job.drift, objective=objective
    ).run()
    return _summary(job, result)


def _spec(job: Job, workload: Workload, config: BenchConfig) -> tuple[RunSpec, Any]:
    floor = FLOORS[job.workload]
    mix = _mix(job.mix, config.videos, config.seed)
    settings = dict(job.settings)
    name = job.policy
    if name == "scanner":
        return policies.scanner(workload, job.slo_s, mix)
    if name == "gg":
        return policies.gg(workload, job.slo_s)
    if name == "nexus":
        return policies.nexus(workload, job.slo_s, mix)
    if name == "grandslam":
        return policies.grandslam(workload, job.slo_s, floor), None
    if name.startswith("static"):
        plan = {op: _config(workload, op, key) for op, key in job.plan}
        return policies.static(plan, job.slo_s, name)
    spec = policies.llama(name, job.slo_s, floor, **settings)
    if name in policies.ABLATIONS:
        spec = policies.ablation(spec, name)
    return spec, None


def _config(workload: Workload, op: str, key: str) -> Any:
    for config in workload.profiles.configurations(op):
        if config.key == key:
            return config
    raise KeyError(key)


def _summary(job: Job, r: RunResult) -> Summary:
    return Summary(
        job=job,
        latency_s=[v.latency_s for v in r.videos],
        failed=[v.failed for v in r.videos],
        cost_usd=[v.cost_usd for v in r.videos],
        billed_usd=r.billed_usd,
        invocations=r.invocations,
        attempts=r.attempts,
        duplicates=r.duplicates,
        retries=r.retries,
        cpu_s=r.cpu_s,
        extra=r.extra,
    )


def oracle_costs(
    workload_name: str,
    mix: str,
    drift: float,
    slo_s: float,
    config: BenchConfig,
    draw: int = DRAW,
) -> tuple[list[float], list[bool]]:
    """The oracle's cost of every video of an archive at one SLO, and whether any
    plan of the video meets the SLO at all."""
    workload = _workload(workload_name, config.profiles, draw)
    videos = _archive(
        workload_name, mix, config.videos, config.seed, config.profiles, draw
    )
    oracle = Oracle(
        workload, (LAMBDA, GPU), accuracy_floor=FLOORS[workload_name], drift=drift
    )
    answers = [oracle.video(v, slo_s) for v in videos]
    return [a.cost_usd for a in answers], [a.feasible for a in answers]


def tune_static(
    workload_name: str, slo_s: float, config: BenchConfig
) -> tuple[tuple[str, str], ...]:
    """The best static plan for the street archive at `slo_s`, as (op, key) pairs."""
    workload = _workload(workload_name, config.profiles)
    videos = _archive(
        workload_name, "street", config.videos, config.seed, config.profiles
    )
    plan = policies.tune_static_plan(
        workload,
        videos[: config.tuning_videos],
        slo_s,
        FLOORS[workload_name],
        drift=1.0,
        trials=config.tuning_trials,
    )
    return tuple((op, c.key) for op, c in plan.items())


# -- the main process ------------------------------------------------------------------


class Bench:
    """Plans the jobs of a benchmark, runs them on workers and assembles the report."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=config.workers)

    def run(self) -> dict[str, Any]:
        """Runs every workload; returns the report (JSON-ready)."""
        started = time.perf_counter()
        try:
            report = {w: self._workload(w) for w in self.config.workloads}
        finally:
            self._pool.shutdown()
        return {
            "meta": self._meta(time.perf_counter() - started),
            "workloads": report,
        }

    def _meta(self, wall_s: float) -> dict[str, Any]:
        _, origin = load_source(self.config.profiles)
        return {
            "videos": self.config.videos,
            "levels": list(self.config.levels),
            "drifts": list(DRIFTS),
            "profiles": origin,
            "wall_s": round(wall_s, 1),
            "oracle": (
                "per video, the cheapest choice of one configuration per invocation "
                "that meets the SLO with the true latencies known, ignoring queueing, "
                "start-up and failures, batched GPU calls priced as full: a lower "
                "bound on the cost attributed to the video"
            ),
            "cost": (
                "cost_usd is what the backends billed (idle GPU tasks, a fixed pool's "
                "whole run, Lambda start-ups included); x_oracle and x_oracle_met "
                "divide the cost attributed to videos by the oracle's, over all "
                "videos and over those that met the SLO"
            ),
            "paper": PAPER,
        }

    def _map(self, jobs: list[Job]) -> list[Summary]:
        return list(self._pool.map(run_job, jobs, [self.config] * len(jobs)))

    def _workload(self, name: str) -> dict[str, Any]:
        calib = self._map(
            [
                Job(
                    name,
                    "street",
                    1.0,
                    "llama-fast",
                    1e9,
                    settings=(("objective", "latency"),),
                ),
                Job(
                    name,
                    "street",
                    1.0,
                    "llama-cheap",
                    1e9,
                    settings=(("objective", "cheapest"),),
                ),
            ]
        )
        fast_s, cheap_s = (_p(s.latency_s, 0.95) for s in calib)
        slos = slo_levels(fast_s, cheap_s, self.config.levels)
        mid = self.config.levels[len(self.config.levels) // 2]
        plans = self._plans(name, slos)
        jobs = self._level_jobs(name, slos, plans) + self._extra_jobs(
            name, slos, mid, plans
        )
        summaries = self._map(jobs)
        oracles = self._oracles(name, slos, mid)
        return _assemble(name, slos, mid, calib, summaries, oracles)

    def _plans(self, name: str, slos: dict[float, float]) -> dict[float, Any]:
        futures = {
            lv: self._pool.submit(tune_static, name, slo, self.config)
            for lv, slo in slos.items()
        }
        return {lv: f.result() for lv, f in futures.items()}

    def _level_jobs(
        self, name: str, slos: dict[float, float], plans: dict[float, Any]
    ) -> list[Job]:
        jobs = []
        for drift in DRIFTS:
            for lv, slo in slos.items():
                for policy in ("llama", "llama-published", "grandslam"):
                    settings = (
                        (("published", True),) if policy == "llama-published" else ()
                    )
                    jobs.append(Job(name, "street", drift, policy, slo, lv, settings))
                jobs.append(
                    Job(name, "street", drift, "static", slo, lv, plan=plans[lv])
                )
            for policy in ("scanner", "gg", "nexus"):
                jobs.append(Job(name, "street", drift, policy, max(slos.values())))
        return jobs

    def _extra_jobs(
        self, name: str, slos: dict[float, float], mid: float, plans: dict[float, Any]
    ) -> list[Job]:
        slo = slos[mid]
        jobs = [Job(name, "street", 1.3, a, slo, mid) for a in policies.ABLATIONS]
        for rate in FAILURE_RATES:
            settings = (("inject_failure_rate", rate),)
            jobs.append(
                Job(name, "street", 1.0, f"llama-fail-{rate:g}", slo, mid, settings)
            )
        for lv, slo_lv in slos.items():
            jobs.append(Job(name, "busy", 1.3, "llama", slo_lv, lv))
            jobs.append(
                Job(name, "busy", 1.3, "static-transfer", slo_lv, lv, plan=plans[lv])
            )
        for draw in DRAWS:
            for drift in DRIFTS:
                jobs.append(Job(name, "street", drift, "llama", slo, mid, draw=draw))
        return jobs

    def _oracles(
        self, name: str, slos: dict[float, float], mid: float
    ) -> dict[Any, tuple[list[float], list[bool]]]:
        keys: list[tuple[Any, ...]] = [("street", d, lv) for d in DRIFTS for lv in slos]
        keys += [("busy", 1.3, lv) for lv in slos]
        keys += [("street", d, mid, draw) for draw in DRAWS for d in DRIFTS]
        futures = {
            k: self._pool.submit(
                oracle_costs, name, k[0], k[1], slos[k[2]], self.config, *k[3:]
            )
            for k in keys
        }
        return {k: f.result() for k, f in futures.items()}


def slo_levels(
    fast_s: float, cheap_s: float, levels: Iterable[float]
) -> dict[float, float]:
    """The SLO of each level: that share of the way from Llama-fast's p95 to
    Llama-cheap's, or to `MIN_SPREAD` times Llama-fast's when that is further."""
    top_s = MIN_SPREAD * fast_s if _flat(fast_s, cheap_s) else cheap_s
    return {lv: fast_s + lv * (top_s - fast_s) for lv in levels}


def _flat(fast_s: float, cheap_s: float) -> bool:
    """Whether the levels reach past Llama-cheap's p95 (see `MIN_SPREAD`)."""
    return cheap_s < fast_s * MIN_SPREAD


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _max_s(latency_s: list[float]) -> float | None:
    """The slowest video's latency (None when one never ended: no JSON for inf)."""
    worst = max(latency_s, default=0.0)
    return round(worst, 2) if worst < float("inf") else None


def _row(
    s: Summary,
    slo_s: float,
    level: float | None,
    oracle: tuple[list[float], list[bool]] | None,
) -> dict[str, Any]:
    met = s.met(slo_s)
    finite = [x for x in s.latency_s if x < float("inf")]
    row: dict[str, Any] = {
        "policy": s.job.policy,
        "mix": s.job.mix,
        "drift": s.job.drift,
        "level": level,
        "slo_s": round(slo_s, 2),
        "attainment": round(sum(met) / len(met), 4),
        "p50_s": round(_p(s.latency_s, 0.5), 2),
        "p95_s": round(_p(s.latency_s, 0.95), 2),
        "mean_s": round(statistics.fmean(finite), 2) if finite else None,
        "max_s": _max_s(s.latency_s),
        "cost_usd": round(sum(s.billed_usd.values()), 4),
        "attributed_usd": round(sum(s.cost_usd), 4),
        "billed_usd": {k: round(v, 4) for k, v in s.billed_usd.items()},
        "duplicates": s.duplicates,
        "retries": s.retries,
        "invocations": s.invocations,
        "invocations_per_cpu_s": round(s.invocations / s.cpu_s) if s.cpu_s else None,
    }
    if oracle is not None:
        costs, feasible = oracle
        total = sum(costs)
        row["oracle_usd"] = round(total, 4)
        row["oracle_attainment"] = round(sum(feasible) / len(feasible), 4)
        row["x_oracle"] = round(sum(s.cost_usd) / total, 3) if total else None
        mine = sum(c for c, m in zip(s.cost_usd, met, strict=True) if m)
        theirs = sum(c for c, m in zip(costs, met, strict=True) if m)
        row["x_oracle_met"] = round(mine / theirs, 3) if theirs else None
        row["x_oracle_billed"] = (
            round(sum(s.billed_usd.values()) / total, 3) if total else None
        )
    return row


def _assemble(
    name: str,
    slos: dict[float, float],
    mid: float,
    calib: list[Summary],
    summaries: list[Summary],
    oracles: dict[Any, tuple[list[float], list[bool]]],
) -> dict[str, Any]:
    rows, ablations, failures, transfer, draws = [], [], [], [], []
    for s in summaries:
        job = s.job
        if job.level is None:  # an SLO-independent baseline: scored at every level
            for lv, slo in slos.items():
                rows.append(_row(s, slo, lv, oracles[(job.mix, job.drift, lv)]))
            continue
        if job.draw != DRAW:
            key = (job.mix, job.drift, job.level, job.draw)
            draws.append(
                {**_row(s, job.slo_s, job.level, oracles[key]), "draw": job.draw}
            )
            continue
        row = _row(
            s, job.slo_s, job.level, oracles.get((job.mix, job.drift, job.level))
        )
        if job.policy in policies.ABLATIONS:
            ablations.append(row)
        elif job.policy.startswith("llama-fail"):
            failures.append(row)
        elif job.mix == "busy":
            transfer.append(row)
        else:
            rows.append(row)
    mid_llama = [
        r
        for r in rows
        if r["policy"] == "llama" and r["level"] == mid and r["drift"] == 1.3
    ]
    # The tables' own draw joins the other draws at the middle level.
    draws += [
        {**r, "draw": DRAW}
        for r in rows
        if r["policy"] == "llama" and r["level"] == mid
    ]
    return {
        "floor": FLOORS[name],
        "calibration": _calibration(calib),
        "slo_levels": {str(lv): round(s, 2) for lv, s in slos.items()},
        "rows": rows,
        "ablations": mid_llama + ablations,
        "failures": failures,
        "transfer": transfer,
        "draws": sorted(draws, key=lambda r: (r["drift"], r["draw"])),
        "draws_summary": _draws_summary(draws),
        "vs_baselines": _versus(rows),
        "targets": _targets(rows, transfer, slos),
    }


def _calibration(calib: list[Summary]) -> dict[str, Any]:
    """Llama-fast's and Llama-cheap's p95, slowest video and bill."""
    fast, cheap = calib
    fast_s, cheap_s = _p(fast.latency_s, 0.95), _p(cheap.latency_s, 0.95)
    return {
        "fast_p95_s": round(fast_s, 2),
        "cheap_p95_s": round(cheap_s, 2),
        "fast_max_s": _max_s(fast.latency_s),
        "cheap_max_s": _max_s(cheap.latency_s),
        "flat": _flat(fast_s, cheap_s),
        "fast_cost_usd": round(sum(fast.billed_usd.values()), 4),
        "cheap_cost_usd": round(sum(cheap.billed_usd.values()), 4),
    }


def _versus(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Baselines' mean latency and billed cost over Llama's, averaged over levels."""
    out: dict[str, Any] = {}
    for drift in DRIFTS:
        llama = {
            r["level"]: r
            for r in rows
            if r["policy"] == "llama" and r["drift"] == drift
        }
        per: dict[str, Any] = {}
        for base in ("scanner", "gg", "nexus"):
            lat, usd = [], []
            for r in rows:
                if (
                    r["policy"] != base
                    or r["drift"] != drift
                    or r["level"] not in llama
                ):
                    continue
                mine = llama[r["level"]]
                if mine["mean_s"] and r["mean_s"]:
                    lat.append(r["mean_s"] / mine["mean_s"])
                usd.append(r["cost_usd"] / mine["cost_usd"])
            per[base] = {
                "latency_x": round(statistics.fmean(lat), 2) if lat else None,
                "cost_x": round(statistics.fmean(usd), 2) if usd else None,
            }
        vals = [v for v in per.values() if v["latency_x"] and v["cost_x"]]
        per["average"] = (
            {
                "latency_x": round(statistics.fmean(v["latency_x"] for v in vals), 2),
                "cost_x": round(statistics.fmean(v["cost_x"] for v in vals), 2),
            }
            if vals
            else {}
        )
        out[f"drift_{drift:g}"] = per
    out["paper"] = PAPER
    return out


def _draws_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per drift, Llama's cost over the oracle's and share met across the draws."""
    out: dict[str, Any] = {}
    for drift in sorted({r["drift"] for r in rows}):
        mine = [r for r in rows if r["drift"] == drift and r.get("x_oracle")]
        xs = sorted(r["x_oracle"] for r in mine)
        if not xs:
            continue
        out[f"drift_{drift:g}"] = {
            "draws": len(xs),
            "x_oracle_median": round(statistics.median(xs), 3),
            "x_oracle_max": xs[-1],
            "within_1_10": sum(1 for x in xs if x <= 1.10),
            "min_attainment": min(r["attainment"] for r in mine),
        }
    return out


def _targets(
    rows: list[dict[str, Any]], transfer: list[dict[str, Any]], slos: dict[float, float]
) -> dict[str, Any]:
    """The issue's numeric targets, as measured (levels from a quarter upwards)."""
    upper = [lv for lv in slos if lv >= 0.25]
    llama = [r for r in rows if r["policy"] == "llama" and r["level"] in upper]
    worst_att = min((r["attainment"] for r in llama), default=None)
    worst_x = max((r["x_oracle"] or 0 for r in llama), default=None)
    worst_x_met = max((r["x_oracle_met"] or 0 for r in llama), default=None)
    # Where even the oracle cannot bring 99% of videos within the SLO, no policy
    # can: the attainment target is judged where the oracle can.
    feasible = [r for r in llama if r.get("oracle_attainment", 1.0) >= 0.99]
    worst_feasible = min((r["attainment"] for r in feasible), default=None)
    pairs = []
    for lv in upper:
        mine = next(
            (r for r in transfer if r["policy"] == "llama" and r["level"] == lv), None
        )
        theirs = next(
            (
                r
                for r in transfer
                if r["policy"] == "static-transfer" and r["level"] == lv
            ),
            None,
        )
        if mine and theirs:
            pairs.append(
                {
                    "level": lv,
                    "static_attainment": theirs["attainment"],
                    "llama_attainment": mine["attainment"],
                    "llama_cost_x_static": round(
                        mine["cost_usd"] / theirs["cost_usd"], 3
                    ),
                }
            )
    return {
        "min_attainment_llama_upper_levels": worst_att,
        "min_attainment_llama_upper_levels_oracle_feasible": worst_feasible,
        "rows_oracle_feasible": f"{len(feasible)} of {len(llama)}",
        "max_x_oracle_llama_upper_levels": worst_x,
        "max_x_oracle_met_llama_upper_levels": worst_x_met,
        "transfer": pairs,
    }
