"""Ctrl-C on `llama-prefect run`: a short line, exit status 130, nothing left behind.

The command runs in its own process group (`interrupted_run.py`: the real CLI on a
toy flow with minutes of queued work) and gets SIGINT on the whole group, as a
terminal's Ctrl-C sends it, once its first op has started. The command starts and
stops its own temporary Prefect server, under a PREFECT_HOME of the test's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect

CHILD = Path(__file__).with_name("interrupted_run.py")
#: Seconds the command may take to start its server and its first op (a loaded CI).
START_S = 240
#: Seconds it may take to exit after Ctrl-C; the queued work alone is minutes.
EXIT_BOUND_S = 30


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    return env


def _wait_started(process: subprocess.Popen[str], marker: Path) -> None:
    deadline = time.monotonic() + START_S
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            _kill(process)
            out, err = process.communicate()
            pytest.fail(f"the run never started its first op:\n{(out + err)[-4000:]}")
        time.sleep(0.1)


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Starts the run, sends SIGINT to its group after its first op started."""
    tmp_path = tmp_path_factory.mktemp("interrupted")
    home = tmp_path / "home"
    home.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path)],
        env=_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_started(process, tmp_path / "started")
        os.killpg(process.pid, signal.SIGINT)
        try:
            out, err = process.communicate(timeout=EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            _kill(process)
            out, err = process.communicate()
            pytest.fail(f"still running {EXIT_BOUND_S} s after Ctrl-C:\n{err[-4000:]}")
        time.sleep(1.0)  # a child that outlived the command would still be there
        left = _group_alive(process.pid)
    finally:
        _kill(process)
    return {"code": process.returncode, "out": out, "err": err, "left": left}


def test_ctrl_c_exits_with_130_without_a_traceback(interrupted):
    assert interrupted["code"] == 130, interrupted["err"][-4000:]
    assert "Traceback" not in interrupted["err"], interrupted["err"][-4000:]
    assert "Traceback" not in interrupted["out"]


def test_ctrl_c_prints_one_line_saying_what_was_kept(interrupted):
    lines = [
        line for line in interrupted["err"].splitlines() if "interrupted after" in line
    ]
    assert len(lines) == 1, interrupted["err"][-4000:]
    assert "0 of 1 videos answered and kept in" in lines[0]
    assert "no report written" in lines[0]


def test_ctrl_c_leaves_no_process_of_the_run_behind(interrupted):
    # The temporary server and any decode worker are in the command's group.
    assert not interrupted["left"]
