"""Each op's configurations as the scheduler prices them, with backend facts folded in.

An `Option` binds one profiled configuration of one op to what the scheduler needs at
every decision: the slots it holds on its backend, the invocations one call of it
takes, its accuracy, its price per second of run time, and a live reference to its
profile. Building these once per op keeps a decision to a few multiplications per
configuration: no key strings, no dictionary lookups by configuration.

Prediction follows `core.profiles`: a call of ``u`` units takes ``(fixed + per unit x
u) x drift(op, backend) x residual(config)``, read from the live profile, so feedback
reaches the options at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.pricing import MEMORY_KNOB, PriceCatalog
from llama_prefect.core.profiles import ConfigProfile, ProfileStore


@dataclass(eq=False)
class Option:
    """One configuration of one op, ready to be priced.

    Attributes:
        config: The configuration.
        backend: Its backend's name.
        slots: Slots of the backend one call holds (1 on backends that count
            invocations, such as Lambda, whatever the threads).
        call_batch: Invocations one call takes at most (1: unbatched).
        accuracy: Accuracy against the op's reference configuration.
        profile: The live profile of the configuration.
        drift: The live drift ratios of the op, per backend.
        usd_per_s: Dollars per second of run time of one call.
        usd_fee: Dollars per call.
        granularity_s: Billing granularity of one call, in seconds (0: exact).
    """

    config: Configuration
    backend: str
    slots: int
    call_batch: int
    accuracy: float
    profile: ConfigProfile
    drift: dict[str, float]
    usd_per_s: float
    usd_fee: float
    granularity_s: float

    def s_per_unit(self) -> float:
        """Predicted run time per unit of work, the fixed part left out, in seconds."""
        p = self.profile
        return p.seed_s_per_unit * self.drift.get(self.backend, 1.0) * p.residual

    def fixed_s(self) -> float:
        """Predicted run time of a call that its units do not change, in seconds."""
        p = self.profile
        return p.seed_fixed_s * self.drift.get(self.backend, 1.0) * p.residual

    def run_s(self, units: float) -> float:
        """Predicted run time of one call of `units` work units, in seconds."""
        p = self.profile
        return p.seed_s(units) * self.drift.get(self.backend, 1.0) * p.residual

    def usd(self, run_s: float) -> float:
        """Dollars for one call that runs `run_s` seconds."""
        if self.granularity_s > 0.0:
            steps = -(-run_s // self.granularity_s)
            run_s = steps * self.granularity_s
        return run_s * self.usd_per_s + self.usd_fee


def build_options(
    store: ProfileStore,
    prices: PriceCatalog,
    op: str,
    capacity: Mapping[str, int],
    per_invocation: Mapping[str, bool],
) -> list[Option]:
    """The options of `op` on the backends in `capacity` that can hold them.

    Args:
        store: The profile store.
        prices: The price catalog.
        op: The op.
        capacity: Slots of each backend of the run.
        per_invocation: Backends whose concurrency counts invocations, not threads.
    """
    known = store.ops.get(op)
    if known is None:
        return []
    out = []
    for config in store.configurations(op):
        if config.backend not in capacity:
            continue
        slots = 1 if per_invocation.get(config.backend) else config.slots
        if slots > capacity[config.backend]:
            continue
        out.append(_option(store, prices, op, config, slots))
    return out


def _option(
    store: ProfileStore,
    prices: PriceCatalog,
    op: str,
    config: Configuration,
    slots: int,
) -> Option:
    price = prices.price(config.backend)
    knobs = config.as_dict()
    memory = knobs.get(MEMORY_KNOB)
    if memory is not None and price.usd_per_gb_s is not None:
        usd_per_s = float(memory) / 1024.0 * price.usd_per_gb_s
    else:
        usd_per_s = config.slots * price.usd_per_slot_s
    profile = store.profile(op, config)
    return Option(
        config=config,
        backend=config.backend,
        slots=slots,
        call_batch=config.call_batch,
        accuracy=profile.accuracy,
        profile=profile,
        drift=store.ops[op].drift,
        usd_per_s=usd_per_s,
        usd_fee=price.usd_per_invocation,
        granularity_s=price.granularity_s,
    )
