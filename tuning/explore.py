"""Offline exploration: Optuna studies that measure each op's configurations.

For every op and backend, a two-objective Optuna study searches the op's knob space:
latency per unit of work and cost per unit, both minimized, with accuracy against the
op's reference configuration as a constraint at the user's floor
(`optuna.trial.Trial.set_constraint`). A trial runs the op's body with one
configuration on a few sample inputs and measures latency per unit, peak resident
memory and fan-out (downstream invocations per input); accuracy is the agreement of
its outputs with those of the reference configuration on the same inputs.

Latency is a line in the work units of an input: each input is timed on its own, and
a least-squares line through those (units, seconds) points gives the fixed part of a
call (decoder open, the decode worker's round trip) and the part per unit (see
`fit_line`). The sample inputs should therefore differ in size; a probe adds a short
one for that. The study's latency objective stays the mean seconds per unit over all
inputs, which ranks configurations as the typical invocation would.

The reference configuration is always the first trial. When the grid is no larger than
the trial budget every configuration is measured; otherwise Optuna's TPE sampler picks.
When the sampler offers a configuration already tried, an untried neighbour of it (one
knob changed) is measured instead, so the budget buys distinct configurations. The
last trials of the budget go to the other thread counts of the front's configurations,
because `threads` trades cost for latency at equal accuracy.

A trial that raises, or runs past its time bound, is marked failed in the study, never
scored. Optuna cannot prune multi-objective studies, so each trial runs in a worker
thread that is given up on at the bound.

Every trial, with what it measured in its user attributes, stays in an Optuna journal
file: a second exploration with the same journal, op, floor and sample inputs reads the
finished trials back instead of measuring them again, and `optuna-dashboard` or
`optuna.load_study` can inspect them.

The feasible Pareto front, plus the reference and the fastest configuration, seeds the
profile store. When no configuration meets the floor, the least infeasible one (the most
accurate) is seeded as the fallback, with a warning that says what to change.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_prefect import metering
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
from llama_prefect.errors import ConfigurationError, LlamaError

logger = logging.getLogger(__name__)

#: Name of the accuracy constraint of each trial (`floor - accuracy`, feasible <= 0).
ACCURACY_CONSTRAINT = "accuracy"
#: Trials TPE samples at random before it models the space (ours).
STARTUP_TRIALS = 5
#: Sampler offers per budgeted trial before the search gives up on new ones (ours).
OFFERS_PER_TRIAL = 4
#: Seconds between two readings of resident memory while a trial runs.
RSS_POLL_S = 0.01
#: Default time bound of one trial, in seconds.
TRIAL_TIMEOUT_S = 120.0
#: Longest wait, in seconds, for background work to finish its call after a trial.
BACKGROUND_JOIN_S = 10.0
#: Inputs whose units differ by less than this share cannot tell a fixed part from a
#: part per unit: the latency is then taken as proportional to the units (ours).
MIN_UNITS_SPREAD = 0.1
#: The least slope of a fitted line, as a share of the mean seconds per unit; a
#: flatter (or falling) fit is noise, and a profile's slope must be positive (ours).
MIN_SLOPE_SHARE = 0.05


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
        fanout: Downstream invocations one output creates (a branch that does not
            fire counts 0); None when the op's fan-out is not measured.
        background: Work that runs beside this op in a pipeline run, called over
            and over in the backend's other slots while a trial runs, instead of
            copies of the trial; None fills them with copies. A light op shares
            the machine in a run mostly with the heavy ones, not with itself.
    """

    body: Callable[..., Any]
    inputs: list[dict[str, Any]]
    units: Callable[[Mapping[str, Any]], float]
    accuracy: Callable[[Sequence[Any], Sequence[Any]], float] | None = None
    fanout: Callable[[Any], float] | None = None
    background: Callable[[], Any] | None = None

    def fingerprint(self) -> str:
        """A short digest of the sample inputs; a journal resumes only on the same."""
        text = repr(sorted(repr(sorted(p.items())) for p in self.inputs))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


