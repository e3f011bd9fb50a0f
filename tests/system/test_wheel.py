"""The plugin works from the built wheel in a fresh venv, against a real server.

The venv holds only the wheel (see tests/test_packaging.py for how its dependencies
are borrowed). From it, `prefect block register -m llama_prefect.blocks` registers
our block types, and a flow on `LlamaTaskRunner` runs and records its decisions.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.system

TOY_RUN = """
import json, tempfile, time
from pathlib import Path
from prefect import flow, task
from prefect.context import FlowRunContext
import llama_prefect
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

pipe = Pipeline("wheel-toy")
pipe.add_op(OpSpec("step", knobs={"mode": ("a", "b")}, group_of=lambda p: "g"))
store = ProfileStore("wheel-toy")
store.seed("step", Configuration.of("local-cpu", {"mode": "a"}), 0.05)
store.seed("step", Configuration.of("local-cpu", {"mode": "b"}), 0.01)
profiles = store.save(Path(tempfile.mkdtemp()) / "p.json")

@task(name="step")
def step(i: int, mode: str = "a") -> str:
    time.sleep(0.02)
    return mode

setattr(step.fn, OP_ATTRIBUTE, "step")

@flow(task_runner=LlamaTaskRunner(pipe, profile_path=profiles))
def toy(slo_s: float = 60.0):
    modes = [f.result() for f in [step.submit(i) for i in range(3)]]
    return modes, FlowRunContext.get().task_runner.records()

modes, records = toy()
print(json.dumps({"package": llama_prefect.__file__, "modes": modes,
                  "configs": [r["configuration"] for r in records]}))
"""


def test_block_register_and_a_tuned_flow_run_from_the_wheel(
    system_server, fresh_venv, tmp_path
):
    python = str(fresh_venv / "python")
    registered = system_server.run(
        python,
        "-m",
        "prefect",
        "block",
        "register",
        "-m",
        "llama_prefect.blocks",
        cwd=tmp_path,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    assert "Successfully registered 3 blocks" in registered.stdout

    ran = system_server.run(python, "-c", TOY_RUN, cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["package"].startswith(str(fresh_venv.parent))
    # Both modes cost slot-seconds on one pool; "b" is five times cheaper per unit.
    assert out["modes"] == ["b", "b", "b"]
    assert out["configs"] == [{"mode": "b"}] * 3
