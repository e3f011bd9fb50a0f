"""The daemon threads the runner runs attempts on: reuse, no waiting, shutdown."""

from __future__ import annotations

import threading
import time

from llama_prefect.runner import _DaemonThreads

WAIT_S = 10.0  # a bound on waits that only a broken pool reaches


def _until(condition, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _call_on(pool: _DaemonThreads) -> threading.Thread:
    """Runs one call on the pool; returns the thread that ran it."""
    ran: list[threading.Thread] = []
    done = threading.Event()
    pool.submit(lambda: (ran.append(threading.current_thread()), done.set()))
    assert done.wait(WAIT_S)
    return ran[0]


def test_a_call_never_waits_for_a_running_one():
    pool = _DaemonThreads("t")
    release, second = threading.Event(), threading.Event()
    pool.submit(release.wait)
    pool.submit(second.set)
    assert second.wait(WAIT_S)  # ran while the first still blocks its thread
    release.set()
    pool.shutdown(wait=True)


def test_an_idle_thread_takes_the_next_call_and_is_a_daemon():
    pool = _DaemonThreads("t")
    first = _call_on(pool)
    assert _until(lambda: pool._idle == 1)
    assert _call_on(pool) is first
    assert first.daemon
    pool.shutdown(wait=True)


def test_shutdown_ends_idle_threads_and_waits_for_running_ones():
    pool = _DaemonThreads("t")
    idle = _call_on(pool)
    assert _until(lambda: pool._idle == 1)
    release, started, finished = threading.Event(), threading.Event(), []
    busy_thread: list[threading.Thread] = []

    def busy() -> None:
        busy_thread.append(threading.current_thread())
        started.set()
        release.wait()
        finished.append(True)

    pool.submit(busy)  # the idle thread takes it
    assert started.wait(WAIT_S)
    other = _call_on(pool)  # a new thread: the first one is busy
    assert other is not idle
    assert _until(lambda: pool._idle == 1)
    threading.Timer(0.05, release.set).start()
    pool.shutdown(wait=True)
    assert finished == [True]
    assert not busy_thread[0].is_alive() and not other.is_alive()


def test_a_call_after_shutdown_still_runs_on_a_thread_of_its_own():
    pool = _DaemonThreads("t")
    pool.shutdown(wait=True)
    thread = _call_on(pool)
    assert _until(lambda: not thread.is_alive())