@dataclass
class Measurement:
    """What one trial measured.

    Attributes:
        config: The configuration measured.
        s_per_unit: Latency per unit of work, in seconds.
        cost_usd_per_unit: Dollars per unit of work on the configuration's backend.
        accuracy: Agreement with the reference configuration, in [0, 1].
        peak_mem_mb: Peak growth of resident memory while it ran, in MB, if known,
            plus the decode workers' peak (decoding runs in worker processes).
        fanout: Mean downstream invocations per input, if the probe measures it.
        trial_s: Wall seconds its inputs took.
        trial: Number of the Optuna trial that measured it.
        outputs: The body's outputs (kept in memory only, for accuracy).
        fixed_s: Fitted latency of a call that does not grow with its units, in
            seconds (see `fit_line`).
        slope_s_per_unit: Fitted latency per unit on top of `fixed_s`, in seconds;
            None means `s_per_unit` (no fixed part).
    """

    config: Configuration
    s_per_unit: float
    cost_usd_per_unit: float
    accuracy: float
    peak_mem_mb: float | None = None
    fanout: float | None = None
    trial_s: float = 0.0
    trial: int | None = None
    outputs: list[Any] = field(repr=False, default_factory=list)
    fixed_s: float = 0.0
    slope_s_per_unit: float | None = None

    @property
    def line(self) -> tuple[float, float]:
        """Fixed seconds and seconds per unit of the latency line that seeds."""
        if self.slope_s_per_unit is None:
            return self.fixed_s, self.s_per_unit
        return self.fixed_s, self.slope_s_per_unit

    def user_attrs(self) -> dict[str, Any]:
        """What the journal keeps of this measurement."""
        return {
            "config": self.config.key,
            "s_per_unit": self.s_per_unit,
            "cost_usd_per_unit": self.cost_usd_per_unit,
            "accuracy": self.accuracy,
            "peak_mem_mb": self.peak_mem_mb,
            "fanout": self.fanout,
            "trial_s": self.trial_s,
            "fixed_s": self.fixed_s,
            "slope_s_per_unit": self.slope_s_per_unit,
        }

    @classmethod
    def from_trial(cls, trial: Any) -> Measurement:
        """Rebuilds a measurement from a finished trial's user attributes."""
        attrs = trial.user_attrs
        return cls(
            config=Configuration.from_key(attrs["config"]),
            s_per_unit=float(attrs["s_per_unit"]),
            cost_usd_per_unit=float(attrs["cost_usd_per_unit"]),
            accuracy=float(attrs["accuracy"]),
            peak_mem_mb=attrs.get("peak_mem_mb"),
            fanout=attrs.get("fanout"),
            trial_s=float(attrs.get("trial_s", 0.0)),
            trial=trial.number,
            fixed_s=float(attrs.get("fixed_s") or 0.0),
            slope_s_per_unit=attrs.get("slope_s_per_unit"),
        )


@dataclass
class FailedTrial:
    """A trial that raised or ran past its time bound."""

    config: Configuration
    error: str
    timed_out: bool
    trial: int | None = None


@dataclass
class OpExploration:
    """One op's study on one backend: what it measured and what it seeded.

    Attributes:
        op: The op.
        backend: The backend its configurations run on.
        study_name: Name of the Optuna study in the journal.
        accuracy_floor: The floor the constraint was set at.
        measured: Distinct configurations measured, the reference first.
        failed: Distinct configurations whose trial failed or timed out.
        resumed: Finished trials read back from the journal instead of measured.
        trials_run: Trials measured by this exploration.
        seconds: Wall seconds this exploration spent on the op.
        cost_usd: Dollars of the slots this exploration's trials held.
        front: Feasible configurations no other feasible one beats on latency and
            cost per unit at once.
        seeded: Measurements written to the profile store.
        warning: What to change, when no configuration met the floor.
    """

    op: str
    backend: str
    study_name: str
    accuracy_floor: float
    measured: list[Measurement]
    failed: list[FailedTrial]
    resumed: int
    trials_run: int
    seconds: float
    cost_usd: float
    front: list[Measurement]
    seeded: list[Measurement]
    warning: str | None = None

    def summary(self) -> dict[str, Any]:
        """The record kept in the profile store's metadata."""
        return {
            "study": self.study_name,
            "trials_run": self.trials_run,
            "resumed_trials": self.resumed,
            "measured": len(self.measured),
            "failed": len(self.failed),
            "timed_out": sum(1 for f in self.failed if f.timed_out),
            "seconds": self.seconds,
            "cost_usd": self.cost_usd,
            "front": [m.config.key for m in self.front],
            "seeded": [m.config.key for m in self.seeded],
            "warning": self.warning,
        }


@dataclass
class ExplorationResult:
    """The seeded store and what exploring cost.

    Attributes:
        store: The seeded profile store.
        ops: One record per explored (op, backend).
        seconds: Wall seconds of the whole exploration.
        cost_usd: Dollars of the slots it held (see `profiling_cost_usd`).
    """

    store: ProfileStore
    ops: list[OpExploration]
    seconds: float
    cost_usd: float

    @property
    def measurements(self) -> dict[str, list[Measurement]]:
        """Measured configurations per op, over its backends."""
        found: dict[str, list[Measurement]] = {}
        for record in self.ops:
            found.setdefault(record.op, []).extend(record.measured)
        return found

    @property
    def failed_trials(self) -> int:
        """Distinct configurations whose trial failed or timed out."""
        return sum(len(record.failed) for record in self.ops)

    @property
    def warnings(self) -> list[str]:
        """What to change, one line per op that met no floor or has no profile."""
        return [r.warning for r in self.ops if r.warning]


# -- one trial -------------------------------------------------------------------------


