"""The block types of llama-prefect: backends, prices and where profiles live.

Save one of each under a name (in Python, or in the Prefect UI once the types are
registered with ``prefect block register -m llama_prefect.blocks``) and name it in a
flow run's parameters (``backend_settings``, ``price_catalog``, ``profile_store``):
the runner then reads it at the start of the run. A deployment thus switches backends,
prices or profiles by a parameter, with no change to code.

* `LlamaBackendSettings`: which backends the runner may use, and their slots.
* `LlamaPriceCatalog`: the price of each backend, with its version and source.
* `LlamaProfileStore`: the profile store file the runner plans from.

`load_run_blocks` reads the named blocks and says clearly when one is missing.

Note:
    The project has no public home yet. `PROJECT_URL` names the place its repository
    is meant to be published; until it is, the block documentation links lead
    nowhere and the UI shows no logo (the logo ships in the package as
    ``llama_prefect/data/logo.png``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, field_validator

from llama_prefect.core.pricing import BackendPrice, PriceCatalog
from llama_prefect.errors import ConfigurationError

PROJECT_URL = "https://github.com/llama-prefect/llama-prefect"
DOCS_URL = f"{PROJECT_URL}/blob/main/docs/deploy.md"
LOGO_URL = f"{PROJECT_URL}/raw/main/llama_prefect/data/logo.png"


class LlamaBackendSettings(Block):
    """Which backends the Llama task runner may place invocations on, and their slots.

    A backend named here but absent on the machine that runs the flow (local-gpu
    without a CUDA device) is left out of the run.
    """

    _block_type_name: ClassVar[str] = "Llama Backend Settings"
    _block_type_slug: ClassVar[str] = "llama-backend-settings"
    _logo_url: ClassVar[Any] = LOGO_URL
    _documentation_url: ClassVar[Any] = DOCS_URL
    _code_example: ClassVar[str] = """
    from llama_prefect.blocks import LlamaBackendSettings

    backend_settings = LlamaBackendSettings.load("BLOCK_NAME")
    print(backend_settings.enabled, backend_settings.cpu_slots)
    """

    enabled: list[str] = Field(
        default_factory=lambda: ["local-cpu", "local-gpu"],
        title="Enabled backends",
        description="Backends the runner may use, by name (local-cpu, local-gpu).",
    )
    cpu_slots: int | None = Field(
        default=None,
        ge=1,
        title="CPU slots",
        description="Invocations local-cpu runs at once; empty for one per usable "
        "core.",
    )
    gpu_slots: int | None = Field(
        default=None,
        ge=1,
        title="GPU slots",
        description="Invocations local-gpu runs at once; empty for one per CUDA "
        "device.",
    )

    @field_validator("enabled")
    @classmethod
    def _some_backend(cls, value: list[str]) -> list[str]:
        if not value or any(not name for name in value):
            raise ValueError(
                f"enabled must name at least one backend, but got {value!r}; give "
                "e.g. ['local-cpu']"
            )
        return list(dict.fromkeys(value))


class LlamaBackendPrice(BaseModel):
    """The price of one backend."""

    usd_per_slot_s: float = Field(
        ge=0,
        title="USD per slot-second",
        description="Dollars per second that one slot is held.",
    )
    usd_per_invocation: float = Field(
        default=0.0,
        ge=0,
        title="USD per invocation",
        description="Dollars per invocation (a request fee).",
    )
    usd_per_gb_s: float | None = Field(
        default=None,
        ge=0,
        title="USD per GB-second",
        description="Dollars per GB-second of memory, for backends billed by memory "
        "(empty for the others).",
    )
    granularity_s: float = Field(
        default=0.0,
        ge=0,
        title="Billing granularity (s)",
        description="Each invocation's duration is rounded up to a multiple of this; "
        "0 bills exact durations.",
    )
    pool_granularity_s: float = Field(
        default=0.0,
        ge=0,
        title="Pool billing granularity (s)",
        description="For a pool of instances billed while up, instance time is "
        "rounded up to this.",
    )
    minimum_s: float = Field(
        default=0.0,
        ge=0,
        title="Minimum billed time (s)",
        description="Least billed time of one instance start.",
    )
    basis: str = Field(
        default="",
        title="Basis",
        description="How the price was derived.",
    )


class LlamaPriceCatalog(Block):
    """The price of every backend the Llama task runner may use.

    Local runs are priced as the same work would cost on the cloud, so their reports
    still say what a run cost.
    """

    _block_type_name: ClassVar[str] = "Llama Price Catalog"
    _block_type_slug: ClassVar[str] = "llama-price-catalog"
    _logo_url: ClassVar[Any] = LOGO_URL
    _documentation_url: ClassVar[Any] = DOCS_URL
    _code_example: ClassVar[str] = """
    from llama_prefect.blocks import LlamaPriceCatalog

    price_catalog = LlamaPriceCatalog.load("BLOCK_NAME")
    catalog = price_catalog.to_catalog()
    """

    version: str = Field(
        title="Version",
        description="Date or tag of these prices, e.g. 2026-12-01.",
    )
    source: str = Field(
        default="",
        title="Source",
        description="Where the prices come from.",
    )
    backends: dict[str, LlamaBackendPrice] = Field(
        title="Backends",
        description="The price of each backend, by backend name.",
    )

    @classmethod
    def from_catalog(cls, catalog: PriceCatalog | None = None) -> LlamaPriceCatalog:
        """A block holding `catalog` (default: the price file in the package)."""
        catalog = catalog or PriceCatalog.load()
        return cls(
            version=catalog.version,
            source=catalog.source,
            backends={
                name: LlamaBackendPrice(**dataclasses.asdict(price))
                for name, price in catalog.prices.items()
            },
        )

    def to_catalog(self) -> PriceCatalog:
        """The prices as the cost model uses them."""
        fields = {f.name for f in dataclasses.fields(BackendPrice)}
        prices = {
            name: BackendPrice(**p.model_dump(include=fields))
            for name, p in self.backends.items()
        }
        return PriceCatalog(prices, version=self.version, source=self.source)


class LlamaProfileStore(Block):
    """Where the Llama task runner reads the profiles it plans from.

    The profiles are the JSON file that `llama-prefect profile` writes; a run corrects
    them with what its invocations took and, unless told not to, writes them back.
    """

    _block_type_name: ClassVar[str] = "Llama Profile Store"
    _block_type_slug: ClassVar[str] = "llama-profile-store"
    _logo_url: ClassVar[Any] = LOGO_URL
    _documentation_url: ClassVar[Any] = DOCS_URL
    _code_example: ClassVar[str] = """
    from llama_prefect.blocks import LlamaProfileStore

    profile_store = LlamaProfileStore.load("BLOCK_NAME")
    print(profile_store.path)
    """

    path: str = Field(
        title="Path",
        description="The profile store file or s3:// URI; a relative path is taken "
        "from the flow run's working folder.",
    )
    save_corrected: bool = Field(
        default=True,
        title="Save corrected profiles",
        description="Write the profiles back after each run, corrected by what its "
        "invocations took.",
    )

    @field_validator("path")
    @classmethod
    def _local_path(cls, value: str) -> str:
        if not value:
            raise ValueError("path must name the profile store file, but is empty")
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(
                f"path must be a local file or an s3:// URI, but got {value!r}"
            )
        return value


@dataclass(frozen=True)
class RunBlocks:
    """The blocks a run named, loaded (None where it named none)."""

    backends: LlamaBackendSettings | None = None
    prices: LlamaPriceCatalog | None = None
    profiles: LlamaProfileStore | None = None


def load_run_blocks(
    *,
    backend_settings: str | None = None,
    price_catalog: str | None = None,
    profile_store: str | None = None,
) -> RunBlocks:
    """Loads the blocks a run names.

    Raises:
        ConfigurationError: When a named block does not exist or does not load.
    """
    return RunBlocks(
        backends=_load(LlamaBackendSettings, backend_settings),
        prices=_load(LlamaPriceCatalog, price_catalog),
        profiles=_load(LlamaProfileStore, profile_store),
    )


def _load(kind: type[Block], name: str | None) -> Any:
    if name is None:
        return None
    try:
        return kind.load(name)
    except ValueError as exc:
        raise ConfigurationError(
            f"no {kind.get_block_type_slug()} block named {name!r} could be loaded "
            f"({exc}); save one with {kind.__name__}(...).save({name!r}) or create it "
            "in the Prefect UI"
        ) from None
