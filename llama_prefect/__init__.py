"""llama-prefect: the Llama method for video analytics pipelines on Prefect.

Importing this package is cheap: Prefect, torch, decoders and Optuna load only when the
part that needs them is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