def measure(
    probe: OpProbe,
    config: Configuration,
    prices: PriceCatalog,
    *,
    reference_outputs: Sequence[Any] | None = None,
    timeout_s: float = TRIAL_TIMEOUT_S,
    copies: int = 1,
) -> Measurement:
    """Runs `probe` with one configuration, within a time bound, and measures it.

    Args:
        probe: The op's body and sample inputs.
        config: The configuration to run.
        prices: Prices the cost per unit comes from.
        reference_outputs: The reference configuration's outputs on the same inputs;
            None measures the reference itself (its outputs are compared with
            themselves, which checks that the accuracy function gives 1 to equal
            outputs).
        timeout_s: Seconds all inputs together may take.
        copies: Copies of the work run side by side, each in its own thread; the
            latency is their mean. The runner keeps every slot of a backend busy, so
            a trial measured with the backend's slots full of copies meets the same
            contention for cores, memory bandwidth and the interpreter lock. With
            the probe's `background` work, one copy runs and the background fills
            the other slots.

    Raises:
        TrialTimeout: The inputs took longer than `timeout_s`. The body cannot be
            interrupted: its thread runs on in the background to its end.
        Exception: Whatever the body raised.
    """
    with _PeakRss() as rss:
        if probe.background is not None and copies > 1:
            runs = _run_beside(probe, config, copies - 1, timeout_s)
        else:
            runs = _run_copies(probe, config, max(1, copies), timeout_s)
    outputs, units_each, _, _ = runs[0]
    units = sum(units_each)
    elapsed_s = sum(sum(run[2]) for run in runs) / len(runs)
    # Each copy decodes in its own worker process at the same time.
    decode_peak_mb = sum(run[3] for run in runs)
    s_per_unit = elapsed_s / max(units, 1e-9)
    fixed_s, slope = fit_line(
        [(u, t) for run in runs for u, t in zip(run[1], run[2], strict=True)]
    )
    reference = outputs if reference_outputs is None else reference_outputs
    return Measurement(
        config=config,
        s_per_unit=s_per_unit,
        cost_usd_per_unit=s_per_unit
        * config.slots
        * prices.price(config.backend).usd_per_slot_s,
        accuracy=_accuracy(probe, outputs, reference),
        peak_mem_mb=None if rss.peak_mb is None else rss.peak_mb + decode_peak_mb,
        fanout=_fanout(probe, outputs),
        trial_s=elapsed_s,
        outputs=outputs,
        fixed_s=fixed_s,
        slope_s_per_unit=slope,
    )


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Fixed seconds and seconds per unit of a latency line through measured points.

    A least-squares line through (units, seconds) points, kept physical: the fixed
    part is never negative (a negative intercept becomes 0 and the line a
    proportional one through the points' totals), and the slope never falls below
    `MIN_SLOPE_SHARE` of the mean seconds per unit (the line then goes through the
    points' mean with that slope). Points whose units hardly differ (less than
    `MIN_UNITS_SPREAD` between the smallest and largest) give the proportional line.

    Args:
        points: Work units (> 0) and seconds of each timed input.

    Returns:
        ``(fixed_s, s_per_unit)``. The line always passes through the points' mean or
        their totals, so an input of typical size is predicted as before.
    """
    total_u = sum(u for u, _ in points)
    total_s = sum(t for _, t in points)
    proportional = (0.0, total_s / max(total_u, 1e-9))
    if len(points) < 2:
        return proportional
    low, high = min(u for u, _ in points), max(u for u, _ in points)
    if high - low < MIN_UNITS_SPREAD * high:
        return proportional
    mean_u, mean_s = total_u / len(points), total_s / len(points)
    var_u = sum((u - mean_u) ** 2 for u, _ in points)
    slope = sum((u - mean_u) * (t - mean_s) for u, t in points) / var_u
    slope = max(slope, MIN_SLOPE_SHARE * proportional[1])
    fixed_s = mean_s - slope * mean_u
    if fixed_s < 0:
        return proportional
    return fixed_s, slope


def _run_copies(
    probe: OpProbe, config: Configuration, copies: int, timeout_s: float
) -> list[tuple[list[Any], list[float], list[float], float]]:
    """Runs `copies` of the inputs side by side; waits for all until one deadline.

    Returns:
        Per copy: outputs, work units and seconds of each input, and the decode
        workers' peak memory in MB (decoding runs in worker processes; their peak
        is measured there).
    """
    knobs = config.as_dict()
    boxes: list[dict[str, Any]] = [{} for _ in range(copies)]

    def work(box: dict[str, Any]) -> None:
        try:
            with metering.metered() as meter:
                outputs, units, seconds = _run_inputs(probe, knobs)
            box["value"] = (outputs, units, seconds, meter.decode_peak_rss_mb)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    workers = [
        threading.Thread(target=work, args=(box,), name=f"trial {config.key}")
        for box in boxes
    ]
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        worker.daemon = True
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    if any(worker.is_alive() for worker in workers):
        raise TrialTimeout(
            f"{config.key} ran past its time bound of {timeout_s:g} s; raise "
            "--trial-timeout-s or give the op shorter sample inputs"
        )
    for box in boxes:
        if "error" in box:
            raise box["error"]
    return [box["value"] for box in boxes]


def _run_beside(
    probe: OpProbe, config: Configuration, others: int, timeout_s: float
) -> list[tuple[list[Any], list[float], list[float], float]]:
    """Runs one copy of the inputs while `others` threads repeat the background work.

    The background stops after the trial, at the end of the call it is in (waited
    for up to `BACKGROUND_JOIN_S`), so it does not load the next trial. A background
    call that raises ends that thread's load quietly: the trial's latency is what
    is measured, and it then meets less contention.
    """
    assert probe.background is not None
    background, stop = probe.background, threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                background()
            except Exception as exc:
                logger.debug("background work failed, stops: %s", exc)
                return

    loaders = [
        threading.Thread(target=load, name=f"beside {config.key}", daemon=True)
        for _ in range(others)
    ]
    for loader in loaders:
        loader.start()
    try:
        return _run_copies(probe, config, 1, timeout_s)
    finally:
        stop.set()
        for loader in loaders:
            loader.join(BACKGROUND_JOIN_S)


def _run_inputs(
    probe: OpProbe, knobs: Mapping[str, KnobValue]
) -> tuple[list[Any], list[float], list[float]]:
    """Calls the body on every input; returns outputs, and units and seconds of each."""
    outputs, units, seconds = [], [], []
    for params in probe.inputs:
        start = time.perf_counter()
        outputs.append(probe.body(**params, **knobs))
        seconds.append(time.perf_counter() - start)
        units.append(probe.units(params))
    return outputs, units, seconds


def _accuracy(
    probe: OpProbe, outputs: Sequence[Any], reference: Sequence[Any]
) -> float:
    if probe.accuracy is None:
        return 1.0
    return min(1.0, max(0.0, float(probe.accuracy(outputs, reference))))


def _fanout(probe: OpProbe, outputs: Sequence[Any]) -> float | None:
    if probe.fanout is None or not outputs:
        return None
    return sum(float(probe.fanout(o)) for o in outputs) / len(outputs)


class _PeakRss:
    """Peak growth of this process's resident memory while the block runs, in MB.

    Reads ``/proc/self/statm`` every `RSS_POLL_S` seconds in a thread; where that file
    does not exist (not Linux) the peak is None. Memory other threads allocate at the
    same time counts too.
    """

    _STATM = Path("/proc/self/statm")

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PeakRss:
        baseline = self._read_mb()
        if baseline is None:
            return self
        self._baseline, self._peak = baseline, baseline
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(0.0, self._peak - self._baseline)

    def _poll(self) -> None:
        while not self._stop.wait(RSS_POLL_S):
            now = self._read_mb()
            if now is not None:
                self._peak = max(self._peak, now)

    def _read_mb(self) -> float | None:
        try:
            pages = int(self._STATM.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


# -- one op's study --------------------------------------------------------------------


class _OpSearch:
    """The trials of one op on one backend, kept in an Optuna study."""

    def __init__(
        self,
        spec: OpSpec,
        probe: OpProbe,
        backend: str,
        prices: PriceCatalog,
        study: Any,
        *,
        accuracy_floor: float,
        timeout_s: float,
        measure_fn: Callable[..., Measurement],
        on_trial: Callable[[], None],
        slots: int = 1,
    ) -> None:
        self.spec, self.probe, self.backend = spec, probe, backend
        self.slots = slots
        self.prices, self.study = prices, study
        self.floor, self.timeout_s = accuracy_floor, timeout_s
        self.measure_fn, self.on_trial = measure_fn, on_trial
        self.searched = {k: v for k, v in spec.knobs.items() if k != DEVICE_KNOB}
        self.reference = spec.reference_configuration(backend)
        self.done: dict[str, Measurement] = {}
        self.failed: dict[str, FailedTrial] = {}
        self.trials_run, self.cost_usd, self.charged_s = 0, 0.0, 0.0
        self._ref_outputs: Sequence[Any] | None = None
        self._ref_ready = False
        self._rng = random.Random(0)
        self.resumed = self._read_journal()

    @property
    def tried(self) -> int:
        """Distinct configurations measured or failed, this run and before."""
        return len(self.done) + len(self.failed)

    def has_tried(self, config: Configuration) -> bool:
        return config.key in self.done or config.key in self.failed

    def _read_journal(self) -> int:
        """Takes finished trials from the study (a resumed journal) as measured."""
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False):
            if "config" not in t.user_attrs or "repeat_of" in t.user_attrs:
                continue
            key = t.user_attrs["config"]
            if t.state == TrialState.COMPLETE and "s_per_unit" in t.user_attrs:
                self.done[key] = Measurement.from_trial(t)
            elif t.state == TrialState.FAIL:
                self.failed[key] = FailedTrial(
                    Configuration.from_key(key),
                    str(t.user_attrs.get("error", "")),
                    bool(t.user_attrs.get("timed_out", False)),
                    t.number,
                )
        return self.tried

    def run(self, knobs: Mapping[str, KnobValue] | None = None) -> Configuration | None:
        """One trial: of `knobs` when given, else of the sampler's pick.

        Returns:
            None when a configuration not tried before was measured (or failed);
            the configuration offered when it had been tried already.
        """
        if knobs is not None:
            self.study.enqueue_trial(
                {k: v for k, v in knobs.items() if k in self.searched}
            )
        trial = self.study.ask()
        config = self._suggest(trial)
        if self.has_tried(config):
            self._repeat(trial, config)
            return config
        try:
            found = self._measure(config)
        except Exception as exc:  # the trial fails; the exploration goes on
            self._fail(trial, config, exc)
        else:
            found.trial = trial.number
            for key, value in found.user_attrs().items():
                trial.set_user_attr(key, value)
            trial.set_constraint(ACCURACY_CONSTRAINT, self.floor - found.accuracy)
            self.study.tell(trial, [found.s_per_unit, found.cost_usd_per_unit])
            self.done[config.key] = found
        self.trials_run += 1
        self.on_trial()
        return None

    def _suggest(self, trial: Any) -> Configuration:
        knobs: dict[str, KnobValue] = {
            k: trial.suggest_categorical(k, list(v)) for k, v in self.searched.items()
        }
        if DEVICE_KNOB in self.spec.knobs:
            knobs[DEVICE_KNOB] = self.spec.device_by_backend.get(self.backend, "cpu")
        return Configuration.of(self.backend, knobs)

    def _measure(self, config: Configuration) -> Measurement:
        is_reference = config == self.reference
        reference = None if is_reference else self._reference_outputs()
        start = time.perf_counter()
        try:
            found = self.measure_fn(
                self.probe,
                config,
                self.prices,
                reference_outputs=reference,
                timeout_s=self.timeout_s,
                copies=self._copies(config),
            )
        finally:
            self._charge(config, time.perf_counter() - start)
        if is_reference:
            self._ref_outputs, self._ref_ready = found.outputs, True
        elif reference is None and self.probe.accuracy is not None:
            found.accuracy = 0.0  # the reference failed: accuracy is unknown
        found.outputs = []
        return found

    def _reference_outputs(self) -> Sequence[Any] | None:
        """The reference's outputs; measured again when a journal held only numbers."""
        if self._ref_ready or self.probe.accuracy is None:
            return self._ref_outputs
        self._ref_ready = True
        if self.reference.key not in self.done:
            return None  # it failed, or never ran: accuracy cannot be measured
        start = time.perf_counter()
        try:
            again = self.measure_fn(
                self.probe,
                self.reference,
                self.prices,
                timeout_s=self.timeout_s,
                copies=self._copies(self.reference),
            )
        except Exception as exc:
            logger.warning("op %s: reference failed on re-run: %s", self.spec.name, exc)
            return None
        finally:
            self._charge(self.reference, time.perf_counter() - start)
        self._ref_outputs = again.outputs
        return self._ref_outputs

    def _copies(self, config: Configuration) -> int:
        """Copies of a trial that fill the backend's slots, as a run would."""
        return max(1, self.slots // config.slots)

    def _charge(self, config: Configuration, seconds: float) -> None:
        """Adds the slots the trial's copies held for `seconds` to the cost."""
        price = self.prices.price(config.backend).usd_per_slot_s
        held = config.slots * self._copies(config)
        self.cost_usd += seconds * held * price
        self.charged_s += seconds

    def _fail(self, trial: Any, config: Configuration, exc: Exception) -> None:
        from optuna.trial import TrialState

        timed_out = isinstance(exc, TrialTimeout)
        error = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("config", config.key)
        trial.set_user_attr("error", error[:500])
        trial.set_user_attr("timed_out", timed_out)
        self.study.tell(trial, state=TrialState.FAIL)
        self.failed[config.key] = FailedTrial(config, error, timed_out, trial.number)
        logger.info("op %s: trial %s failed: %s", self.spec.name, config.key, error)

    def _repeat(self, trial: Any, config: Configuration) -> None:
        """Closes a trial the sampler spent on a configuration already tried."""
        from optuna.trial import TrialState

        trial.set_user_attr("config", config.key)
        trial.set_user_attr("repeat_of", config.key)
        known = self.done.get(config.key)
        if known is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in known.user_attrs().items():
            trial.set_user_attr(key, value)
        trial.set_constraint(ACCURACY_CONSTRAINT, self.floor - known.accuracy)
        self.study.tell(trial, [known.s_per_unit, known.cost_usd_per_unit])

    def untried_neighbour(self, config: Configuration) -> dict[str, KnobValue] | None:
        """Knob values one knob away from `config` not tried yet, picked at random."""
        base = config.as_dict()
        options = [
            {**base, knob: value}
            for knob, values in self.searched.items()
            for value in values
            if value != base.get(knob)
        ]
        self._rng.shuffle(options)
        for knobs in options:
            if not self.has_tried(Configuration.of(self.backend, knobs)):
                return knobs
        return self.untried_any()

    def untried_any(self) -> dict[str, KnobValue] | None:
        grid = [c for c in self.spec.configurations([self.backend])]
        left = [c for c in grid if not self.has_tried(c)]
        return self._rng.choice(left).as_dict() if left else None


def explore_op(
    spec: OpSpec,
    probe: OpProbe,
    backend: str,
    prices: PriceCatalog,
    *,
    n_trials: int = 16,
    timeout_s: float = TRIAL_TIMEOUT_S,
    accuracy_floor: float = 0.8,
    storage: Any = None,
    seed: int = 0,
    on_trial: Callable[[], None] | None = None,
    measure_fn: Callable[..., Measurement] = measure,
    slots: int = 1,
) -> OpExploration:
    """Explores one op on one backend with a constrained two-objective study.

    Args:
        spec: The op.
        probe: Its body and sample inputs.
        backend: The backend to explore on.
        prices: Prices that turn latency into cost.
        n_trials: Distinct configurations to try, journal included.
        timeout_s: Time bound of one trial, in seconds.
        accuracy_floor: Least accuracy a configuration must have to be feasible.
        storage: Optuna storage (a `JournalStorage`); None keeps the study in memory.
        seed: Seed of the sampler and of the neighbour picks.
        on_trial: Called after every trial measured.
        measure_fn: What measures one configuration (`measure`; benchmarks replay
            recorded measurements through it).
        slots: Slots of the backend; each trial runs as many copies side by side
            as fit in them (see `measure`).
    """
    if not 0.0 <= accuracy_floor <= 1.0:
        raise ConfigurationError(
            f"accuracy_floor must be in [0, 1], but got {accuracy_floor}; pass "
            "--accuracy-floor between 0 and 1"
        )
    start = time.perf_counter()
    search = _OpSearch(
        spec,
        probe,
        backend,
        prices,
        _open_study(spec, backend, probe, accuracy_floor, storage, seed),
        accuracy_floor=accuracy_floor,
        timeout_s=timeout_s,
        measure_fn=measure_fn,
        on_trial=on_trial or (lambda: None),
        slots=slots,
    )
    search._rng.seed(seed)
    grid = spec.configurations([backend])
    budget = min(n_trials, len(grid))
    if not search.has_tried(search.reference):
        search.run(search.reference.as_dict())
    if len(grid) <= budget:
        for config in grid:
            if not search.has_tried(config):
                search.run(config.as_dict())
    _search_to_budget(search, budget)
    return _summarize(search, time.perf_counter() - start)


def _search_to_budget(search: _OpSearch, budget: int) -> None:
    """Lets the sampler pick until `budget` distinct configurations were tried.

    When the trials left are no more than the front's untried thread siblings, those
    go first. When the sampler offers a configuration already tried, an untried
    neighbour of it is measured next.
    """
    offers = 0
    while search.tried < budget and offers < budget * OFFERS_PER_TRIAL:
        offers += 1
        siblings = _thread_siblings(search)
        if siblings and budget - search.tried <= len(siblings):
            search.run(siblings[0])
            continue
        offered = search.run()
        if offered is None:
            continue
        neighbour = search.untried_neighbour(offered)
        if neighbour is None:
            return  # the grid is exhausted
        search.run(neighbour)


def _thread_siblings(search: _OpSearch) -> list[dict[str, KnobValue]]:
    """Knob values of the front's configurations with its other thread counts."""
    if THREADS_KNOB not in search.spec.knobs:
        return []
    front = feasible_front(list(search.done.values()), search.floor)
    wanted: dict[str, dict[str, KnobValue]] = {}
    for m in front:
        for threads in search.spec.knobs[THREADS_KNOB]:
            knobs = {**m.config.as_dict(), THREADS_KNOB: threads}
            config = Configuration.of(m.config.backend, knobs)
            if not search.has_tried(config):
                wanted[config.key] = knobs
    return list(wanted.values())


def _open_study(
    spec: OpSpec,
    backend: str,
    probe: OpProbe,
    accuracy_floor: float,
    storage: Any,
    seed: int,
) -> Any:
    """Creates the op's study, or loads it from the journal to resume.

    The name holds the floor and a digest of the sample inputs: the stored
    constraint values hold for one floor, and the stored latencies for one set of
    inputs, so a different floor or archive starts a study of its own.
    """
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True
        )
    name = (
        f"{spec.name}@{backend} floor={accuracy_floor:g} inputs={probe.fingerprint()}"
    )
    return optuna.create_study(
        study_name=name,
        directions=["minimize", "minimize"],
        sampler=sampler,
        storage=storage,
        load_if_exists=True,
    )


