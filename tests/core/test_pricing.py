"""Tests of `llama_prefect.core.pricing`: the shipped price file and the cost model."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from llama_prefect.core.pricing import BackendPrice, PriceCatalog
from llama_prefect.errors import ConfigurationError, LlamaError


def _raw_file() -> dict:
    text = resources.files("llama_prefect.data").joinpath("prices.json")
    return json.loads(text.read_text(encoding="utf-8"))


def test_shipped_file_loads_with_every_backend_it_lists():
    raw = _raw_file()
    catalog = PriceCatalog.load()

    assert set(catalog.prices) == set(raw["backends"])
    assert {"local-cpu", "local-gpu", "lambda"} <= set(catalog.prices)
    for name, entry in raw["backends"].items():
        price = catalog.price(name)
        assert price.usd_per_slot_s == entry["usd_per_slot_s"]
        assert price.usd_per_invocation == entry.get("usd_per_invocation", 0.0)
        assert price.usd_per_slot_s > 0
    assert catalog.version == raw["version"] != ""
    assert catalog.source == raw["source"] != ""


def test_shipped_gpu_costs_more_per_second_than_cpu():
    catalog = PriceCatalog.load()
    cpu = catalog.price("local-cpu").usd_per_slot_s
    assert catalog.price("local-gpu").usd_per_slot_s > cpu


def test_shipped_lambda_slot_matches_its_gb_second_price():
    # A slot is one function of 1769 MB: 1.769 GB x the price per GB-second.
    entry = _raw_file()["backends"]["lambda"]
    assert entry["usd_per_slot_s"] == pytest.approx(1.769 * entry["usd_per_gb_s"])


def test_cost_with_a_custom_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "version": "test",
                "backends": {
                    "pool": {"usd_per_slot_s": 0.5, "usd_per_invocation": 0.01},
                    "free-fee": {"usd_per_slot_s": 0.25},
                },
            }
        ),
        encoding="utf-8",
    )
    catalog = PriceCatalog.load(path)

    # 3 s on 2 slots at $0.5 per slot second, plus the $0.01 fee: 3 x 2 x 0.5 + 0.01
    assert catalog.cost_usd("pool", 3.0, slots=2) == pytest.approx(3.01)
    # one slot by default; no fee when the file gives none: 4 x 1 x 0.25
    assert catalog.cost_usd("free-fee", 4.0) == pytest.approx(1.0)
    # nothing ran: the fee alone
    assert catalog.cost_usd("pool", 0.0) == pytest.approx(0.01)
    assert catalog.version == "test"
    assert catalog.source == ""


def test_cost_with_the_shipped_file():
    raw = _raw_file()["backends"]["local-gpu"]
    catalog = PriceCatalog.load()
    # 10 s on 2 GPUs: 10 x 2 x price per slot second + fee
    expected = 10.0 * 2 * raw["usd_per_slot_s"] + raw.get("usd_per_invocation", 0.0)
    assert catalog.cost_usd("local-gpu", 10.0, slots=2) == pytest.approx(expected)


def test_unknown_backend_names_the_known_ones():
    catalog = PriceCatalog(
        {"local-cpu": BackendPrice(0.1), "lambda": BackendPrice(0.2, 1e-7)}
    )
    with pytest.raises(ConfigurationError) as info:
        catalog.cost_usd("ecs-gpu-big", 1.0)
    message = str(info.value)
    assert "'ecs-gpu-big'" in message
    assert "local-cpu" in message and "lambda" in message
    assert "price file" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LlamaError)


def test_lambda_is_billed_per_ms_by_memory():
    catalog = PriceCatalog.load()
    lam = catalog.price("lambda")
    assert lam.granularity_s == 0.001 and lam.usd_per_gb_s is not None
    # 1.2341 s rounds up to 1.235 s; 512 MB = 0.5 GB; plus the request fee
    expected = 1.235 * 0.5 * lam.usd_per_gb_s + lam.usd_per_invocation
    assert catalog.cost_usd("lambda", 1.2341, memory_mb=512) == pytest.approx(expected)
    assert catalog.config_usd("lambda", {"memory_mb": 512}, 1.2341) == pytest.approx(
        expected
    )


def test_pools_bill_instance_time_with_a_minimum():
    gpu = PriceCatalog.load().price("ecs-gpu")
    # up 10 s: billed the one-minute minimum; up 90.2 s: 91 s (per second)
    assert gpu.instance_usd(10.0) == pytest.approx(60 * gpu.usd_per_slot_s)
    assert gpu.instance_usd(90.2) == pytest.approx(91 * gpu.usd_per_slot_s)
    # an invocation's share is not rounded: pools round instance time only
    assert PriceCatalog.load().cost_usd("ecs-gpu", 0.25) == pytest.approx(
        0.25 * gpu.usd_per_slot_s
    )


def test_config_cost_follows_its_memory_or_threads():
    from llama_prefect.core.pipeline import Configuration

    catalog = PriceCatalog.load()
    lam = Configuration.of("lambda", {"memory_mb": 1024})
    expected = catalog.memory_cost_usd("lambda", 2001, 1024)  # 2.0003 s -> 2001 ms
    assert catalog.config_cost_usd(lam, 2.0003) == pytest.approx(expected)
    cpu2 = Configuration.of("local-cpu", {"threads": 2})
    assert catalog.config_cost_usd(cpu2, 3.0) == pytest.approx(
        catalog.cost_usd("local-cpu", 3.0, slots=2)
    )
    with pytest.raises(ConfigurationError, match="usd_per_gb_s"):
        catalog.memory_cost_usd("local-cpu", 1000, 1024)
