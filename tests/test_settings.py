"""Run settings are validated with messages that name the setting and the fix."""

from __future__ import annotations

import pytest

from llama_prefect.errors import ConfigurationError
from llama_prefect.settings import RunSettings


def test_good_settings_pass_and_default_to_cost():
    s = RunSettings.check(slo_s=30)
    assert s.slo_s == 30.0 and s.objective == "cost" and s.accuracy_floor == 0.0


@pytest.mark.parametrize(
    "values, named",
    [
        ({"slo_s": 0}, "slo_s"),
        ({"slo_s": float("nan")}, "slo_s"),
        ({"slo_s": 10, "objective": "fastest"}, "objective"),
        ({"slo_s": 10, "accuracy_floor": -0.1}, "accuracy_floor"),
        ({"slo_s": 10, "colour": "red"}, "colour"),
    ],
)
def test_bad_settings_raise_a_configuration_error_naming_them(values, named):
    with pytest.raises(ConfigurationError, match=named) as info:
        RunSettings.check(**values)
    assert isinstance(info.value, ValueError)
    assert "got" in str(info.value)