def _summarize(search: _OpSearch, seconds: float) -> OpExploration:
    measured = sorted(
        search.done.values(), key=lambda m: (m.config != search.reference, m.trial)
    )
    front, seeded, warning = choose_seeds(
        search.spec.name, measured, search.reference, search.floor
    )
    if search.reference.key in search.failed and search.probe.accuracy is not None:
        warning = _reference_failed(search)
        logger.warning(warning)
    # The sampler's and the journal's time holds one slot of the local machine.
    rest_s = max(0.0, seconds - search.charged_s)
    cost_usd = (
        search.cost_usd + rest_s * search.prices.price("local-cpu").usd_per_slot_s
    )
    return OpExploration(
        op=search.spec.name,
        backend=search.backend,
        study_name=search.study.study_name,
        accuracy_floor=search.floor,
        measured=measured,
        failed=list(search.failed.values()),
        resumed=search.resumed,
        trials_run=search.trials_run,
        seconds=seconds,
        cost_usd=cost_usd,
        front=front,
        seeded=seeded,
        warning=warning,
    )


def _reference_failed(search: _OpSearch) -> str:
    failure = search.failed[search.reference.key]
    return (
        f"op {search.spec.name}: its reference configuration {failure.config.key} "
        f"failed ({failure.error}), so no accuracy could be measured; fix that error "
        "or raise --trial-timeout-s, then explore again"
    )


