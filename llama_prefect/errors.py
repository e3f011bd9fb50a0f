"""The exceptions llama-prefect raises.

Every error we raise derives from `LlamaError` and also from the builtin that fits, so
callers may catch either. Messages say what was wrong, the value received, and how to
fix it.
"""

from __future__ import annotations


class LlamaError(Exception):
    """Root of every error raised by llama-prefect."""


class ConfigurationError(LlamaError, ValueError):
    """A pipeline, knob space, setting or run parameter is invalid."""


class ProfileError(LlamaError, ValueError):
    """A profile store is missing, unreadable or lacks what a decision needs."""


class VideoError(LlamaError, ValueError):
    """A video cannot be opened, probed or decoded.

    Note:
        A `VideoError` is deterministic: the same file fails the same way again, so the
        runner does not retry it.
    """


class BackendUnavailableError(LlamaError, RuntimeError):
    """A backend cannot take work on this machine (for example no CUDA device)."""
