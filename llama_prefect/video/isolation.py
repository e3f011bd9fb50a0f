"""Decoding in child processes, so a decoder that crashes or hangs ends one call only.

Native decoders can die of a segmentation fault on corrupt data, or loop forever on a
container that lies about itself. Run in the flow's own process, either would take the
whole archive down with it. So `probe` and `read_frames` send their work to a decode
worker: a long-lived child process (`python -m llama_prefect.video._worker`) that
decodes and hands back the frames, over a socket or, for arrays of `SHARED_MIN_BYTES`
or more, written straight into shared memory that this process maps. The parent
waits for each call at most a time bound; when the bound passes it kills the worker.
Then:

* a worker killed by a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) raises
  `DecoderCrashError`, a deterministic `VideoError` naming the file;
* a call past its bound raises `DecodeTimeoutError`, also deterministic;
* a worker that ended any other way (SIGKILL from the out-of-memory killer or an
  operator, a failed start) raises `TransientError`, which the pipeline retries;
* an error the decoder raised in the worker is raised again here as it was.

Workers are reused: a call takes an idle worker or starts one, and gives it back when
done. A worker whose resident memory passes `LLAMA_PREFECT_DECODE_WORKER_MAX_RSS_MB`
(default 1024) after a call is retired, so a decoder that leaks cannot grow without
bound. Each call reports the worker's peak resident memory during that call (Linux
resets the peak through ``/proc/self/clear_refs``) to the invocation's meter.

The time bound of a call is ``20 s + 0.05 s per frame-megapixel to decode``, about ten
times what a 2-core machine needs, so a slow machine is not mistaken for a hang; a new
worker has 30 s more to start before the call is sent. Settings, read at every call:

* ``LLAMA_PREFECT_DECODE_ISOLATION``: ``process`` (default) or ``off`` (decode in this
  process: no protection, no overhead);
* ``LLAMA_PREFECT_DECODE_TIMEOUT_S``: a fixed bound in seconds instead of the formula;
* ``LLAMA_PREFECT_DECODE_FAULTS``: faults to inject, for testing isolation:
  comma-separated ``KIND:GLOB`` or ``KINDxN:GLOB`` items, where KIND is ``crash``
  (SIGSEGV), ``hang``, ``kill`` (SIGKILL) or ``oserror``, GLOB matches the video's
  file name, and ``xN`` injects only into the first N calls for that item.
  Faults apply only with process isolation.

Note:
    A worker costs a Python process with the decoders imported (about 100 MB
    resident) per concurrent decode; idle workers beyond the number of cores are
    closed.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import fnmatch
import logging
import mmap
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import Any

import numpy as np

from llama_prefect import metering
from llama_prefect.errors import (
    ConfigurationError,
    DecoderCrashError,
    DecodeTimeoutError,
    LlamaError,
    TransientError,
    VideoError,
    is_deterministic,
)

__all__ = ["call", "decode_budget_s", "isolated", "probe_budget_s", "shutdown"]

logger = logging.getLogger(__name__)

ISOLATION_ENV = "LLAMA_PREFECT_DECODE_ISOLATION"
TIMEOUT_ENV = "LLAMA_PREFECT_DECODE_TIMEOUT_S"
FAULTS_ENV = "LLAMA_PREFECT_DECODE_FAULTS"
MAX_RSS_ENV = "LLAMA_PREFECT_DECODE_WORKER_MAX_RSS_MB"

#: Seconds every decode call may take on top of its work (ours).
BASE_BUDGET_S = 20.0
#: Seconds allowed per decoded frame-megapixel, ten times a 2-core machine (ours).
S_PER_FRAME_MEGAPIXEL = 0.05
#: Seconds allowed per MB of file to demux when probing, ten times what it needs.
S_PER_PROBED_MB = 0.05
#: Seconds a new worker may take to start Python and import the decoders (ours).
STARTUP_S = 30.0
DEFAULT_MAX_RSS_MB = 1024.0
#: Frame arrays this large or larger come back through shared memory (ours).
SHARED_MIN_BYTES = 256 * 1024
FAULT_KINDS = ("crash", "hang", "kill", "oserror")
_FATAL_SIGNALS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
}
_BYTES_PER_MB = 1024 * 1024


def isolated() -> bool:
    """True unless ``LLAMA_PREFECT_DECODE_ISOLATION=off`` asks for in-process decoding.

    Raises:
        ConfigurationError: The variable holds something else.
    """
    mode = os.environ.get(ISOLATION_ENV, "process").strip().lower()
    if mode not in ("process", "off"):
        raise ConfigurationError(
            f"{ISOLATION_ENV} must be 'process' or 'off', but got {mode!r}."
        )
    return mode == "process"


def decode_budget_s(frames: int, width_px: int, height_px: int) -> float:
    """Time bound in seconds for decoding `frames` frames of the given size."""
    megapixels = width_px * height_px / 1e6
    return BASE_BUDGET_S + S_PER_FRAME_MEGAPIXEL * max(0, frames) * megapixels


def probe_budget_s(size_bytes: int) -> float:
    """Time bound in seconds for probing (demuxing) a file of `size_bytes` bytes."""
    return BASE_BUDGET_S + S_PER_PROBED_MB * size_bytes / 1e6


def call(
    kind: str,
    kwargs: dict[str, Any],
    *,
    video: str,
    what: str,
    budget_s: float,
    out_shape: tuple[int, ...] | None = None,
) -> tuple[Any, np.ndarray | None]:
    """Runs the worker handler `kind` on `kwargs` and returns its result.

    Args:
        kind: A handler of `llama_prefect.video._worker.HANDLERS`.
        kwargs: Its keyword arguments (picklable).
        video: The file being decoded, for messages and fault injection.
        what: What is decoded, for messages ("segment 3 (frames 120-159)").
        budget_s: The call's time bound, in seconds (see `decode_budget_s`).
        out_shape: Shape of the uint8 array the handler fills, when known ahead.
            Arrays of `SHARED_MIN_BYTES` or more are then written by the worker
            straight into shared memory that this process maps (Linux), so the
            frames are never copied through the socket.

    Returns:
        The handler's (metadata, array or None).

    Raises:
        DecoderCrashError: The worker died of a fatal signal.
        DecodeTimeoutError: The call ran past its bound.
        TransientError: The worker ended otherwise, or could not start.
        LlamaError: What the handler raised (a `VideoError` for a bad file).
    """
    meter = metering.current()
    if not isolated():
        from llama_prefect.video._worker import HANDLERS

        meta, array = HANDLERS[kind](**kwargs)
        meter.add_decode(peak_rss_mb=0.0, frames_mb=_mb(array))
        return meta, array

    fault = _FAULTS.take(Path(video).name)
    shared = _SharedFrames.make(out_shape)
    worker = _POOL.acquire()
    timeout_s = _timeout_s(budget_s)
    reply: _Reply | None = None
    try:
        message = (kind, kwargs, fault, None if shared is None else shared.shape)
        reply = worker.request(message, timeout_s, video, what, shared)
    finally:
        _POOL.release(worker, reply)
        if shared is not None:
            shared.close()
    meter.add_decode(peak_rss_mb=reply.peak_rss_mb, frames_mb=_mb(reply.array))
    if reply.error is not None:
        raise reply.error
    return reply.meta, reply.array


def shutdown() -> None:
    """Closes every idle decode worker (also run at interpreter exit)."""
    _POOL.close_idle()


def _timeout_s(budget_s: float) -> float:
    fixed = os.environ.get(TIMEOUT_ENV)
    if not fixed:
        return budget_s
    try:
        value = float(fixed)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(
            f"{TIMEOUT_ENV} must be a positive number of seconds, but got {fixed!r}."
        )
    return value


def _mb(array: np.ndarray | None) -> float:
    return 0.0 if array is None else array.nbytes / _BYTES_PER_MB


@dataclass
class _Reply:
    """What a worker answered to one request."""

    meta: Any
    array: np.ndarray | None
    error: BaseException | None
    peak_rss_mb: float
    rss_mb: float


class _Worker:
    """One decode worker process and the parent's end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])]
        )
        command = [sys.executable, "-m", "llama_prefect.video._worker"]
        try:
            self.process = subprocess.Popen(
                [*command, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise TransientError(
                f"a decode worker could not start: {exc}. Check that the machine has "
                f"free memory and processes, or set {ISOLATION_ENV}=off."
            ) from exc
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.calls = 0
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Waits until the worker has imported the decoders and says it is ready."""
        try:
            if self.conn.poll(STARTUP_S) and self.conn.recv() == "ready":
                return
        except (EOFError, OSError):
            pass
        self.kill()
        raise TransientError(
            f"a decode worker did not start within {STARTUP_S:.0f} s "
            f"({_exit_words(self.process.returncode)}); its error output says why. "
            f"Check the video extras are installed, or set {ISOLATION_ENV}=off."
        )

    def request(
        self,
        message: tuple[Any, ...],
        timeout_s: float,
        video: str,
        what: str,
        shared: _SharedFrames | None = None,
    ) -> _Reply:
        """Sends one request and waits at most `timeout_s` for its reply."""
        self.calls += 1
        try:
            self.conn.send(message)
            if shared is not None:
                send_handle(self.conn, shared.fd, self.process.pid)
            if not self.conn.poll(timeout_s):
                self.kill()
                raise DecodeTimeoutError(
                    f"{video}: decoding {what} took longer than {timeout_s:.1f} s, so "
                    "the decoder was stopped; it hangs on this file or the file is "
                    f"far larger than it looks. Re-encode it, or raise {TIMEOUT_ENV}."
                )
            return self._receive(video, what, shared)
        except (EOFError, ConnectionError, OSError) as exc:
            raise self._lost(video, what) from exc

    def _receive(self, video: str, what: str, shared: _SharedFrames | None) -> _Reply:
        status, payload, shape, peak_rss_mb, rss_mb = self.conn.recv()
        if status == "error":
            error = _rebuild(payload, video, what)
            return _Reply(None, None, error, peak_rss_mb, rss_mb)
        array = None
        if shape == "shared":
            assert shared is not None
            array = shared.array()
        elif shape is not None:
            dims, dtype = shape
            array = np.empty(dims, dtype=np.dtype(dtype))
            if array.size:
                self.conn.recv_bytes_into(array.data.cast("B"))
        return _Reply(payload, array, None, peak_rss_mb, rss_mb)

    def _lost(self, video: str, what: str) -> LlamaError:
        """The error for a worker that stopped answering mid-call."""
        code = self.wait(5.0)
        if code is not None and code < 0 and -code in _FATAL_SIGNALS:
            name = signal.Signals(-code).name
            return DecoderCrashError(
                f"{video}: the decoder crashed ({name}) while decoding {what}. The "
                "file is probably corrupt there; only its worker process died. "
                "Re-encode the file or try another decoder."
            )
        how = _exit_words(code)
        return TransientError(
            f"{video}: the decode worker {how} while decoding {what} (not a crash of "
            "the decoder itself, e.g. the out-of-memory killer); the invocation is "
            "retried."
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self.conn.close()

    def close(self) -> None:
        """Asks the worker to end (it does at end of input) and reaps it."""
        try:
            self.conn.close()
        finally:
            self.wait(2.0)


class _SharedFrames:
    """An anonymous shared-memory file the worker writes frames into (Linux)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.nbytes = int(np.prod(shape))
        self.fd = os.memfd_create("llama-prefect-frames", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, self.nbytes)

    @classmethod
    def make(cls, shape: tuple[int, ...] | None) -> _SharedFrames | None:
        """Shared memory for an array of `shape`, or None where it does not pay."""
        if shape is None or not hasattr(os, "memfd_create"):
            return None
        if int(np.prod(shape)) < SHARED_MIN_BYTES:
            return None
        return cls(shape)

    def array(self) -> np.ndarray:
        """The frames, mapped (the mapping lives as long as the array)."""
        mapping = mmap.mmap(self.fd, self.nbytes)
        return np.frombuffer(mapping, dtype=np.uint8).reshape(self.shape)

    def close(self) -> None:
        os.close(self.fd)


def _exit_words(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _rebuild(payload: tuple[str, Any], video: str, what: str) -> BaseException:
    """The exception a worker sent: our own as it was, any other as one of ours.

    A foreign error is transient when `is_deterministic` says so (an `OSError`, for
    instance), else a `VideoError`.
    """
    form, body = payload
    error = pickle.loads(body) if form == "pickle" else None
    if isinstance(error, LlamaError):
        return error
    text = f"{type(error).__name__}: {error}" if error is not None else str(body)
    if error is not None and not is_deterministic(error):
        return TransientError(f"{video}: decoding {what} failed: {text}; retrying.")
    return VideoError(f"{video}: decoding {what} failed: {text}.")


class _Pool:
    """Idle workers, handed to one caller at a time; new ones from one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._spawns: queue.SimpleQueue[concurrent.futures.Future[_Worker]] | None
        self._spawns = None

    def acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
        return self._spawn()

    def release(self, worker: _Worker, reply: _Reply | None) -> None:
        """Keeps a worker that answered and stayed small; closes any other."""
        keep = reply is not None and worker.alive() and reply.rss_mb < _max_rss_mb()
        if keep:
            with self._lock:
                if len(self._idle) < (os.cpu_count() or 1):
                    self._idle.append(worker)
                    return
        if reply is not None and reply.rss_mb >= _max_rss_mb():
            logger.debug("retiring a decode worker at %.0f MB", reply.rss_mb)
        if reply is not None:
            worker.close()
        else:
            worker.kill()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def _spawn(self) -> _Worker:
        # Workers start from one long-lived thread: each asks Linux to kill it when
        # the thread that started it ends, and a short-lived runner thread would
        # take pooled workers with it.
        with self._lock:
            if self._spawns is None:
                self._spawns = queue.SimpleQueue()
                threading.Thread(
                    target=_spawn_loop,
                    args=(self._spawns,),
                    name="llama-decode-spawner",
                    daemon=True,
                ).start()
            spawns = self._spawns
        future: concurrent.futures.Future[_Worker] = concurrent.futures.Future()
        spawns.put(future)
        return future.result()


def _spawn_loop(spawns: queue.SimpleQueue[concurrent.futures.Future[_Worker]]) -> None:
    while True:
        future = spawns.get()
        try:
            future.set_result(_Worker())
        except BaseException as exc:
            future.set_exception(exc)


def _max_rss_mb() -> float:
    value = os.environ.get(MAX_RSS_ENV)
    return float(value) if value else DEFAULT_MAX_RSS_MB


class _Faults:
    """Faults to inject, parsed from ``LLAMA_PREFECT_DECODE_FAULTS`` at every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}

    def take(self, name: str) -> str | None:
        """The fault kind to inject into the next call on file `name`, if any."""
        spec = os.environ.get(FAULTS_ENV, "").strip()
        if not spec:
            return None
        for item in spec.split(","):
            kind, limit, pattern = _parse_fault(item.strip())
            if not fnmatch.fnmatch(name, pattern):
                continue
            with self._lock:
                used = self._used.get(item, 0)
                if limit is not None and used >= limit:
                    continue
                self._used[item] = used + 1
            return kind
        return None


def _parse_fault(item: str) -> tuple[str, int | None, str]:
    head, sep, pattern = item.partition(":")
    kind, _, count = head.partition("x")
    if not sep or kind not in FAULT_KINDS or (count and not count.isdigit()):
        raise ConfigurationError(
            f"{FAULTS_ENV} items must be KIND:GLOB or KINDxN:GLOB with KIND one of "
            f"{', '.join(FAULT_KINDS)}, but got {item!r}."
        )
    return kind, int(count) if count else None, pattern


_POOL = _Pool()
_FAULTS = _Faults()
atexit.register(shutdown)
# A parent that exits by signal never runs atexit; its workers see the socket close
# (idle ones) or die with it (busy ones, see _worker._die_with_parent).