# -- fronts and seeds ------------------------------------------------------------------


def pareto_front(measurements: Sequence[Measurement]) -> list[Measurement]:
    """Measurements no other one beats on latency and cost per unit at once."""

    def dominates(a: Measurement, b: Measurement) -> bool:
        no_worse = (
            a.s_per_unit <= b.s_per_unit and a.cost_usd_per_unit <= b.cost_usd_per_unit
        )
        better = (
            a.s_per_unit < b.s_per_unit or a.cost_usd_per_unit < b.cost_usd_per_unit
        )
        return no_worse and better

    return [m for m in measurements if not any(dominates(o, m) for o in measurements)]


def feasible_front(
    measurements: Sequence[Measurement], accuracy_floor: float
) -> list[Measurement]:
    """The Pareto front of the measurements that meet the accuracy floor."""
    return pareto_front([m for m in measurements if m.accuracy >= accuracy_floor])


def choose_seeds(
    op: str,
    measured: Sequence[Measurement],
    reference: Configuration,
    accuracy_floor: float,
) -> tuple[list[Measurement], list[Measurement], str | None]:
    """The feasible front, what seeds the store, and a warning when none is feasible.

    The seeds are the front, the reference and the fastest configuration. With no
    feasible configuration, the least infeasible one (the most accurate; the fastest
    among equals) stands in for the front.
    """
    if not measured:
        return [], [], None
    front = feasible_front(measured, accuracy_floor)
    warning = None
    if not front:
        best = max(measured, key=lambda m: (m.accuracy, -m.s_per_unit))
        front_or_fallback = [best]
        warning = (
            f"op {op} on {best.config.backend}: no configuration reached the "
            f"accuracy floor {accuracy_floor:.2f} ({len(measured)} measured); the "
            f"most accurate, {best.config.key}, reached {best.accuracy:.2f} and is "
            f"seeded as the fallback. Lower --accuracy-floor to {best.accuracy:.2f} "
            f"or below, or check the op's accuracy against its reference "
            f"{reference.key}"
        )
        logger.warning(warning)
    else:
        front_or_fallback = front
    keep = {m.config.key: m for m in front_or_fallback}
    fastest = min(measured, key=lambda m: m.s_per_unit)
    keep.setdefault(fastest.config.key, fastest)
    for m in measured:
        if m.config == reference:
            keep.setdefault(m.config.key, m)
    return front, list(keep.values()), warning


