"""The decode worker: a child process that probes and decodes for its parent.

Started by `llama_prefect.video.isolation` as ``python -m llama_prefect.video._worker
FD PARENT_PID`` with one end of a socket pair as file descriptor FD. Once the
decoders are imported it sends ``"ready"``; then it answers requests ``(kind, kwargs,
fault, shared_shape)`` one at a time until the socket closes. Each reply is ``(status,
payload, shape, peak_rss_mb, rss_mb)``; for a result with frames, the
frame bytes follow as one raw message, so they are never pickled, or, when the parent
sent a shared-memory file with the request, the frames are written straight into it
and ``shape`` is ``"shared"``.

The worker asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a
decoder that hangs cannot outlive a flow process that was killed. It ignores SIGINT:
a Ctrl-C in the terminal reaches the whole process group, and it is the parent's to
act on (the worker ends when its parent does).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from typing import Any

import numpy as np

_PR_SET_PDEATHSIG = 1
_KB_PER_MB = 1024.0


def _probe(path: str) -> tuple[Any, None]:
    from llama_prefect.video.segments import probe_here

    return probe_here(path), None


def _read_frames(**kwargs: Any) -> tuple[list[int], np.ndarray]:
    from llama_prefect.video.decoders import read_frames_here

    frames = read_frames_here(**kwargs)
    return frames.indices, frames.array


def _read_batch(**kwargs: Any) -> tuple[list[int], np.ndarray]:
    from llama_prefect.video.decoders import read_batch_here

    frames = read_batch_here(**kwargs)
    return frames.indices, frames.array


HANDLERS: dict[str, Callable[..., tuple[Any, np.ndarray | None]]] = {
    "probe": _probe,
    "read_frames": _read_frames,
    "read_batch": _read_batch,
}
"""What a worker can do, by request kind."""


def main(argv: list[str]) -> int:
    """Serves requests on the socket named in `argv` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    _die_with_parent(int(argv[2]))
    _preload()
    conn.send("ready")
    while True:
        try:
            kind, kwargs, fault, shared_shape = conn.recv()
            shared_fd = None if shared_shape is None else recv_handle(conn)
        except (EOFError, OSError):
            return 0
        _serve(conn, kind, kwargs, fault, _shared(shared_fd, shared_shape))


def _shared(fd: int | None, shape: tuple[int, ...] | None) -> np.ndarray | None:
    """The parent's shared-memory file as a writable uint8 array of `shape`."""
    if fd is None or shape is None:
        return None
    try:
        mapping = mmap.mmap(fd, int(np.prod(shape)))
    finally:
        os.close(fd)
    return np.frombuffer(mapping, dtype=np.uint8).reshape(shape)


def _serve(
    conn: Connection,
    kind: str,
    kwargs: dict[str, Any],
    fault: Any,
    out: np.ndarray | None,
) -> None:
    _reset_peak()
    try:
        _inject(fault)
        meta, array = HANDLERS[kind](**kwargs, **({} if out is None else {"out": out}))
    except Exception as exc:
        conn.send(("error", _error_payload(exc), None, _peak_mb(), _rss_mb()))
        return
    if out is not None and array is out:
        conn.send(("ok", meta, "shared", _peak_mb(), _rss_mb()))
        return
    shape = None if array is None else (array.shape, array.dtype.str)
    conn.send(("ok", meta, shape, _peak_mb(), _rss_mb()))
    if array is not None and array.size:
        conn.send_bytes(np.ascontiguousarray(array).data.cast("B"))


def _error_payload(exc: BaseException) -> tuple[str, Any]:
    try:
        return "pickle", pickle.dumps(exc)
    except Exception:
        return "text", f"{type(exc).__name__}: {exc}"


def _inject(fault: str | None) -> None:
    """Makes the fault that `isolation` asked for happen, here in the worker."""
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "oserror":
        raise OSError("injected I/O error (LLAMA_PREFECT_DECODE_FAULTS)")


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _preload() -> None:
    """Imports the decoders once, before the first request needs them."""
    import av  # noqa: F401
    import cv2  # noqa: F401

    import llama_prefect.video.decoders  # noqa: F401


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return float(line.split()[1]) / _KB_PER_MB
    except OSError:
        pass
    return 0.0


def _peak_mb() -> float:
    return _status_mb("VmHWM:")


def _rss_mb() -> float:
    return _status_mb("VmRSS:")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
