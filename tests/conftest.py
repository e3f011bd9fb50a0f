"""Shared fixtures: a Prefect server for the tests that run flows."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's test harness: a temporary local server for this test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# The moto server fixtures serve every AWS test (see tests/aws_moto.py).
from aws_moto import moto, moto_url  # noqa: E402, F401