# -- the whole pipeline ----------------------------------------------------------------


def explore(
    pipeline: Pipeline,
    probes: Mapping[str, OpProbe],
    *,
    backends: Sequence[str],
    prices: PriceCatalog | None = None,
    n_trials: int = 16,
    timeout_s: float = TRIAL_TIMEOUT_S,
    accuracy_floor: float = 0.8,
    journal_path: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
    slots: Mapping[str, int] | None = None,
    overhead_s: float = 0.0,
) -> ExplorationResult:
    """Explores every probed op on every backend it may use and seeds a store.

    Args:
        pipeline: The pipeline whose ops to explore.
        probes: How to run each op on sample inputs; ops without a probe are skipped.
        backends: Backends available here.
        prices: Price catalog (default: the shipped one).
        n_trials: Distinct configurations to try per op and backend.
        timeout_s: Time bound of one trial, in seconds.
        accuracy_floor: Least accuracy against the reference, in [0, 1].
        journal_path: Optuna journal file keeping every trial (none: in memory).
        progress: Show a progress bar.
        seed: Seed of the samplers.
        slots: Slots of each backend, so trials meet the contention of a full pool
            (default: one, every trial alone).
        overhead_s: Seconds every invocation spends outside the op's body when it
            runs as a task (the engine's bookkeeping), added to each seed's fixed
            part: trials call the bodies directly and cannot see it.
    """
    prices = prices or PriceCatalog.load()
    storage = journal_storage(journal_path)
    jobs = [
        (pipeline.ops[op], probe, backend)
        for op, probe in probes.items()
        for backend in pipeline.ops[op].backends
        if backend in backends
    ]
    total = sum(min(n_trials, len(s.configurations([b]))) for s, _, b in jobs)
    start = time.perf_counter()
    store = ProfileStore(pipeline.name)
    records = []
    with _progress(progress, total) as advance:
        for spec, probe, backend in jobs:
            advance(f"{spec.name} on {backend}", 0)
            record = explore_op(
                spec,
                probe,
                backend,
                prices,
                n_trials=n_trials,
                timeout_s=timeout_s,
                accuracy_floor=accuracy_floor,
                storage=storage,
                seed=seed,
                on_trial=lambda: advance(None, 1),
                slots=(slots or {}).get(backend, 1),
            )
            advance(None, record.resumed)
            records.append(record)
            _seed(store, record, probe, overhead_s)
    seconds = time.perf_counter() - start
    cost_usd = profiling_cost_usd(records, seconds, prices)
    store.meta["exploration"] = {
        "seconds": seconds,
        "cost_usd": cost_usd,
        "trials_run": sum(r.trials_run for r in records),
        "resumed_trials": sum(r.resumed for r in records),
        "failed_trials": sum(len(r.failed) for r in records),
        "n_trials": n_trials,
        "accuracy_floor": accuracy_floor,
        "trial_timeout_s": timeout_s,
        "slots": dict(slots or {}),
        "overhead_s": overhead_s,
        "journal": str(journal_path) if journal_path else None,
        "prices_version": prices.version,
        "ops": {f"{r.op}@{r.backend}": r.summary() for r in records},
    }
    store.meta["units"] = pipeline_units(pipeline, probes)
    return ExplorationResult(store, records, seconds, cost_usd)


