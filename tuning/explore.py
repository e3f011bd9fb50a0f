"""Offline exploration: Optuna studies that measure each op's configurations.

For every op and backend, a multi-objective Optuna study searches the op's knob space.
A trial runs the op's body with one configuration on a few sample inputs and measures
latency per unit of work; accuracy is the agreement of its outputs with those of the
op's reference configuration on the same inputs. The objectives are latency per unit
and cost per unit (both minimized) and accuracy (maximized), so the front keeps the
accurate configurations a high accuracy floor needs as well as the fast and cheap ones.

The reference configuration is always the first trial. When the grid is no larger than
the trial budget every configuration is measured; otherwise Optuna's TPE sampler picks
the rest. A trial that raises or runs past its time bound is marked failed, never
scored. The Pareto front, plus the reference and the fastest configuration, seeds the
profile store; every trial stays in an Optuna journal file for inspection or to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_prefect.core.pipeline import (
    DEVICE_KNOB,
    THREADS_KNOB,
    Configuration,
    KnobValue,
    OpSpec,
    Pipeline,
)
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import LlamaError

logger = logging.getLogger(__name__)


class TrialTimeout(LlamaError, TimeoutError):
    """A trial ran past its time bound."""


@dataclass
class OpProbe:
    """How to measure one op outside Prefect.

    Attributes:
        body: The op's body; called as ``body(**inputs, **knobs)``.
        inputs: Sample parameter sets, one per piece of sample work.
        units: Work units of one parameter set.
        accuracy: Agreement of outputs with the reference's outputs, in [0, 1];
            None means every configuration is exact (accuracy 1).
    """

    body: Callable[..., Any]
    inputs: list[dict[str, Any]]
    units: Callable[[Mapping[str, Any]], float]
    accuracy: Callable[[Sequence[Any], Sequence[Any]], float] | None = None


@dataclass
class Measurement:
    """What one trial measured."""

    config: Configuration
    s_per_unit: float
    cost_usd_per_unit: float
    accuracy: float
    outputs: list[Any] = field(repr=False, default_factory=list)


@dataclass
class ExplorationResult:
    """The seeded store and what exploring cost."""

    store: ProfileStore
    measurements: dict[str, list[Measurement]]
    seconds: float
    cost_usd: float
    failed_trials: int


def measure(
    probe: OpProbe,
    config: Configuration,
    prices: PriceCatalog,
    *,
    reference_outputs: Sequence[Any] | None = None,
    timeout_s: float = 120.0,
) -> Measurement:
    """Runs `probe` with one configuration and measures it."""
    knobs = config.as_dict()
    outputs, units, elapsed_s = [], 0.0, 0.0
    for params in probe.inputs:
        start = time.perf_counter()
        outputs.append(probe.body(**params, **knobs))
        elapsed_s += time.perf_counter() - start
        units += probe.units(params)
        if elapsed_s > timeout_s:
            raise TrialTimeout(
                f"{config.key} ran {elapsed_s:.1f} s, past its bound of {timeout_s} s"
            )
    s_per_unit = elapsed_s / max(units, 1e-9)
    accuracy = 1.0
    if probe.accuracy is not None and reference_outputs is not None:
        accuracy = float(probe.accuracy(outputs, reference_outputs))
    cost = prices.cost_usd(config.backend, s_per_unit, config.slots)
    return Measurement(config, s_per_unit, cost, accuracy, outputs)


def explore_op(
    spec: OpSpec,
    probe: OpProbe,
    backend: str,
    prices: PriceCatalog,
    *,
    n_trials: int = 16,
    timeout_s: float = 120.0,
    storage: Any = None,
    on_trial: Callable[[], None] | None = None,
) -> tuple[list[Measurement], int]:
    """Explores one op on one backend with an Optuna study.

    Returns:
        The measurements of completed trials, and the number of failed trials.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = spec.configurations([backend])
    reference = spec.reference_configuration(backend)
    ref = measure(probe, reference, prices, timeout_s=timeout_s)
    ref.outputs, ref_outputs = [], ref.outputs
    done: dict[str, Measurement] = {reference.key: ref}
    searched = {k: v for k, v in spec.knobs.items() if k != DEVICE_KNOB}
    study = optuna.create_study(
        study_name=f"{spec.name}@{backend}",
        directions=["minimize", "minimize", "maximize"],
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=6),
        storage=storage,
        load_if_exists=True,
    )
    if len(grid) <= n_trials:
        for config in grid:
            study.enqueue_trial({k: v for k, v in config.knobs if k in searched})

    def run_trial(knobs: dict[str, KnobValue]) -> Measurement:
        config = Configuration.of(backend, knobs)
        if config.key not in done:
            m = measure(
                probe,
                config,
                prices,
                reference_outputs=ref_outputs,
                timeout_s=timeout_s,
            )
            m.outputs = []
            done[config.key] = m
        return done[config.key]

    objective = _objective(spec, backend, searched, run_trial)
    callbacks = [lambda *_: on_trial()] if on_trial else None
    budget = min(n_trials, len(grid))
    study.optimize(objective, n_trials=budget, catch=(Exception,), callbacks=callbacks)

    # The threads knob trades cost for latency at equal accuracy; measure the other
    # thread counts of the front's configurations so the runner has both sides.
    siblings = _thread_siblings(spec, pareto_front(list(done.values())), done)
    for knobs in siblings:
        study.enqueue_trial({k: v for k, v in knobs.items() if k in searched})
    if siblings:
        study.optimize(objective, n_trials=len(siblings), catch=(Exception,))
    failed = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    return list(done.values()), failed


