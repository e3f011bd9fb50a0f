"""Tests of `llama_prefect.fidelity` and `llama_prefect.plots` on hand-made reports."""

from __future__ import annotations

import pytest

from llama_prefect.fidelity import (
    Error,
    by_op,
    line_floor,
    outside_body_s,
    prediction_errors,
    summarize,
)


def _inv(op, predicted, observed, started, finished, knobs=None, state="done", **more):
    return {
        **more,
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


def _warm(op, predicted_s, observed_s, units=1.0, config="c", body_s=None):
    return Error(op, predicted_s, observed_s, False, units, config, body_s)


def test_bias_is_the_median_signed_error_and_tells_too_slow_from_too_fast():
    # Predicted twice as slow as observed, three times: +100% each.
    slow = [_warm("a", 2.0, 1.0) for _ in range(3)]
    assert summarize(slow).bias == pytest.approx(1.0)
    # Half of them 4x too fast (-75%): the signed median is the lower middle one.
    mixed = slow[:2] + [_warm("a", 0.25, 1.0) for _ in range(2)]
    summary = summarize(mixed)
    assert summary.bias == pytest.approx(-0.75)
    assert summary.median == pytest.approx(0.75)  # |-0.75| and 1.0, lower middle


def test_report_bias_by_hand():
    errors = prediction_errors(REPORT)
    # people after warm-up: 1.0 for 1.0 (0), 1.0 for 1.25 (-0.2), 1.0 for 0.8 (+0.25)
    assert summarize(errors, op="people").bias == pytest.approx(0.0)
    late = {"invocations": REPORT["invocations"][:3]}
    (third,) = [e for e in prediction_errors(late) if not e.warmup]
    assert third.signed == pytest.approx(0.0)
    assert summarize(prediction_errors(late)).bias == pytest.approx(0.0)


def test_the_floor_is_zero_when_each_configuration_lies_on_its_own_line():
    # Two configurations on different lines (0.2 + 0.01 u, and 0.5 u), predicted
    # badly: the prediction errs, the fitted lines do not.
    errors = [_warm("m", 1.0, 0.2 + 0.01 * u, u, "one") for u in (10, 40, 90)]
    errors += [_warm("m", 1.0, 0.5 * u, u, "two") for u in (1, 2, 3)]
    assert summarize(errors).median > 0.3
    floor = line_floor(errors)
    assert floor.n == 6
    assert floor.median == pytest.approx(0.0, abs=1e-9)
    assert floor.p95 == pytest.approx(0.0, abs=1e-9)


def test_the_floor_of_noise_at_one_size_by_hand():
    # One size, observed 1.0 and 2.0: the constant c minimizing (c - 1)^2 +
    # ((c - 2) / 2)^2 is 1.2, which errs by 0.2 and 0.4.
    errors = [_warm("p", 9.0, 1.0, 5.0), _warm("p", 9.0, 2.0, 5.0)]
    floor = line_floor(errors)
    assert floor.median == pytest.approx(0.2)
    assert floor.p95 == pytest.approx(0.4)


def test_the_floor_keeps_both_parts_of_its_line_non_negative():
    # A falling cloud would fit a negative slope: the constant or the proportional
    # line is taken instead, whichever errs less (here the constant 1.2).
    errors = [_warm("p", 1.0, 2.0, 1.0), _warm("p", 1.0, 1.0, 2.0)]
    floor = line_floor(errors)
    assert floor.median == pytest.approx(0.2)
    assert floor.p95 == pytest.approx(0.4)


def test_time_outside_the_body_is_the_median_of_observed_less_body_s():
    report = {
        "invocations": [
            _inv("f", 1.0, 1.0, 0.0, 1.0, body_s=0.9),  # warm-up
            _inv("f", 1.0, 1.0, 1.0, 2.0, body_s=0.7),  # 0.3 outside
            _inv("f", 1.0, 0.5, 2.0, 2.5, body_s=0.4),  # 0.1 outside
            _inv("f", 1.0, 0.6, 2.5, 3.1, body_s=0.4),  # 0.2 outside
            _inv("g", 1.0, 0.6, 0.0, 0.6),  # no body_s
        ]
    }
    errors = prediction_errors(report)
    assert outside_body_s(errors, op="f") == pytest.approx(0.2)
    assert outside_body_s(errors, op="g") is None


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


def test_a_run_with_nothing_to_plot_draws_without_a_warning(tmp_path):
    # Every video came from stored results: no invocation ran, nothing to label.
    pytest.importorskip("matplotlib", reason="the plots extra is not installed")
    import warnings

    from llama_prefect.plots import fidelity_plot

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = fidelity_plot(
            {"pipeline": "crossing", "invocations": []}, tmp_path / "f.png"
        )
    assert path.read_bytes()[:4] == b"\x89PNG"