def pipeline_units(pipeline: Pipeline, ops: Iterable[str]) -> dict[str, str]:
    """What one work unit of each of `ops` is, as the pipeline declares it."""
    return {op: pipeline.ops[op].unit for op in sorted(ops)}


def profiling_cost_usd(
    records: Sequence[OpExploration], seconds: float, prices: PriceCatalog
) -> float:
    """Dollars the exploration held slots for.

    Each trial is charged for the slots its configuration holds on its backend while
    it ran; the rest of the wall time (the sampler, the journal, seeding) is charged
    as one ``local-cpu`` slot.
    """
    ops_usd = sum(r.cost_usd for r in records)
    rest_s = max(0.0, seconds - sum(r.seconds for r in records))
    return ops_usd + rest_s * prices.price("local-cpu").usd_per_slot_s


def _seed(
    store: ProfileStore, record: OpExploration, probe: OpProbe, overhead_s: float
) -> None:
    if not record.measured:
        record.warning = record.warning or (
            f"op {record.op} on {record.backend}: every trial failed, so it has no "
            "profile; check that its inputs decode and its models load (the journal "
            "keeps each error), then explore again"
        )
        logger.warning(record.warning)
        return
    for m in record.seeded:
        fixed_s, s_per_unit = m.line
        store.seed(
            record.op,
            m.config,
            max(s_per_unit, 1e-12),
            accuracy=m.accuracy,
            peak_mem_mb=m.peak_mem_mb,
            fanout=m.fanout,
            fixed_s=fixed_s + overhead_s,
        )
    store.observe_units(record.op, _mean_units(probe))
    logger.info(
        "op %s on %s: %d configurations measured (%d read from the journal), %d "
        "failed, %d seeded, %.1f s, $%.6f",
        record.op,
        record.backend,
        len(record.measured),
        record.resumed,
        len(record.failed),
        len(record.seeded),
        record.seconds,
        record.cost_usd,
    )


def _mean_units(probe: OpProbe) -> float:
    units = [probe.units(p) for p in probe.inputs]
    return sum(units) / max(len(units), 1)


def journal_storage(path: str | Path | None) -> Any:
    """An Optuna journal storage on `path`, or None (in memory) without a path."""
    if path is None:
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class _progress:
    """A rich progress bar over trials, or nothing.

    Entering gives ``advance(description, steps)``: a new description (or None to
    keep it) and how many trials to move on.
    """

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[str | None, int], None]:
        if not self.enabled:
            return lambda description, steps: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("exploring {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._bar.start()
        task_id = self._bar.add_task("", total=self.total)

        def advance(description: str | None, steps: int) -> None:
            if description is not None:
                self._bar.update(task_id, description=description)
            if steps:
                self._bar.advance(task_id, steps)

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
