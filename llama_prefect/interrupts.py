"""Ctrl-C on a command-line run: stop at once, quietly, and keep what is done.

A Ctrl-C in a terminal sends SIGINT to the whole foreground process group, and
Prefect's temporary local server is a child process of the run, in that group. Left
alone, the server shuts down at the same moment, while the flow engine still needs
it to record the interrupt: the engine then retries its API calls and the events
client reconnects for every event it holds, against a server that is gone, for
minutes. `start_temporary_server` starts that server before the flow does, from a
thread that blocks SIGINT; a child process inherits the blocked signal, so the server
never sees the terminal's Ctrl-C. Prefect stops it (SIGTERM) when the process exits.

The rest of an interrupted run is the runner's business (`LlamaTaskRunner` stops
committing, cancels queued invocations and ends running ones without waiting) and the
command's (one line saying what was kept, exit status `EXIT_INTERRUPTED`).

Note:
    Only SIGINT is blocked. A server started this way still stops at SIGTERM or
    SIGKILL; if the run itself is killed with SIGKILL, Prefect cannot stop it, as
    with its own temporary server.
"""

from __future__ import annotations

import signal
import threading

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 128 + signal.SIGINT


def start_temporary_server() -> str | None:
    """Starts Prefect's temporary local server now, deaf to the terminal's Ctrl-C.

    Prefect keeps one temporary server per process and starts it on first use; the
    one started here is the one the flow then uses. Call it from the main thread
    before the flow runs.

    Returns:
        The server's API URL, or None when ``PREFECT_API_URL`` names a server, which
        is then used as it is (no temporary server is started).

    Raises:
        RuntimeError: From Prefect, when the server does not become healthy within
            ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    failed: list[BaseException] = []

    def start() -> None:
        # The mask is this thread's own; the main thread still gets SIGINT.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            server.start()
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    starter = threading.Thread(target=start, name="llama-server-start", daemon=True)
    starter.start()
    starter.join()
    if failed:
        raise failed[0]
    return str(server.api_url)
