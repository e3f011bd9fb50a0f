"""The embedded default: local CPU slots and, where torch sees one, a local CUDA device.

`local-cpu` offers one slot per CPU core. `local-gpu` exists only when torch is
installed and reports a CUDA device; on any other machine it has no slots and is never
chosen. Both run Prefect's own task engine in the runner's threads.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from functools import lru_cache

from llama_prefect.backends.base import Backend

logger = logging.getLogger(__name__)

LOCAL_CPU = "local-cpu"
LOCAL_GPU = "local-gpu"


def local_cpu(slots: int | None = None) -> Backend:
    """The local CPU backend with `slots` slots (default: the usable cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return Backend(LOCAL_CPU, max(1, slots or cores or os.cpu_count() or 1))


def local_gpu(slots: int | None = None) -> Backend:
    """The local GPU backend: one slot per CUDA device, none without one."""
    devices = cuda_device_count()
    capacity = 0 if devices == 0 else (slots or devices)
    return Backend(LOCAL_GPU, capacity)


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """CUDA devices torch can see; 0 when torch is missing or sees none."""
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    logger.debug("torch sees %d CUDA device(s)", count)
    return int(count)