def _objective(
    spec: OpSpec,
    backend: str,
    searched: Mapping[str, tuple[KnobValue, ...]],
    run_trial: Callable[[dict[str, KnobValue]], Measurement],
) -> Callable[[Any], tuple[float, float, float]]:
    """The Optuna objective: suggest knob values, measure, return the three scores."""

    def objective(trial: Any) -> tuple[float, float, float]:
        knobs: dict[str, KnobValue] = {
            k: trial.suggest_categorical(k, list(v)) for k, v in searched.items()
        }
        if DEVICE_KNOB in spec.knobs:
            knobs[DEVICE_KNOB] = spec.device_by_backend.get(backend, "cpu")
        m = run_trial(knobs)
        return m.s_per_unit, m.cost_usd_per_unit, m.accuracy

    return objective


def _thread_siblings(
    spec: OpSpec, front: Sequence[Measurement], done: Mapping[str, Measurement]
) -> list[dict[str, Any]]:
    """Knob values of the front's configurations with the other thread counts."""
    if THREADS_KNOB not in spec.knobs:
        return []
    wanted: dict[str, dict[str, Any]] = {}
    for m in front:
        for threads in spec.knobs[THREADS_KNOB]:
            knobs = {**m.config.as_dict(), THREADS_KNOB: threads}
            key = Configuration.of(m.config.backend, knobs).key
            if key not in done:
                wanted[key] = knobs
    return list(wanted.values())


def pareto_front(measurements: Sequence[Measurement]) -> list[Measurement]:
    """Measurements no other one beats on latency, cost and accuracy at once."""

    def dominates(a: Measurement, b: Measurement) -> bool:
        no_worse = (
            a.s_per_unit <= b.s_per_unit
            and a.cost_usd_per_unit <= b.cost_usd_per_unit
            and a.accuracy >= b.accuracy
        )
        better = (
            a.s_per_unit < b.s_per_unit
            or a.cost_usd_per_unit < b.cost_usd_per_unit
            or a.accuracy > b.accuracy
        )
        return no_worse and better

    return [m for m in measurements if not any(dominates(o, m) for o in measurements)]


def explore(
    pipeline: Pipeline,
    probes: Mapping[str, OpProbe],
    *,
    backends: Sequence[str],
    prices: PriceCatalog | None = None,
    n_trials: int = 16,
    timeout_s: float = 120.0,
    journal_path: str | Path | None = None,
    progress: bool = True,
) -> ExplorationResult:
    """Explores every probed op on every backend it may use and seeds a store.

    Args:
        pipeline: The pipeline whose ops to explore.
        probes: How to run each op on sample inputs; ops without a probe are skipped.
        backends: Backends available here.
        prices: Price catalog (default: the shipped one).
        n_trials: Trial budget per op and backend.
        timeout_s: Time bound of one trial, in seconds.
        journal_path: Optuna journal file keeping every trial (none: in memory).
        progress: Show a progress bar.
    """
    prices = prices or PriceCatalog.load()
    storage = _journal(journal_path)
    store = ProfileStore(pipeline.name)
    jobs = [
        (pipeline.ops[op], probe, backend)
        for op, probe in probes.items()
        for backend in pipeline.ops[op].backends
        if backend in backends
    ]
    total = sum(min(n_trials, len(s.configurations([b]))) for s, _, b in jobs)
    start = time.perf_counter()
    measurements: dict[str, list[Measurement]] = {}
    failed = 0
    with _progress(progress, total) as advance:
        for spec, probe, backend in jobs:
            found, n_failed = explore_op(
                spec,
                probe,
                backend,
                prices,
                n_trials=n_trials,
                timeout_s=timeout_s,
                storage=storage,
                on_trial=advance,
            )
            failed += n_failed
            measurements.setdefault(spec.name, []).extend(found)
            _seed(store, spec, found)
            store.observe_units(spec.name, _mean_units(probe))
    seconds = time.perf_counter() - start
    cost_usd = prices.cost_usd("local-cpu", seconds)
    store.meta["exploration"] = {
        "seconds": seconds,
        "cost_usd": cost_usd,
        "failed_trials": failed,
        "n_trials": n_trials,
        "prices_version": prices.version,
    }
    return ExplorationResult(store, measurements, seconds, cost_usd, failed)


def _seed(store: ProfileStore, spec: OpSpec, found: Sequence[Measurement]) -> None:
    if not found:
        logger.warning(
            "op %s: every trial failed, so it has no profile; check that its "
            "inputs decode and its models load, then run the exploration again",
            spec.name,
        )
        return
    keep = {m.config.key: m for m in pareto_front(found)}
    fastest = min(found, key=lambda m: m.s_per_unit)
    keep[fastest.config.key] = fastest
    reference = found[0]
    keep[reference.config.key] = reference
    for m in keep.values():
        store.seed(spec.name, m.config, m.s_per_unit, accuracy=m.accuracy)
    logger.info(
        "op %s: %d trials measured, %d configurations seeded",
        spec.name,
        len(found),
        len(keep),
    )


def _mean_units(probe: OpProbe) -> float:
    units = [probe.units(p) for p in probe.inputs]
    return sum(units) / max(len(units), 1)


def _journal(path: str | Path | None) -> Any:
    if path is None:
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class _progress:
    """A rich progress bar over trials, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self._bar = Progress()
        self._bar.start()
        task_id = self._bar.add_task("exploring configurations", total=self.total)
        return lambda: self._bar.advance(task_id)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
