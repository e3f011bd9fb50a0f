"""The exceptions llama-prefect raises, and which of them are worth a retry.

Every error we raise derives from `LlamaError` and also from the builtin that fits, so
callers may catch either. Messages say what was wrong, the value received, and how to
fix it.

Failures fall in two kinds. A deterministic failure (`VideoError`,
`ConfigurationError`, ...) happens again on the same input and configuration, so
retrying it only spends time: it ends its invocation at once. A transient failure
(`TransientError`, and by default any error that is not ours, such as a network or
file-system `OSError`) may pass on a second try, so it is retried. `is_deterministic`
makes that call for any exception.
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
        A `VideoError` is deterministic: the same file fails the same way again, so it
        is never retried.
    """


class DecoderCrashError(VideoError):
    """A decoder died of a fatal signal (SIGSEGV, SIGABRT, ...) on a file.

    The decoding ran in a child process, so only that process died. Native decoders
    crash on the same bytes every time, so this is deterministic.
    """


class DecodeTimeoutError(VideoError):
    """A decoder ran past its time bound on a file and was killed.

    The bound is generous (see `llama_prefect.video.isolation`); a decoder that needs
    longer is taken to hang on that file, which it does again on a retry.
    """


class InputPathError(LlamaError, ValueError):
    """A video name, path or object key is unsafe to derive a result location from."""


class BackendUnavailableError(LlamaError, RuntimeError):
    """A backend cannot take work on this machine (for example no CUDA device)."""


class TransientError(LlamaError, RuntimeError):
    """A failure that may pass on a second try (a worker lost from outside, I/O).

    Invocations that fail with it are retried.
    """


class StorageError(LlamaError, OSError):
    """An object store (S3) refused a read, write or listing."""


class RemoteError(LlamaError, RuntimeError):
    """An op body failed on a remote backend (Lambda, a work pool).

    Attributes:
        error_type: The name of the exception raised on the remote side.
        deterministic: True when the same input would fail the same way again (a
            `VideoError` there, for instance), so it is not worth running elsewhere.
    """

    def __init__(
        self, message: str, *, error_type: str = "", deterministic: bool = False
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.deterministic = deterministic


class ReplanError(BackendUnavailableError):
    """A backend could not take or finish an invocation; plan it again elsewhere.

    Raised for throttling, timeouts, a duration limit that the invocation would pass,
    and placement failures (no GPU capacity). Nothing of the op ran to completion, so
    running it on another backend loses and duplicates nothing.

    Attributes:
        backend: The backend that refused.
        whole_backend: True when the backend as a whole is unavailable for a while
            (throttling, no capacity); False when only this invocation cannot run
            there (it would pass the backend's time limit).
        cooldown_s: Seconds the backend should not be planned on, when
            `whole_backend` is True.
        cost_usd: What the failed attempt was billed (a timed-out function is).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        whole_backend: bool = True,
        cooldown_s: float = 30.0,
        cost_usd: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.whole_backend = whole_backend
        self.cooldown_s = cooldown_s
        self.cost_usd = cost_usd


_DETERMINISTIC: tuple[type[BaseException], ...] = (
    ConfigurationError,
    ProfileError,
    VideoError,
    InputPathError,
    BackendUnavailableError,
    TypeError,
    ValueError,
)


def is_deterministic(error: BaseException) -> bool:
    """True when `error` would happen again on the same input, so no retry helps.

    Our own errors say so by their class: `TransientError` is retried, every other
    `LlamaError` is not. Of the rest, `TypeError` and `ValueError` (bugs or bad data)
    are deterministic, everything else (`OSError`, `TimeoutError`, `MemoryError`
    raised by a busy machine, ...) is taken as transient.
    """
    if isinstance(error, TransientError):
        return False
    if isinstance(error, RemoteError):  # the remote side said which it was
        return error.deterministic
    return isinstance(error, _DETERMINISTIC)
