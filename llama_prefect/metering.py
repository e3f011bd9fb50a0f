"""What one invocation used, measured where it happens and read by the runner.

The runner opens a `Meter` around each invocation (`metered()`); code that runs inside
it, in the same thread or a context copied from it, adds what it measured with
`current()`. The video layer adds the peak resident memory of the decoder process and
the bytes of frames it handed back for every decode call; the retry condition of the
pipeline's tasks counts retries.

Without an open meter, `current()` returns a throw-away one, so library code never has
to check.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Meter", "current", "metered"]


@dataclass
class Meter:
    """Resources one invocation used.

    Attributes:
        decode_calls: Decode calls made (probe or frame reads).
        decode_peak_rss_mb: Highest peak resident memory of the decoder process over
            those calls, in MB (0 when decoding ran in this process).
        frames_mb: Most frame data, in MB, that one decode call handed back.
        retries: Times a failed try of the invocation was retried.
    """

    decode_calls: int = 0
    decode_peak_rss_mb: float = 0.0
    frames_mb: float = 0.0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_decode(self, *, peak_rss_mb: float, frames_mb: float) -> None:
        """Records one decode call's peak memory and frame bytes, in MB."""
        with self._lock:
            self.decode_calls += 1
            self.decode_peak_rss_mb = max(self.decode_peak_rss_mb, peak_rss_mb)
            self.frames_mb = max(self.frames_mb, frames_mb)

    def add_retry(self) -> None:
        """Records that a failed try is retried."""
        with self._lock:
            self.retries += 1

    @property
    def peak_memory_mb(self) -> float:
        """Estimated peak memory of the invocation: decoder peak plus frames held."""
        return self.decode_peak_rss_mb + self.frames_mb

    def as_record(self) -> dict[str, float | int]:
        """The fields a plan record carries."""
        return {
            "decode_calls": self.decode_calls,
            "decode_peak_rss_mb": round(self.decode_peak_rss_mb, 1),
            "frames_mb": round(self.frames_mb, 1),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "retries": self.retries,
        }


_current: contextvars.ContextVar[Meter | None] = contextvars.ContextVar(
    "llama_prefect_meter", default=None
)


def current() -> Meter:
    """The open meter of this context, or a new unattached one."""
    return _current.get() or Meter()


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    """Opens a meter for the code run inside the block and yields it."""
    meter = Meter()
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)
