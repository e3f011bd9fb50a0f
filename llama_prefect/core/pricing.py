"""The cost model: what one invocation costs on each backend.

Prices come from a versioned data file (`llama_prefect/data/prices.json` by default)
that names its source and date, because cloud prices change. Every backend is priced
per slot second (a slot is one vCPU, one GPU, or one Lambda function of 1769 MB) plus a
fee per invocation. Local backends carry the price of the same work on the cloud, so a
local run still reports what it would have cost.

A backend priced per GB-second (Lambda) charges a configuration with a ``memory_mb``
knob for its memory instead of its slots, and a backend with a billing granularity
rounds each invocation's duration up to it (Lambda bills per millisecond).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_prefect.errors import ConfigurationError

if TYPE_CHECKING:
    from llama_prefect.core.pipeline import Configuration

#: Knob that sets the memory of a serverless function, in MB.
MEMORY_KNOB = "memory_mb"


@dataclass(frozen=True)
class BackendPrice:
    """Price of one backend.

    Attributes:
        usd_per_slot_s: Dollars per second that one slot is held.
        usd_per_invocation: Dollars per invocation (request fee).
        usd_per_gb_s: Dollars per GB-second of memory, for backends billed by
            memory (a configuration's ``memory_mb`` knob; GB = 1024 MB).
        granularity_s: Each invocation's duration is rounded up to a multiple of
            this, in seconds; 0 bills exact durations.
        pool_granularity_s: For a pool of instances billed while up (busy or
            idle), the instance time is rounded up to this, in seconds.
        minimum_s: Least billed time of one instance start, in seconds (per-second
            instances bill at least a minute).
    """

    usd_per_slot_s: float
    usd_per_invocation: float = 0.0
    usd_per_gb_s: float | None = None
    granularity_s: float = 0.0
    pool_granularity_s: float = 0.0
    minimum_s: float = 0.0

    def billed_s(self, duration_s: float) -> float:
        """`duration_s` rounded up to the billing granularity."""
        if self.granularity_s <= 0 or duration_s <= 0:
            return max(duration_s, 0.0)
        steps = math.ceil(duration_s / self.granularity_s - 1e-9)
        return steps * self.granularity_s

    def instance_usd(self, up_s: float, slots: int = 1) -> float:
        """Dollars for one instance of `slots` slots that was up for `up_s` seconds."""
        billed_s = max(up_s, self.minimum_s)
        if self.pool_granularity_s > 0:
            billed_s = math.ceil(billed_s / self.pool_granularity_s - 1e-9) * (
                self.pool_granularity_s
            )
        return billed_s * slots * self.usd_per_slot_s


class PriceCatalog:
    """Prices of every backend, read from a versioned file.

    Args:
        prices: Backend name to its price.
        version: Date or tag of the price file.
        source: Where the prices come from.
    """

    def __init__(
        self, prices: dict[str, BackendPrice], *, version: str = "", source: str = ""
    ) -> None:
        self.prices = prices
        self.version = version
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriceCatalog:
        """Reads a price file; the one shipped with the package when `path` is None."""
        if path is None:
            text = resources.files("llama_prefect.data").joinpath("prices.json")
            data: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
        else:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        prices = {name: _backend_price(raw) for name, raw in data["backends"].items()}
        return cls(
            prices, version=data.get("version", ""), source=data.get("source", "")
        )

    def price(self, backend: str) -> BackendPrice:
        """The price of `backend`; raises with the known names if it has none."""
        try:
            return self.prices[backend]
        except KeyError:
            raise ConfigurationError(
                f"no price for backend {backend!r}; the price file knows "
                f"{sorted(self.prices)}. Add the backend to the price file."
            ) from None

    def cost_usd(
        self,
        backend: str,
        latency_s: float,
        slots: int = 1,
        memory_mb: float | None = None,
    ) -> float:
        """Dollars for one invocation holding `slots` slots for `latency_s` seconds.

        Args:
            backend: The backend's name.
            latency_s: How long the invocation held its slots, in seconds.
            slots: Slots it held; ignored when it is billed by memory.
            memory_mb: Its memory, for a backend priced per GB-second; None bills
                slots.
        """
        price = self.price(backend)
        billed_s = price.billed_s(latency_s)
        if memory_mb is not None and price.usd_per_gb_s is not None:
            return billed_s * memory_mb / 1024.0 * price.usd_per_gb_s + (
                price.usd_per_invocation
            )
        return billed_s * slots * price.usd_per_slot_s + price.usd_per_invocation

    def config_cost_usd(self, config: Configuration, latency_s: float) -> float:
        """Dollars for one invocation of `config` running `latency_s` seconds.

        Backends priced per GB-second bill a configuration with a ``memory_mb`` knob
        by memory and duration (rounded up to the billing granularity, 1 ms for
        Lambda); every other backend per slot.
        """
        return self.config_usd(config.backend, config.as_dict(), latency_s)

    def memory_cost_usd(self, backend: str, billed_ms: int, memory_mb: float) -> float:
        """Dollars for one invocation billed `billed_ms` ms at `memory_mb` MB.

        Raises:
            ConfigurationError: The backend has no price per GB-second.
        """
        price = self.price(backend)
        if price.usd_per_gb_s is None:
            raise ConfigurationError(
                f"backend {backend!r} has no usd_per_gb_s in the price file; add it "
                "to price the backend by memory and duration"
            )
        gb_s = billed_ms / 1000.0 * memory_mb / 1024.0
        return gb_s * price.usd_per_gb_s + price.usd_per_invocation

    def config_usd(
        self, backend: str, knobs: dict[str, Any], latency_s: float
    ) -> float:
        """Dollars for one invocation of a configuration (its threads or memory)."""
        memory = knobs.get(MEMORY_KNOB)
        return self.cost_usd(
            backend,
            latency_s,
            int(knobs.get("threads", 1)),
            None if memory is None else float(memory),
        )


def _backend_price(raw: dict[str, Any]) -> BackendPrice:
    gb_s = raw.get("usd_per_gb_s")
    return BackendPrice(
        usd_per_slot_s=float(raw["usd_per_slot_s"]),
        usd_per_invocation=float(raw.get("usd_per_invocation", 0.0)),
        usd_per_gb_s=None if gb_s is None else float(gb_s),
        granularity_s=float(raw.get("granularity_s", 0.0)),
        pool_granularity_s=float(raw.get("pool_granularity_s", 0.0)),
        minimum_s=float(raw.get("minimum_s", 0.0)),
    )
