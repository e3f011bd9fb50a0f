"""Policies: the Llama variants and the baselines, all as runs of the same scheduler.

Every policy is a `RunSpec` (its backends and scheduler settings), and the fixed
ones add an objective that always takes the configuration of their static plan:

* ``llama``: the method with our fixes, cost under the target, on Lambda and the GPU
  pool; ``llama-fast`` / ``llama-cheap``: the latency and cheapest objectives;
  ``llama-published``: the method as published (`Settings.published`).
* Ablations of ``llama``: without feedback, batching, priority commit, late commit or
  straggler duplication.
* ``scanner``: one fixed configuration per op (the reference one, which a user who
  leaves configuration alone runs) on a fixed CPU pool sized for its mean load.
* ``gg``: every op on Lambda at full parallelism, reference configuration, one vCPU.
* ``nexus``: the ops with a GPU body on an always-on GPU pool, in full batches; the
  others (split, people, aggregate) on a fixed CPU pool.
* ``grandslam``: the SLO split once over the stages in proportion to their
  reference latencies; each invocation takes the cheapest configuration that meets
  its stage's fixed share.
* ``static``: the best single static plan (one configuration per op for every
  invocation), found by Optuna on a tuning archive (`tune_static_plan`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from llama_prefect.core.optimizer import Candidate
from llama_prefect.core.pipeline import CALL_BATCH_KNOB, Configuration
from llama_prefect.core.pricing import MEMORY_KNOB
from llama_prefect.sim.engine import RunSpec
from llama_prefect.sim.workload import GPU, LAMBDA, OPS, VM, ArchiveMix, Video, Workload

#: Utilisation a fixed pool is sized for (ours).
POOL_UTILISATION = 0.8
#: Llama with one mechanism off (or, for the weights, the proportional split instead
#: of the priced one), by ablation name.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no-feedback": {"feedback": False},
    "no-batching": {"batching": False},
    "no-priority": {"priority_commit": False},
    "no-late-commit": {"late_commit": False},
    "no-duplication": {"duplication": False},
    "no-warmup": {"pool_warmup": False},
    "no-queue-charge": {"queue_charge": False},
    "no-tail-pooling": {"tail_pooling": False},
    "no-content-feedback": {"content_feedback": False},
    "no-priced-weights": {"weight_basis": "robust"},
    "no-wait-slack": {"wait_slack_share": 0.0},
}


def llama(name: str, slo_s: float, floor: float, **settings: Any) -> RunSpec:
    """A Llama run on Lambda and the GPU pool."""
    published = bool(settings.pop("published", False))
    values = {"accuracy_floor": floor, **settings}
    return RunSpec(name, (LAMBDA, GPU), values, slo_s, published=published)


def reference(workload: Workload, op: str, backend: str) -> Configuration:
    """The op's reference configuration on `backend`: the most accurate, most thorough.

    The exploration's reference configuration is its most accurate one; among equally
    accurate ones it is the slowest (densest sampling, full resolution).
    """
    store = workload.profiles
    configs = [c for c in store.configurations(op) if c.backend == backend]
    if not configs:
        raise ValueError(f"op {op!r} has no configuration on {backend!r}")
    return max(
        configs,
        key=lambda c: (
            store.profile(op, c).accuracy,
            store.profile(op, c).seed_s_per_unit,
        ),
    )


def _on_lambda(workload: Workload, op: str, memory_mb: int = 1769) -> Configuration:
    ref = reference(workload, op, VM).as_dict()
    return Configuration.of(LAMBDA, {**ref, MEMORY_KNOB: memory_mb})


def _on_gpu(workload: Workload, op: str) -> Configuration | None:
    ref = {k: v for k, v in reference(workload, op, VM).as_dict().items()}
    for config in workload.profiles.configurations(op):
        knobs = config.as_dict()
        if config.backend != GPU or knobs.get(CALL_BATCH_KNOB) != 8:
            continue
        if all(
            knobs.get(k) == v for k, v in ref.items() if k not in ("threads", "device")
        ):
            return config
    return None


def fixed_objective(plan: Mapping[str, Configuration]) -> Callable[..., Candidate]:
    """An objective that takes the static plan's configuration whenever it can."""
    wanted = set(plan.values())

    def pick(cands: Sequence[Candidate], target_s: float) -> Candidate:
        for c in cands:
            if c.config in wanted and c.wait_s == 0:
                return c
        for c in cands:
            if c.config in wanted:
                return c
        return min(cands, key=lambda c: (c.predicted_s, c.cost_usd))

    return pick


