"""Cloud backends switched on by environment variables, without code changes."""

from __future__ import annotations

import pytest

from llama_prefect.backends.aws_lambda import LambdaBackend
from llama_prefect.backends.cloud import backends_from_env
from llama_prefect.backends.ecs import WorkPoolBackend, seed_pool_profiles
from llama_prefect.core.pipeline import Configuration
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.errors import ConfigurationError


def test_no_variables_no_cloud_backends():
    assert backends_from_env({}) == []


def test_lambda_and_a_gpu_pool_from_the_environment():
    env = {
        "LLAMA_PREFECT_LAMBDA": "my-op-{memory_mb}",
        "LLAMA_PREFECT_LAMBDA_CONCURRENCY": "200",
        "LLAMA_PREFECT_GPU_DEPLOYMENT": "llama-remote-op/gpu-pool",
        "LLAMA_PREFECT_GPU_BACKEND": "gpu-pool",
        "LLAMA_PREFECT_GPU_SLOTS": "2",
        "LLAMA_PREFECT_STAGING_URI": "s3://my-bucket/staging",
    }
    lam, pool = backends_from_env(env)
    assert isinstance(lam, LambdaBackend) and isinstance(pool, WorkPoolBackend)
    assert lam.function_for(1769) == "my-op-1769" and lam.capacity == 200
    assert lam.staging_uri == "s3://my-bucket/staging"
    assert (pool.name, pool.capacity, pool.startup_s) == ("gpu-pool", 2, 3.0)
    assert pool.deployment == "llama-remote-op/gpu-pool"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LLAMA_PREFECT_LAMBDA": "f", "LLAMA_PREFECT_LAMBDA_CONCURRENCY": "x"},
            "whole",
        ),
        (
            {"LLAMA_PREFECT_LAMBDA": "f", "LLAMA_PREFECT_LAMBDA_CONCURRENCY": "0"},
            "least",
        ),
        ({"LLAMA_PREFECT_GPU_DEPLOYMENT": "a/b"}, "staging_uri"),
    ],
)
def test_bad_settings_say_what_to_fix(env, message):
    with pytest.raises(ConfigurationError, match=message):
        backends_from_env(env)


def test_gpu_pool_profiles_are_copied_from_a_local_gpu_only():
    store = ProfileStore("p")
    gpu = Configuration.of("local-gpu", {"device": "cuda", "sample_every": 2})
    store.seed("motion", gpu, 0.002, accuracy=0.95)
    store.seed("motion", Configuration.of("local-cpu", {"device": "cpu"}), 0.01)

    assert seed_pool_profiles(store, "motion") == 2
    pools = [c for c in store.configurations("motion") if c.backend != "local-cpu"]
    assert sorted(c.backend for c in pools) == ["ecs-gpu", "gpu-pool", "local-gpu"]
    for config in pools:
        assert config.as_dict() == gpu.as_dict()
        assert store.predict_s_per_unit("motion", config) == pytest.approx(0.002)
        assert store.profile("motion", config).accuracy == 0.95
