"""Local backends: CPU slots from the machine, a GPU backend only where CUDA is."""

from __future__ import annotations

import pytest

from llama_prefect.backends import local


@pytest.fixture(autouse=True)
def _fresh_cuda_count():
    local.cuda_device_count.cache_clear()
    yield
    local.cuda_device_count.cache_clear()


def test_cpu_backend_has_one_slot_per_usable_core_unless_told():
    assert local.local_cpu().capacity >= 1
    assert local.local_cpu(3).capacity == 3


def test_gpu_backend_has_no_slots_and_is_unavailable_without_cuda(monkeypatch):
    monkeypatch.setattr(local, "cuda_device_count", lambda: 0)
    gpu = local.local_gpu()
    assert gpu.capacity == 0 and not gpu.available()
    assert local.local_gpu(4).capacity == 0  # asking for slots does not make a GPU


def test_gpu_backend_offers_one_slot_per_device(monkeypatch):
    monkeypatch.setattr(local, "cuda_device_count", lambda: 2)
    assert local.local_gpu().capacity == 2
    assert local.local_gpu().available()


def test_runner_offers_local_gpu_only_when_cuda_is_seen(monkeypatch):
    from llama_prefect.flows.crossing import PIPELINE

    from llama_prefect.runner import LlamaTaskRunner

    monkeypatch.setattr(local, "cuda_device_count", lambda: 0)
    with LlamaTaskRunner(PIPELINE, cpu_slots=2) as runner:
        assert set(runner._backends) == {"local-cpu"}


@pytest.mark.gpu
def test_cuda_device_is_counted_where_torch_sees_one():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    assert local.cuda_device_count() == torch.cuda.device_count()