def _mean_work_s(
    workload: Workload, plan: Mapping[str, Configuration], mix: ArchiveMix
) -> float:
    """Mean slot-seconds of one video under a static plan, from the profiles."""
    store = workload.profiles
    segments = sum(mix.segments) / 2
    moving = mix.motion_odds[0] / sum(mix.motion_odds)
    faces = mix.faces_odds[0] / sum(mix.faces_odds)
    counts = {
        "split": 1,
        "motion": segments,
        "people": segments * moving,
        "faces": segments * moving * faces,
        "aggregate": 1,
    }
    total = 0.0
    for op, config in plan.items():
        per_unit = store.predict_s_per_unit(op, config) * mix.drift * mix.busy
        batch = config.call_batch
        total += (
            counts[op]
            * per_unit
            * store.units_per_invocation(op)
            * config.slots
            / batch
        )
    return total


def _pool_slots(work_s: float, mix: ArchiveMix) -> int:
    return max(1, math.ceil(work_s / mix.interval_s / POOL_UTILISATION))


def scanner(workload: Workload, slo_s: float, mix: ArchiveMix) -> tuple[RunSpec, Any]:
    """Scanner-like: the reference configurations on a fixed CPU pool."""
    plan = {op: reference(workload, op, VM) for op in OPS}
    slots = _pool_slots(_mean_work_s(workload, plan, mix), mix)
    spec = RunSpec("scanner", (VM,), _fixed_settings(), slo_s, vm_slots=slots)
    return spec, fixed_objective(plan)


def gg(workload: Workload, slo_s: float) -> tuple[RunSpec, Any]:
    """gg-like: every op on Lambda at full parallelism, reference configurations."""
    plan = {op: _on_lambda(workload, op) for op in OPS}
    return RunSpec("gg", (LAMBDA,), _fixed_settings(), slo_s), fixed_objective(plan)


def nexus(workload: Workload, slo_s: float, mix: ArchiveMix) -> tuple[RunSpec, Any]:
    """Nexus-like: GPU ops on an always-on GPU pool in full batches, the rest on CPU."""
    plan: dict[str, Configuration] = {}
    for op in OPS:
        plan[op] = _on_gpu(workload, op) or reference(workload, op, VM)
    cpu_plan = {op: c for op, c in plan.items() if c.backend == VM}
    slots = _pool_slots(_mean_work_s(workload, cpu_plan, mix), mix)
    spec = RunSpec(
        "nexus",
        (GPU, VM),
        _fixed_settings(),
        slo_s,
        gpu_always_on=True,
        vm_slots=slots,
    )
    return spec, fixed_objective(plan)


def grandslam(workload: Workload, slo_s: float, floor: float) -> RunSpec:
    """GrandSLAm-like: a static split of the SLO, then the cheapest that fits."""
    latency = {}
    for op in OPS:
        config = _on_lambda(workload, op)
        units = workload.profiles.units_per_invocation(op)
        latency[op] = workload.profiles.predict_s_per_unit(op, config) * units
    total = sum(latency.values())
    shares = {op: s / total for op, s in latency.items()}
    settings = {"accuracy_floor": floor, "static_shares": shares, "duplication": False}
    return RunSpec("grandslam", (LAMBDA, GPU), settings, slo_s)


def static(
    plan: Mapping[str, Configuration], slo_s: float, name: str = "static"
) -> tuple[RunSpec, Any]:
    """A run of one static plan (one configuration per op) on its backends."""
    backends = tuple(sorted({c.backend for c in plan.values()}))
    return RunSpec(name, backends, _fixed_settings(), slo_s), fixed_objective(plan)


