"""The core and the package import without Prefect, AWS, torch, decoders or Optuna.

Each check runs in a fresh interpreter, so modules that other tests imported do not
hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("prefect", "boto3", "torch", "decord", "av", "cv2", "optuna")

_PROBE = """
import importlib, json, pkgutil, sys
{imports}
heavy = {heavy!r}
loaded = sorted(
    m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)
)
print(json.dumps({{"loaded": loaded, "imported": imported}}))
"""

_CORE = """
import llama_prefect.core
imported = ["llama_prefect.core"]
for info in pkgutil.walk_packages(llama_prefect.core.__path__, "llama_prefect.core."):
    importlib.import_module(info.name)
    imported.append(info.name)
"""

_PACKAGE = """
import llama_prefect
imported = ["llama_prefect"]
"""


def _probe(imports: str) -> dict:
    code = _PROBE.format(imports=imports, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_and_all_its_modules_import_nothing_heavy():
    result = _probe(_CORE)
    expected = {
        "llama_prefect.core.clock",
        "llama_prefect.core.optimizer",
        "llama_prefect.core.pipeline",
        "llama_prefect.core.pricing",
        "llama_prefect.core.profiles",
        "llama_prefect.core.scheduler",
        "llama_prefect.core.targets",
    }
    assert expected <= set(result["imported"])
    assert result["loaded"] == []


def test_package_imports_nothing_heavy():
    result = _probe(_PACKAGE)
    assert result["loaded"] == []


@pytest.mark.parametrize("name", HEAVY)
def test_probe_would_see_a_heavy_import(name):
    # The probe's own check, on a fake module of that name placed in sys.modules.
    code = f"import sys, types\nsys.modules[{name!r}] = types.ModuleType({name!r})\n"
    result = _probe(code + "imported = []")
    assert result["loaded"] == [name]
