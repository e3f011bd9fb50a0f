"""The built wheel installs our folders under the llama_prefect namespace only."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
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


def test_wheel_installs_no_top_level_blocks_flows_or_tuning(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("llama_prefect-")}
    assert tops == {"llama_prefect"}
    for inside in (
        "llama_prefect/flows/crossing.py",
        "llama_prefect/tuning/explore.py",
        "llama_prefect/blocks/__init__.py",
        "llama_prefect/data/prices.json",
    ):
        assert inside in names


def test_wheel_contents_import_away_from_the_source_tree(wheel, tmp_path):
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = (
        "import llama_prefect.flows.crossing as c, llama_prefect.tuning.explore, "
        "llama_prefect.core.pricing as p; "
        f"assert c.__file__.startswith({str(unpacked)!r}); "
        "print(sorted(c.PIPELINE.ops), p.PriceCatalog.load().version)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "aggregate" in done.stdout and "people" in done.stdout
