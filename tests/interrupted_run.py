"""`llama-prefect run` on a toy pipeline whose ops take long: the child that
`test_cli_interrupt.py` interrupts.

Usage: ``python interrupted_run.py WORK_DIR``. It runs the real command
(`llama_prefect.cli.main`, so Prefect's temporary server as the command starts it),
with the crossing flow and its profiles swapped for a toy flow on `LlamaTaskRunner`:
six invocations of an op that sleeps `OP_S` seconds, on one slot per core (the
command's runner), so when the first op starts most of them are queued. The op
writes ``WORK_DIR/started`` when it starts, which tells the test the run is under
way.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import llama_prefect.flows.crossing as crossing_module
from prefect import flow, task

from llama_prefect import cli
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.runner import OP_ATTRIBUTE, LlamaTaskRunner

#: Seconds each op invocation sleeps; six of them are minutes of queued work.
OP_S = 30.0
INVOCATIONS = 6

TOY = Pipeline("slow-toy")
TOY.add_op(OpSpec("nap", unit="item", group_of=lambda params: "g"))
WORK = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")


def _nap_body(index: int) -> int:
    (WORK / "started").write_text(str(index))
    time.sleep(OP_S)
    return index


setattr(_nap_body, OP_ATTRIBUTE, "nap")
nap = task(name="nap")(_nap_body)


@flow(name="slow-toy", task_runner=LlamaTaskRunner(TOY))
def slow_toy(
    videos: str = "",
    slo_s: float = 600.0,
    objective: str = "cost",
    accuracy_floor: float = 0.0,
    segment_s: float = 4.0,
    report_path: str = "",
    results_dir: str | None = None,
    backend_settings: str | None = None,
    price_catalog: str | None = None,
    profile_store: str | None = None,
) -> dict:
    """Takes the crossing flow's parameters; runs `INVOCATIONS` naps."""
    futures = [nap.submit(i) for i in range(INVOCATIONS)]
    return {"naps": [f.result() for f in futures]}


def _profiles(path: Path) -> Path:
    store = ProfileStore(TOY.name)
    store.seed("nap", Configuration.of("local-cpu", {}), OP_S)
    return store.save(path)


def main() -> int:
    # A shell may start a background job with SIGINT ignored; Python keeps that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    profiles = _profiles(WORK / "profiles.json")
    crossing_module.PIPELINE = TOY  # type: ignore[assignment]
    crossing_module.crossing = slow_toy  # type: ignore[assignment]
    cli._ensure_profiles = lambda args: profiles  # type: ignore[assignment]
    videos = WORK / "videos"
    videos.mkdir(exist_ok=True)
    (videos / "empty.mp4").write_bytes(b"")  # listed, never read by the toy flow
    argv = ["run", "crossing", "--videos", str(videos), "--slo-s", "600"]
    argv += ["--results", str(WORK / "results"), "--report", str(WORK / "r.json")]
    return cli.main(argv + ["--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
