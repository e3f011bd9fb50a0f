"""Backends: where invocations run (local CPU and GPU now; Lambda and ECS later)."""

from llama_prefect.backends.base import Backend
from llama_prefect.backends.local import LOCAL_CPU, LOCAL_GPU, local_cpu, local_gpu

__all__ = ["Backend", "LOCAL_CPU", "LOCAL_GPU", "local_cpu", "local_gpu"]
