"""The built wheel: our folders under the llama_prefect namespace only, the entry
points Prefect and the shell use, and a fresh venv in which the plugin works.

The fresh venv gets the wheel and nothing else installed; its dependencies (Prefect
and the rest) are borrowed from the test's own environment through a ``.pth`` line,
because tests reach no package index. That environment's editable install of
llama-prefect is not activated there (``.pth`` files of a borrowed folder are not
run), so every llama_prefect module the venv imports comes from the wheel.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_wheel_declares_the_collection_and_console_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "[prefect.collections]\nllama_prefect = llama_prefect.blocks" in text
    assert "llama-prefect = llama_prefect.cli:main" in text
    assert "llama_prefect/data/logo.png" in names


FRESH_CHECK = """
import json, sys
import llama_prefect, llama_prefect.blocks
from prefect.blocks.core import Block
from prefect.plugins import load_prefect_collections
loaded = load_prefect_collections()
kind = Block.get_block_class_from_key("llama-price-catalog")
print(json.dumps({
    "package": llama_prefect.__file__,
    "collection": getattr(loaded.get("llama_prefect"), "__name__", repr(loaded)),
    "block": kind.__module__,
    "prices": sorted(kind.from_catalog().backends),
}))
"""


def test_in_a_fresh_venv_prefect_discovers_our_blocks_from_the_wheel(
    fresh_venv, tmp_path
):
    import json

    done = subprocess.run(
        [str(fresh_venv / "python"), "-c", FRESH_CHECK],
        cwd=tmp_path,  # away from the source tree, which `python -c` would import
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(fresh_venv.parent))
    assert found["collection"] == "llama_prefect.blocks"
    assert found["block"] == "llama_prefect.blocks.types"
    assert "local-cpu" in found["prices"]


def test_in_a_fresh_venv_the_command_line_runs_from_the_wheel(fresh_venv, tmp_path):
    done = subprocess.run(
        [
            str(fresh_venv / "llama-prefect"),
            "run",
            "crossing",
            "--videos",
            str(tmp_path / "none"),
            "--slo-s",
            "10",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr
