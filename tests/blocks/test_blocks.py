"""Our block types: Prefect's block standards, validation, and the runner reading them.

Prefect's standard suite fetches each block's logo over the network to check that it
is square and of a sensible size. Tests here reach only loopback, so the fetch of our
logo's URL is answered with the logo that ships in the package; the suite's own
checks then run unchanged on it.
"""

from __future__ import annotations

import io
import time
from importlib import resources
from pathlib import Path

import pytest
from llama_prefect.blocks import (
    LlamaBackendSettings,
    LlamaPriceCatalog,
    LlamaProfileStore,
    load_run_blocks,
)
from llama_prefect.blocks.types import LOGO_URL
from prefect import flow, task
from prefect.context import FlowRunContext
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import ValidationError

from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

BLOCKS = [LlamaBackendSettings, LlamaPriceCatalog, LlamaProfileStore]


def _packaged_logo(url, *args, **kwargs):
    if str(url) != LOGO_URL:
        raise AssertionError(f"tests reach only loopback; refused to fetch {url}")
    data = resources.files("llama_prefect.data").joinpath("logo.png").read_bytes()
    return io.BytesIO(data)


@pytest.mark.parametrize("block", BLOCKS)
class TestOurBlocksMeetPrefectsStandards(BlockStandardTestSuite):
    @pytest.fixture(autouse=True)
    def _logo_from_the_package(self, monkeypatch):
        import prefect.testing.standard_test_suites.blocks as suite

        monkeypatch.setattr(suite, "urlopen", _packaged_logo)

    @pytest.fixture
    def block(self, block):
        return block


@pytest.mark.parametrize("block", BLOCKS)
def test_every_field_has_a_title(block):
    for name, field in block.model_fields.items():
        assert field.title, f"{block.__name__}.{name} has no title"


def test_the_price_catalog_block_round_trips_the_shipped_prices():
    shipped = PriceCatalog.load()
    catalog = LlamaPriceCatalog.from_catalog().to_catalog()
    assert catalog.version == shipped.version
    assert catalog.prices == shipped.prices


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: LlamaBackendSettings(enabled=[]), "enabled"),
        (lambda: LlamaBackendSettings(cpu_slots=0), "cpu_slots"),
        (lambda: LlamaProfileStore(path="gs://bucket/p.json"), "path"),
        (lambda: LlamaProfileStore(path=""), "path"),
    ],
)
def test_bad_block_values_are_refused(make, named):
    with pytest.raises(ValidationError, match=named):
        make()


# -- the runner configured from blocks ---------------------------------------------

PIPE = Pipeline("blocky")
PIPE.add_op(OpSpec("step", knobs={"mode": ("only",)}, group_of=lambda p: "g"))
ONLY = Configuration.of("local-cpu", {"mode": "only"})


@task(name="step")
def step(i: int, mode: str = "only") -> int:
    time.sleep(0.05)
    return i


setattr(step.fn, OP_ATTRIBUTE, "step")


@flow
def blocky(
    n: int = 2,
    price_catalog: str | None = None,
    backend_settings: str | None = None,
    profile_store: str | None = None,
) -> dict:
    values = [f.result() for f in [step.submit(i) for i in range(n)]]
    runner = FlowRunContext.get().task_runner
    return {
        "values": values,
        "records": runner.records(),
        "profile_path": str(runner.profile_path),
        "slots": {k: b.capacity for k, b in runner.scheduler.backends.items()},
        "price_version": runner.scheduler.prices.version,
    }


def _profiles(path: Path) -> Path:
    store = ProfileStore("blocky")
    store.seed("step", ONLY, 0.05)
    return store.save(path)


@pytest.mark.prefect
def test_blocks_named_in_the_parameters_switch_prices_slots_and_profiles(
    prefect_server, tmp_path
):
    ignored = _profiles(tmp_path / "constructor.json")
    used = _profiles(tmp_path / "from-block.json")
    dear = LlamaPriceCatalog.from_catalog()
    dear.version = "test-dear"
    dear.backends["local-cpu"].usd_per_slot_s *= 1000
    dear.save("dear", overwrite=True)
    LlamaBackendSettings(enabled=["local-cpu"], cpu_slots=1).save(
        "one-slot", overwrite=True
    )
    LlamaProfileStore(path=str(used), save_corrected=False).save(
        "elsewhere", overwrite=True
    )
    runner = LlamaTaskRunner(PIPE, profile_path=ignored)
    plain = blocky.with_options(task_runner=runner)()
    named = blocky.with_options(task_runner=runner)(
        price_catalog="dear", backend_settings="one-slot", profile_store="elsewhere"
    )

    assert plain["profile_path"] == str(ignored) and named["profile_path"] == str(used)
    assert named["slots"] == {"local-cpu": 1}
    assert named["price_version"] == "test-dear"
    cheap = sum(r["cost_usd"] for r in plain["records"]) / len(plain["records"])
    costly = sum(r["cost_usd"] for r in named["records"]) / len(named["records"])
    assert costly / cheap > 100  # same work, a thousand times the price per second
    assert ProfileStore.load(used).ops["step"].configs[ONLY.key].observations == 0


@pytest.mark.prefect
def test_a_block_name_that_was_never_saved_fails_with_the_fix(prefect_server):
    with pytest.raises(ConfigurationError, match="never-saved.*save"):
        load_run_blocks(price_catalog="never-saved")
