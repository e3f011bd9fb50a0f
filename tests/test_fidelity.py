"""Tests of `llama_prefect.fidelity` and `llama_prefect.plots` on hand-made reports."""

from __future__ import annotations

import pytest

from llama_prefect.fidelity import by_op, prediction_errors, summarize


def _inv(op, predicted, observed, started, finished, knobs=None, state="done"):
    return {
        "op": op,
        "backend": "local-cpu",
        "configuration": knobs or {"k": 1},
        "predicted_s": predicted,
        "observed_s": observed,
        "started_s": started,
        "finished_s": finished,
        "state": state,
    }


REPORT = {
    "pipeline": "crossing",
    "invocations": [
        # two cold starts side by side: both warm-up
        _inv("people", 1.0, 3.0, 0.0, 3.0),
        _inv("people", 1.0, 2.5, 0.1, 2.6),
        _inv("people", 1.0, 1.0, 3.0, 4.0),  # error 0
        _inv("people", 1.0, 1.25, 4.0, 5.25),  # error 0.2
        _inv("people", 1.0, 0.8, 5.0, 5.8),  # error 0.25
        _inv("motion", 0.5, 0.4, 0.0, 0.4),  # warm-up of its configuration
        _inv("motion", 0.5, 0.5, 0.5, 1.0),  # error 0
        _inv("motion", 0.5, None, 1.0, None, state="failed"),
    ],
}


def test_cold_starts_side_by_side_are_all_warm_up():
    errors = prediction_errors(REPORT)
    assert [e.warmup for e in errors if e.op == "people"] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert len(errors) == 7  # the failed invocation has no observed latency


def test_median_and_p95_after_warm_up_by_hand():
    errors = prediction_errors(REPORT)
    people = summarize(errors, op="people")
    assert people.n == 3
    assert people.median == pytest.approx(0.2)
    assert people.p95 == pytest.approx(0.25)
    assert people.within_10pct == pytest.approx(1 / 3)
    overall = summarize(errors)
    assert overall.n == 4 and overall.median == pytest.approx(0.0)
    assert set(by_op(errors)) == {"people", "motion"}


def test_nothing_after_warm_up_gives_no_summary():
    report = {"invocations": [_inv("split", 1.0, 2.0, 0.0, 2.0)]}
    assert summarize(prediction_errors(report)) is None


def test_fidelity_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plots extra is not installed")
    from llama_prefect.plots import fidelity_plot, publish_png

    path = fidelity_plot(REPORT, tmp_path / "fidelity.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert publish_png(path, "k", "no flow run here") is False
