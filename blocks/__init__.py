"""Prefect block types for llama-prefect (installed as `llama_prefect.blocks`).

Register them with ``prefect block register -m llama_prefect.blocks``; a Prefect
server or worker that has llama-prefect installed also finds them on its own, through
the package's ``prefect.collections`` entry point. See `llama_prefect.blocks.types`.
"""

from llama_prefect.blocks.types import (
    LlamaBackendPrice,
    LlamaBackendSettings,
    LlamaPriceCatalog,
    LlamaProfileStore,
    RunBlocks,
    load_run_blocks,
)

__all__ = [
    "LlamaBackendPrice",
    "LlamaBackendSettings",
    "LlamaPriceCatalog",
    "LlamaProfileStore",
    "RunBlocks",
    "load_run_blocks",
]
