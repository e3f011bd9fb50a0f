"""The cost model: what one invocation costs on each backend.

Prices come from a versioned data file (`llama_prefect/data/prices.json` by default)
that names its source and date, because cloud prices change. Every backend is priced
per slot second (a slot is one vCPU, one GPU, or one Lambda function of 1769 MB) plus a
fee per invocation. Local backends carry the price of the same work on the cloud, so a
local run still reports what it would have cost.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llama_prefect.errors import ConfigurationError


@dataclass(frozen=True)
class BackendPrice:
    """Price of one backend.

    Attributes:
        usd_per_slot_s: Dollars per second that one slot is held.
        usd_per_invocation: Dollars per invocation (request fee).
    """

    usd_per_slot_s: float
    usd_per_invocation: float = 0.0


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
        prices = {
            name: BackendPrice(
                usd_per_slot_s=float(raw["usd_per_slot_s"]),
                usd_per_invocation=float(raw.get("usd_per_invocation", 0.0)),
            )
            for name, raw in data["backends"].items()
        }
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

    def cost_usd(self, backend: str, latency_s: float, slots: int = 1) -> float:
        """Dollars for one invocation holding `slots` slots for `latency_s` seconds."""
        price = self.price(backend)
        return latency_s * slots * price.usd_per_slot_s + price.usd_per_invocation