def _fixed_settings() -> dict[str, Any]:
    # Systems that leave configuration to the user neither duplicate stragglers nor
    # wait to batch beyond what their fixed configuration says.
    return {"duplication": False, "retry_abandoned": False}


def ablation(spec: RunSpec, name: str) -> RunSpec:
    """`spec` with one mechanism switched off."""
    return replace(spec, name=name, settings={**spec.settings, **ABLATIONS[name]})


def tune_static_plan(
    workload: Workload,
    videos: Sequence[Video],
    slo_s: float,
    floor: float,
    *,
    drift: float,
    trials: int = 200,
    seed: int = 0,
) -> dict[str, Configuration]:
    """The best single static plan for `videos`, by Optuna (TPE).

    A plan is one configuration per op on Lambda or the GPU pool, meeting the
    accuracy floor. It is scored without queueing, on the videos' true latencies:
    its cost, where at least 99% of the videos meet `slo_s`; otherwise its cost plus
    a penalty that grows with the share of videos it misses.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    choices = {
        op: [
            c
            for c in workload.profiles.configurations(op)
            if c.backend in (LAMBDA, GPU)
            and workload.profiles.profile(op, c).accuracy >= floor
        ]
        for op in OPS
    }
    scorer = _PlanScorer(workload, videos, drift)

    def objective(trial: Any) -> float:
        plan = {
            op: choices[op][trial.suggest_int(op, 0, len(choices[op]) - 1)]
            for op in OPS
        }
        met, usd = scorer.score(plan, slo_s)
        return usd * (1.0 + 100.0 * max(0.0, 0.99 - met))

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    best = study.best_params
    return {op: choices[op][best[op]] for op in OPS}


class _PlanScorer:
    """Share of videos meeting an SLO and mean cost of a static plan, no queueing."""

    def __init__(self, workload: Workload, videos: Sequence[Video], drift: float):
        from llama_prefect.core.options import build_options
        from llama_prefect.core.pricing import PriceCatalog

        self.workload, self.videos, self.drift = workload, videos, drift
        prices = PriceCatalog.load()
        capacity = {LAMBDA: 1 << 20, GPU: 1 << 20}
        per_inv = {LAMBDA: True, GPU: True}
        self._options = {
            op: {
                o.config: o
                for o in build_options(workload.profiles, prices, op, capacity, per_inv)
            }
            for op in OPS
        }

    def score(
        self, plan: Mapping[str, Configuration], slo_s: float
    ) -> tuple[float, float]:
        met, usd = 0, 0.0
        for video in self.videos:
            latency_s, cost = self._video(video, plan)
            met += latency_s <= slo_s
            usd += cost
        return met / len(self.videos), usd / len(self.videos)

    def _one(
        self, video: Video, op: str, config: Configuration, segment: int
    ) -> tuple[float, float]:
        option = self._options[op][config]
        run_s = self.workload.true_s(video, op, config.key, segment, self.drift)
        run_s *= option.call_batch  # a full call
        return run_s, option.usd(run_s) / option.call_batch

    def _video(
        self, video: Video, plan: Mapping[str, Configuration]
    ) -> tuple[float, float]:
        split_s, usd = self._one(video, "split", plan["split"], 0)
        agg_s, agg_usd = self._one(video, "aggregate", plan["aggregate"], 0)
        usd += agg_usd
        longest = 0.0
        for s in range(video.segments):
            chain_s, chain_usd = self._one(video, "motion", plan["motion"], s)
            if video.moving[s]:
                p_s, p_usd = self._one(video, "people", plan["people"], s)
                chain_s, chain_usd = chain_s + p_s, chain_usd + p_usd
                if video.faces[s]:
                    f_s, f_usd = self._one(video, "faces", plan["faces"], s)
                    chain_s, chain_usd = chain_s + f_s, chain_usd + f_usd
            usd += chain_usd
            longest = max(longest, chain_s)
        return split_s + longest + agg_s, usd
