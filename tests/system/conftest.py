"""A real Prefect server on loopback for system tests, started and stopped here.

The server runs as `prefect server start` in its own process group, with its own
PREFECT_HOME (its SQLite database lives there) and a free port on 127.0.0.1. Its
scheduler service is off, so the nightly schedule of the archive deployment is stored
but never fires during a test. Every process a test starts with `SystemServer.env`
carries that PREFECT_HOME; at teardown any of them still alive (a worker's flow run
included) is ended by its pid.

The clips are cut from vtest.avi (real street footage) with ffmpeg; the profiles come
from a short exploration on them, shared by the tests of the session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llama_prefect.video.samples import find_vtest

BIN = Path(sys.executable).parent
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
START_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SystemServer:
    """A running server: its API URL, home, and the environment for its clients."""

    api_url: str
    home: Path
    env: dict[str, str]
    log: Path

    def run(
        self, *args: str, timeout: float = 180, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs a command against this server and returns what it printed."""
        return subprocess.run(
            list(args),
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
        """Starts a long-running command against this server, in its own group."""
        handle = open(log, "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            list(args),
            env=self.env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    bin = BIN

    @staticmethod
    def stop(process: subprocess.Popen, grace_s: float = 30) -> None:
        """Ends a process started by `start` and its group."""
        stop(process, grace_s)

    def client(self):
        """A synchronous Prefect client of this server, for use in a `with`."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(api=self.api_url)


def stop(process: subprocess.Popen, grace_s: float = 30) -> None:
    """Ends a process started by `SystemServer.start` and its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _end_leftovers(home: Path) -> None:
    """Ends processes still running with this server's PREFECT_HOME, by pid."""
    marker = f"PREFECT_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def _wait_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(
        f"prefect server not healthy in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="session")
def system_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemServer]:
    """`prefect server start` on a free loopback port, stopped at the end."""
    base = tmp_path_factory.mktemp("prefect-system")
    home = base / "home"
    home.mkdir()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    server = SystemServer(api_url, home, env, base / "server.log")
    process = server.start(
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ui",
        "--no-scheduler",
        log=server.log,
    )
    try:
        _wait_healthy(process, api_url, server.log)
        yield server
    finally:
        stop(process)
        _end_leftovers(home)


def _ffmpeg(*args: str | Path) -> None:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True, timeout=120)


@pytest.fixture(scope="session")
def street_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clips of real street footage cut from vtest.avi (H.264, 768x576, 10 fps).

    Files: street_a.mp4 and street_b.mp4 (3 s each, from 20 s and 40 s on, one
    segment each) and street_long.mp4 (16 s from 50 s on, four segments).
    """
    source = find_vtest()
    if source is None:
        pytest.fail(
            "vtest.avi is needed: run `make system` (apt-get install opencv-doc)"
        )
    folder = tmp_path_factory.mktemp("street")
    for name, start_s, length_s in (
        ("street_a.mp4", 20, 3),
        ("street_b.mp4", 40, 3),
        ("street_long.mp4", 50, 16),
    ):
        _ffmpeg("-ss", start_s, "-t", length_s, "-i", source, *H264, folder / name)
    return folder


@pytest.fixture(scope="session")
def street_profiles(
    street_clips: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A profile store explored on the street clips with a tiny trial budget."""
    from llama_prefect.flows.crossing import seed_profiles

    path = tmp_path_factory.mktemp("profiles") / "crossing.json"
    seed_profiles(
        [str(p) for p in sorted(street_clips.iterdir())],
        path,
        n_trials=2,
        progress=False,
    )
    return path
