"""The profile store: what we know of each op's configurations, and how it learns.

For every (op, configuration) the store keeps the latency that the offline exploration
measured (the seed) as a line in the work units of an invocation: a fixed part, paid
once per call whatever its size (opening the decoder, the decode worker's round trip,
Prefect's task-run bookkeeping), plus a part per unit of work. It also keeps the
accuracy against the op's reference configuration, and peak memory. Every finished
invocation corrects the prediction in two layers, exponentially weighted moving
averages taken in logs (weight `ewma_weight`, 0.3):

* a drift ratio shared by all configurations of one op on one backend (observed over
  seed, whichever configuration ran), so a slowdown or speed-up seen on the
  configurations in use also moves the ones not in use; a configuration
  over-estimated once is therefore not shunned for good;
* a residual per configuration for what the shared ratio does not explain, learned
  at a quarter of that weight so that the drift takes what all configurations share;
  a configuration re-tried now and then beside those in use learns its residual
  alone (`observe(..., alone=True)`), as the mean of its observations.

The prediction of a call of ``u`` units is ``(seed_fixed_s + seed_s_per_unit x u) x
drift(op, backend) x residual(config)``: a slowdown (a busier machine, another codec)
stretches both parts alike. A store written before the fixed part existed loads with
``seed_fixed_s`` 0, which is the older, purely proportional model. The store also
learns the work units of an invocation of each op and the rate of each edge (fan-out
times branch odds), and keeps the last observations of each configuration for quantiles.

The published method kept feedback per configuration only; `observe(...,
shared=False)` does that (the residual alone learns, at the full weight), so a bench
can show the difference. Every observation also moves the spread of the prediction's
error per op and backend (a moving average of the squared log ratio of observed to
predicted), from which the scheduler predicts tail quantiles.

The file is JSON, written atomically, readable by a person.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llama_prefect.core.pipeline import Configuration
from llama_prefect.errors import ProfileError

FORMAT_VERSION = 1
#: How fast a configuration's residual learns, relative to the shared drift (ours).
RESIDUAL_SHARE = 0.25
#: Observations kept per configuration for quantiles.
RECENT_KEPT = 64
#: Log-scale spread of a prediction's error before anything was observed (ours:
#: invocations on real footage vary by about 20% around their profile).
PRIOR_SPREAD = 0.2
#: Weight of one observation in the moving average of the squared log error (ours:
#: about the last 40 observations count).
SPREAD_WEIGHT = 0.05


@dataclass
class ConfigProfile:
    """What the store knows of one configuration of one op.

    Attributes:
        seed_s_per_unit: Latency per unit of work measured by exploration, in seconds
            (the slope of the seed's line).
        accuracy: Agreement with the reference configuration, in [0, 1].
        peak_mem_mb: Largest peak memory in MB seen while it ran, if measured (online:
            the decode worker's peak plus the frames the invocation held).
        fanout: Mean downstream invocations per input that exploration saw, if
            measured (a branch that did not fire counts 0).
        residual: EWMA of observed over drift-corrected seed latency.
        observations: Finished invocations seen online.
        recent_s_per_unit: Last observed latencies per unit, newest last.
        seed_fixed_s: Latency of a call measured by exploration that does not grow
            with its work units, in seconds (the intercept of the seed's line).
    """

    seed_s_per_unit: float
    accuracy: float = 1.0
    peak_mem_mb: float | None = None
    fanout: float | None = None
    residual: float = 1.0
    observations: int = 0
    recent_s_per_unit: list[float] = field(default_factory=list)
    seed_fixed_s: float = 0.0

    def seed_s(self, units: float) -> float:
        """The seed's latency of a call of `units` work units, in seconds."""
        return self.seed_fixed_s + self.seed_s_per_unit * units


@dataclass
class OpProfile:
    """Everything the store knows of one op."""

    configs: dict[str, ConfigProfile] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)
    units_per_invocation: float | None = None
    log_var: dict[str, float] = field(default_factory=dict)


class ProfileStore:
    """Latency and accuracy profiles of one pipeline's ops, corrected online.

    Args:
        pipeline: Name of the pipeline the profiles belong to.
        ewma_weight: Weight of a new observation in every moving average, in (0, 1].
    """

    def __init__(self, pipeline: str, *, ewma_weight: float = 0.3) -> None:
        if not 0.0 < ewma_weight <= 1.0:
            raise ProfileError(f"ewma_weight must be in (0, 1], but got {ewma_weight}")
        self.pipeline = pipeline
        self.ewma_weight = ewma_weight
        self.ops: dict[str, OpProfile] = {}
        self.edge_rates: dict[tuple[str, str], float] = {}
        self.meta: dict[str, Any] = {}
        self._configs: dict[str, tuple[tuple[int, int], list[Configuration]]] = {}

    # -- seeding and lookup ------------------------------------------------------------

    def seed(
        self,
        op: str,
        config: Configuration,
        s_per_unit: float,
        *,
        accuracy: float = 1.0,
        peak_mem_mb: float | None = None,
        fanout: float | None = None,
        fixed_s: float = 0.0,
    ) -> None:
        """Records an explored configuration, replacing what was known of it.

        Args:
            op: The op.
            config: The configuration explored.
            s_per_unit: Latency per unit of work, in seconds (> 0).
            accuracy: Agreement with the op's reference configuration, in [0, 1].
            peak_mem_mb: Peak memory in MB, if measured.
            fanout: Downstream invocations per input, if measured.
            fixed_s: Latency of a call that does not grow with its units, in
                seconds (>= 0; 0 makes the latency proportional to the units).
        """
        if not s_per_unit > 0:
            raise ProfileError(
                f"{op} {config.key}: latency per unit must be > 0, but got {s_per_unit}"
            )
        if not fixed_s >= 0:
            raise ProfileError(
                f"{op} {config.key}: fixed latency must be >= 0 s, but got {fixed_s}"
            )
        self._op(op).configs[config.key] = ConfigProfile(
            seed_s_per_unit=s_per_unit,
            accuracy=accuracy,
            peak_mem_mb=peak_mem_mb,
            fanout=fanout,
            seed_fixed_s=fixed_s,
        )
        self._configs.pop(op, None)

    def configurations(self, op: str) -> list[Configuration]:
        """The profiled configurations of `op` (a list the caller must not change)."""
        known = self.ops.get(op)
        if known is None:
            return []
        stamp = (id(known.configs), len(known.configs))
        cached = self._configs.get(op)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = [Configuration.from_key(k) for k in known.configs]
        self._configs[op] = (stamp, found)
        return found

    def has(self, op: str) -> bool:
        """True when at least one configuration of `op` is profiled."""
        return bool(self.ops.get(op) and self.ops[op].configs)

    def profile(self, op: str, config: Configuration) -> ConfigProfile:
        """The profile of one configuration; raises if it was never explored."""
        try:
            return self.ops[op].configs[config.key]
        except KeyError:
            raise ProfileError(
                f"no profile for op {op!r} configuration {config.key!r}; run "
                "`llama-prefect profile` to explore it"
            ) from None

    def predict_s_per_unit(self, op: str, config: Configuration) -> float:
        """Predicted latency per unit of work, the fixed part left out.

        The seed's slope x shared drift x own residual: the marginal cost of one more
        unit. A whole call is `predict_s`.
        """
        prof = self.profile(op, config)
        drift = self.ops[op].drift.get(config.backend, 1.0)
        return prof.seed_s_per_unit * drift * prof.residual

    def predict_s(self, op: str, config: Configuration, units: float) -> float:
        """Predicted latency of a call of `units` work units, in seconds.

        ``(seed_fixed_s + seed_s_per_unit x units) x drift x residual``.
        """
        prof = self.profile(op, config)
        drift = self.ops[op].drift.get(config.backend, 1.0)
        return prof.seed_s(units) * drift * prof.residual

    def quantile_s_per_unit(self, op: str, config: Configuration, q: float) -> float:
        """Quantile `q` of recent observations; the prediction when there are none."""
        recent = sorted(self.profile(op, config).recent_s_per_unit)
        if not recent:
            return self.predict_s_per_unit(op, config)
        return recent[min(len(recent) - 1, int(q * len(recent)))]

    def spread(self, op: str, backend: str) -> float:
        """Log-scale spread of the prediction error of `op` on `backend`.

        The root of the moving average of the squared log ratio of observed to
        predicted latency; `PRIOR_SPREAD` until something was observed.
        """
        known = self.ops.get(op)
        var = known.log_var.get(backend) if known is not None else None
        return PRIOR_SPREAD if var is None else math.sqrt(var)

    def units_per_invocation(self, op: str, default: float = 1.0) -> float:
        """Learned work units of one invocation of `op`."""
        known = self.ops.get(op)
        if known is None or known.units_per_invocation is None:
            return default
        return known.units_per_invocation

    # -- feedback ----------------------------------------------------------------------

    def observe(
        self,
        op: str,
        config: Configuration,
        units: float,
        observed_s: float,
        *,
        shared: bool = True,
        invocation_units: float | None = None,
        alone: bool = False,
        content: float = 1.0,
    ) -> float:
        """Corrects the profile with one finished invocation (or batched call).

        Args:
            op: The op that ran.
            config: The configuration it ran with; must be profiled.
            units: Work units the invocation or call processed (> 0).
            observed_s: Its measured latency in seconds.
            shared: Let the drift shared by the op's configurations on this backend
                learn (True), or only this configuration, as published (False).
            invocation_units: Work units of one invocation, when `units` counts a
                batched call of several (default: `units`).
            alone: Teach this configuration's residual only, as the mean of its
                observations so far (the weight `1 / observations`, never below the
                residual's own), and leave the shared drift alone. For a
                configuration tried now and then beside the ones in use: the drift
                is known from those, and what the try adds is how this one differs.
            content: The factor by which the caller scaled the prediction for
                what the invocation worked on (its video's content, see the
                scheduler's `content_feedback`). Drift and residual learn from
                the error of the prediction so scaled; the spread learns from
                the error of the profile alone, without the factor.

        Returns:
            The prediction's log error, ``log(observed / predicted)``.
        """
        prof = self.profile(op, config)
        ops = self.ops[op]
        backend = config.backend
        observed_s = max(observed_s, 1e-12)
        one = units if invocation_units is None else invocation_units
        units = max(units, 1e-9)
        per_unit = observed_s / units
        seed_s = prof.seed_s(units)
        predicted_s = seed_s * ops.drift.get(backend, 1.0) * prof.residual * content
        ratio = observed_s / predicted_s
        w = self.ewma_weight
        step = math.log(max(ratio, 1e-9))  # the prediction's log error
        # The spread is of the profile's own error, before the content factor:
        # tail margins are for the widest fan-out, the first segments of a video,
        # which are planned before anything of that video was seen.
        self._observe_spread(ops, backend, step + math.log(content))
        prof.observations += 1
        recent = prof.recent_s_per_unit
        recent.append(per_unit)
        if len(recent) > RECENT_KEPT:
            del recent[:-RECENT_KEPT]
        old_units = ops.units_per_invocation  # `observe_units`, inline
        ops.units_per_invocation = (
            one if old_units is None else (1 - w) * old_units + w * one
        )
        if alone:
            a = max(w * RESIDUAL_SHARE, 1.0 / prof.observations)
            prof.residual *= 1 - a + a * ratio
        elif not shared:
            prof.residual *= 1 - w + w * ratio
        else:
            self._learn_shared(ops, prof, backend, step)
        return step

    def _learn_shared(
        self, ops: OpProfile, prof: ConfigProfile, backend: str, step: float
    ) -> None:
        """Moves the shared drift and the residual by one observation's log error.

        The shared drift moves by the whole error of the prediction; the residual
        moves toward what the new drift leaves unexplained, but `RESIDUAL_SHARE`
        times slower. A change of content or machine seen through the
        configurations in use thus lands mostly in the drift and reaches every
        configuration of this op and backend; what one configuration does unlike
        the others builds up in its residual over several observations.

        Both move in logs. Moved as plain averages, the two split a noisy ratio
        unevenly (an average of ratios is not the ratio of averages), and over
        thousands of observations of one configuration the drift climbed while its
        residual sank by as much: its own prediction stayed right, but every other
        configuration of the op was predicted several times too slow and was never
        chosen again. In logs the error of each observation is split in fixed
        shares, so the drift's move over a run is a fixed power of the
        prediction's, and stays as bounded as that.
        """
        w = self.ewma_weight
        ops.drift[backend] = ops.drift.get(backend, 1.0) * math.exp(w * step)
        prof.residual *= math.exp(w * RESIDUAL_SHARE * (1 - w) * step)

    @staticmethod
    def _observe_spread(ops: OpProfile, backend: str, step: float) -> None:
        old = ops.log_var.get(backend, PRIOR_SPREAD**2)
        ops.log_var[backend] = (1 - SPREAD_WEIGHT) * old + SPREAD_WEIGHT * step**2

    def observe_peak_mem(self, op: str, config: Configuration, peak_mb: float) -> None:
        """Keeps the largest peak memory in MB seen for one configuration.

        The largest, not an average: memory decides what a backend must offer (a
        Lambda function's size), and an invocation that needs more than that fails.
        A configuration that was never explored is left alone.
        """
        prof = self.ops.get(op, OpProfile()).configs.get(config.key)
        if prof is not None and peak_mb > 0:
            prof.peak_mem_mb = max(prof.peak_mem_mb or 0.0, peak_mb)

    def observe_units(self, op: str, units: float) -> None:
        """Moves the expected work units of `op` toward one observation."""
        ops = self._op(op)
        old = ops.units_per_invocation
        w = self.ewma_weight
        ops.units_per_invocation = units if old is None else (1 - w) * old + w * units

    def observe_edge(self, upstream: str, downstream: str, rate: float) -> None:
        """Moves the learned rate of an edge toward one observed group's rate."""
        key = (upstream, downstream)
        old = self.edge_rates.get(key)
        w = self.ewma_weight
        self.edge_rates[key] = rate if old is None else (1 - w) * old + w * rate

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The store as plain JSON-ready data."""
        return {
            "format": FORMAT_VERSION,
            "pipeline": self.pipeline,
            "ewma_weight": self.ewma_weight,
            "meta": self.meta,
            "edges": {f"{u}->{v}": r for (u, v), r in sorted(self.edge_rates.items())},
            "ops": {name: asdict(op) for name, op in sorted(self.ops.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileStore:
        """Rebuilds a store written by `to_dict`.

        Fields a later version added to a configuration's profile (such as
        ``seed_fixed_s``) take their defaults when an older store lacks them.
        """
        if data.get("format") != FORMAT_VERSION:
            raise ProfileError(
                f"profile format must be {FORMAT_VERSION}, but got "
                f"{data.get('format')!r}; delete the file and run `llama-prefect "
                "profile` again"
            )
        store = cls(data["pipeline"], ewma_weight=data.get("ewma_weight", 0.3))
        store.meta = dict(data.get("meta", {}))
        for key, rate in data.get("edges", {}).items():
            upstream, _, downstream = key.partition("->")
            store.edge_rates[(upstream, downstream)] = float(rate)
        for name, raw in data.get("ops", {}).items():
            configs = {k: ConfigProfile(**v) for k, v in raw.get("configs", {}).items()}
            store.ops[name] = OpProfile(
                configs=configs,
                drift=dict(raw.get("drift", {})),
                units_per_invocation=raw.get("units_per_invocation"),
                log_var=dict(raw.get("log_var", {})),
            )
        return store

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the store atomically (a temporary file renamed over the target)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=".profiles-", suffix=".json"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=1, sort_keys=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProfileStore:
        """Reads a store written by `save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProfileError(
                f"no profile store at {path}; run `llama-prefect profile` first"
            ) from None
        except json.JSONDecodeError as exc:
            raise ProfileError(
                f"profile store {path} is not valid JSON ({exc}); delete it and run "
                "`llama-prefect profile` again"
            ) from None
        if not isinstance(data, dict):
            raise ProfileError(
                f"profile store {path} must hold a JSON object, but holds a "
                f"{type(data).__name__}; delete it and run `llama-prefect profile` "
                "again"
            )
        return cls.from_dict(data)

    def forget_feedback(self) -> None:
        """Drops what online feedback taught the store; the explored seeds stay.

        Every drift, residual, observation count, recent observation and learned
        spread goes back to where exploration left it, so predictions come from the
        seeds alone. Work units per invocation and edge rates are kept: they shape
        the targets, not an invocation's prediction.
        """
        for known in self.ops.values():
            known.drift.clear()
            known.log_var.clear()
            for prof in known.configs.values():
                prof.residual, prof.observations = 1.0, 0
                prof.recent_s_per_unit = []

    def merge_ops(self, other: ProfileStore, ops: Iterable[str]) -> None:
        """Copies the named ops' profiles from `other`, replacing ours."""
        for op in ops:
            if op in other.ops:
                self.ops[op] = other.ops[op]
                self._configs.pop(op, None)

    def _op(self, op: str) -> OpProfile:
        known = self.ops.get(op)
        if known is None:
            known = self.ops[op] = OpProfile()
        return known
