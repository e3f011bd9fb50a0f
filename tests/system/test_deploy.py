"""The deployment path as a user walks it, against a real server and process worker.

From a fresh project folder: register our block types with `prefect block register`,
save blocks with `llama-prefect blocks`, create a `process` work pool, deploy the
repository's prefect.yaml with `prefect deploy --all`, start a worker, and start a run
with `prefect deployment run 'crossing/on-demand' -p ...` on two short clips of real
street footage. The run is then checked through the API: its state, the stored
schedule and parameter bounds, the three artifacts, the report and the results.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

pytestmark = [pytest.mark.system, pytest.mark.video]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
RUN_TIMEOUT_S = 420


def _ok(done, what: str) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def deployed_run(system_server, street_clips, street_profiles, tmp_path_factory):
    """Deploys prefect.yaml, runs the on-demand deployment on a worker, returns ids."""
    server = system_server
    project = tmp_path_factory.mktemp("project")
    videos = project / "videos"
    videos.mkdir()
    for name in ("street_a.mp4", "street_b.mp4"):
        shutil.copy(street_clips / name, videos / name)

    registered = _ok(
        server.run(PREFECT, "block", "register", "-m", "llama_prefect.blocks"),
        "block register",
    )
    blocks = server.run(
        str(BIN / "llama-prefect"),
        "blocks",
        "--name",
        "system",
        "--profiles",
        str(street_profiles),
        "--backends",
        "local-cpu",
        "--cpu-slots",
        "2",
    )
    _ok(blocks, "llama-prefect blocks")
    _ok(
        server.run(
            PREFECT, "work-pool", "create", "llama-process", "--type", "process"
        ),
        "work-pool create",
    )
    _ok(
        server.run(
            PREFECT,
            "deploy",
            "--all",
            "--prefect-file",
            str(ROOT / "prefect.yaml"),
            cwd=project,
        ),
        "prefect deploy --all",
    )
    worker = server.start(
        PREFECT,
        "worker",
        "start",
        "--pool",
        "llama-process",
        "--limit",
        "2",
        "--install-policy",
        "never",
        log=project / "worker.log",
        cwd=project,
    )
    try:
        ran = server.run(
            PREFECT,
            "deployment",
            "run",
            "crossing/on-demand",
            "-p",
            f"videos={videos}",
            "-p",
            "slo_s=300",
            "-p",
            "results_dir=results",
            "-p",
            "backend_settings=system",
            "-p",
            "price_catalog=system",
            "-p",
            "profile_store=system",
            "--watch",
            "--watch-timeout",
            str(RUN_TIMEOUT_S),
            timeout=RUN_TIMEOUT_S + 60,
        )
        out = ran.stdout + ran.stderr
        log = (project / "worker.log").read_text()
        assert ran.returncode == 0, (
            f"run failed:\n{out[-4000:]}\nworker:\n{log[-6000:]}"
        )
        bad = server.run(
            PREFECT, "deployment", "run", "crossing/on-demand", "-p", "slo_s=-5"
        )
    finally:
        server.stop(worker)
    flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1))
    return {
        "server": server,
        "project": project,
        "flow_run_id": flow_run_id,
        "registered": registered,
        "bad": bad,
    }


def test_block_register_finds_our_three_block_types(deployed_run):
    assert "Successfully registered 3 blocks" in deployed_run["registered"]
    with deployed_run["server"].client() as client:
        slugs = {t.slug for t in client.read_block_types()}
    assert {"llama-backend-settings", "llama-price-catalog", "llama-profile-store"} <= (
        slugs
    )


def test_deploy_stores_the_nightly_schedule_and_the_parameter_bounds(deployed_run):
    with deployed_run["server"].client() as client:
        nightly = client.read_deployment_by_name("crossing/archive-nightly")
        on_demand = client.read_deployment_by_name("crossing/on-demand")
    assert nightly.entrypoint == "llama_prefect.flows.crossing:crossing"
    (schedule,) = nightly.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.active
    assert nightly.parameters["results_dir"] == "runs/results"
    assert not on_demand.schedules
    slo = on_demand.parameter_openapi_schema["properties"]["slo_s"]
    assert slo["exclusiveMinimum"] == 0


def test_a_bad_parameter_is_refused_before_the_run_is_created(deployed_run):
    bad = deployed_run["bad"]
    assert bad.returncode != 0
    assert "slo_s" in bad.stdout + bad.stderr


def test_the_run_completes_on_the_worker_with_the_given_parameters(deployed_run):
    with deployed_run["server"].client() as client:
        flow_run = client.read_flow_run(deployed_run["flow_run_id"])
    assert flow_run.state.is_completed()
    assert flow_run.parameters["slo_s"] == 300
    assert flow_run.parameters["profile_store"] == "system"


def test_the_report_answers_both_clips_on_the_block_configured_backend(deployed_run):
    report = json.loads(
        (deployed_run["project"] / "runs/latest/report.json").read_text()
    )
    answered = [v for v in report["videos"] if v["answer"] is not None]
    assert len(answered) == 2
    assert all(sum(v["answer"]["people_per_window"]) > 0 for v in answered)
    assert {r["backend"] for r in report["invocations"]} == {"local-cpu"}
    assert report["settings"]["profile_path"].endswith("crossing.json")
    assert report["static_plan"]["cost_usd"] > 0
    stored = list((deployed_run["project"] / "results").rglob("*.json"))
    assert len(stored) == 2


def _artifacts(deployed_run) -> dict:
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[deployed_run["flow_run_id"]]))
    with deployed_run["server"].client() as client:
        found = client.read_artifacts(flow_run_filter=run_filter)
    return {a.key: a for a in found}


def test_the_run_publishes_the_invocation_table_summary_and_progress(deployed_run):
    artifacts = _artifacts(deployed_run)
    assert {"crossing-invocations", "crossing-summary", "crossing-progress"} <= set(
        artifacts
    )
    table = artifacts["crossing-invocations"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    report = json.loads(
        (deployed_run["project"] / "runs/latest/report.json").read_text()
    )
    assert len(rows) == len(report["invocations"]) > 0
    for row in rows:
        for column in (
            "target_s",
            "configuration",
            "backend",
            "predicted_s",
            "observed_s",
            "cost_usd",
        ):
            assert row[column] is not None
    summary = artifacts["crossing-summary"].data
    assert "SLO met" in summary or "SLO MISSED" in summary
    assert "best static plan: $" in summary and "how:" in summary
    assert float(artifacts["crossing-progress"].data) == 100.0
