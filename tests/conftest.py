"""Shared fixtures: a Prefect server for the tests that run flows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's test harness: a temporary local server for this test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# The moto server fixtures serve every AWS test (see tests/aws_moto.py).
from aws_moto import moto, moto_url  # noqa: E402, F401


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree."""
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools leaves a build/ folder in the tree it builds.
    source = tmp_path_factory.mktemp("src") / "llama-prefect"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "runs",
            "samples",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            ".prefect-home",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
    )
    (found,) = out.glob("llama_prefect-*.whl")
    return found


@pytest.fixture(scope="session")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new venv holding only the wheel; dependencies borrowed by a ``.pth`` line.

    Returns the venv's ``bin`` folder.
    """
    import sysconfig

    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    site = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = sysconfig.get_paths()["purelib"]
    (Path(site) / "_borrowed_dependencies.pth").write_text(borrowed + "\n")
    return venv / "bin"
