"""Run settings: what one pipeline run asks for, validated before any work starts.

The same model checks the command line, the flow's parameters and the runner's
constructor, so a bad value fails the same way everywhere: with a
`ConfigurationError` that names the setting, the value received and what is allowed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llama_prefect.errors import ConfigurationError


class RunSettings(BaseModel):
    """The settings of one run.

    Attributes:
        slo_s: Seconds the whole run may take; finite and above zero.
        objective: ``cost``, ``latency`` or ``cheapest``.
        accuracy_floor: Least accuracy a configuration must have, in [0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slo_s: float = Field(gt=0, allow_inf_nan=False)
    objective: Literal["cost", "latency", "cheapest"] = "cost"
    accuracy_floor: float = Field(default=0.0, ge=0.0, le=1.0)

    @classmethod
    def check(cls, **values: Any) -> RunSettings:
        """Validates `values`, raising `ConfigurationError` with a readable message."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
                f"(got {err.get('input')!r})"
                for err in exc.errors()
            )
            raise ConfigurationError(
                f"invalid run settings: {problems}. Use a finite --slo-s above 0, "
                "--objective cost, latency or cheapest, and --accuracy-floor in [0, 1]."
            ) from None
