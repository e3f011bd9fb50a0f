"""Plain-text tables of a benchmark report, as `llama-prefect bench` prints them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

COLUMNS = (
    ("policy", "{:<17}"),
    ("drift", "{:>5}"),
    ("level", "{:>5}"),
    ("slo_s", "{:>7}"),
    ("attainment", "{:>7}"),
    ("p50_s", "{:>7}"),
    ("p95_s", "{:>7}"),
    ("cost_usd", "{:>9}"),
    ("x_oracle", "{:>8}"),
    ("x_oracle_met", "{:>8}"),
    ("oracle_attainment", "{:>7}"),
)
HEADER = (
    "policy",
    "drift",
    "level",
    "slo_s",
    "attain",
    "p50_s",
    "p95_s",
    "cost_usd",
    "x_orcl",
    "x_o_met",
    "o_att",
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return fmt.format("-")
    if isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return fmt.format(text)
    return fmt.format(str(value))


def rows_table(rows: Iterable[dict[str, Any]], extra: tuple[str, ...] = ()) -> str:
    """The rows of a report as aligned columns, with `extra` keys as more columns."""
    columns = COLUMNS + tuple((key, "{:>5}") for key in extra)
    header = HEADER + tuple(extra)
    head = " ".join(fmt.format(h) for (_, fmt), h in zip(columns, header, strict=True))
    lines = [head]
    for row in rows:
        lines.append(" ".join(_cell(row.get(key), fmt) for key, fmt in columns))
    return "\n".join(lines)


def simulated_tables(report: dict[str, Any]) -> str:
    """Every table of a simulated benchmark report."""
    out = []
    for name, w in report["workloads"].items():
        cal = w["calibration"]
        out.append(
            f"== workload {name} (accuracy floor {w['floor']}); Llama-fast p95 "
            f"{cal['fast_p95_s']} s (slowest {_seconds(cal.get('fast_max_s'))}), "
            f"Llama-cheap p95 {cal['cheap_p95_s']} s (slowest "
            f"{_seconds(cal.get('cheap_max_s'))})"
            + (" (levels up to twice Llama-fast's)" if cal.get("flat") else "")
            + "; SLO levels "
            + ", ".join(f"{k}: {v} s" for k, v in w["slo_levels"].items())
        )
        rows = sorted(w["rows"], key=lambda r: (r["drift"], r["level"], r["policy"]))
        out.append(rows_table(rows))
        mid = _level_of(w["ablations"] or w["failures"])
        out.append(f"-- ablations (level {mid}, drift 1.3)")
        out.append(rows_table(w["ablations"]))
        out.append(f"-- injected failures (level {mid}, no drift)")
        out.append(rows_table(w["failures"]))
        out.append(
            "-- static plan tuned on the street archive, run on the busy one "
            "(drift 1.3)"
        )
        out.append(
            rows_table(sorted(w["transfer"], key=lambda r: (r["level"], r["policy"])))
        )
        out.extend(_draws_lines(w, mid))
        out.append(
            "-- baselines over Llama (mean latency, billed cost; paper: 7.8x, 16x)"
        )
        for drift, per in w["vs_baselines"].items():
            if drift == "paper":
                continue
            cells = ", ".join(
                f"{b} {v.get('latency_x')}x / {v.get('cost_x')}x"
                for b, v in per.items()
            )
            out.append(f"{drift}: {cells}")
        t = w["targets"]
        out.append(
            "-- targets (levels >= 0.25): min attainment "
            f"{t['min_attainment_llama_upper_levels']}, max x_oracle "
            f"{t['max_x_oracle_llama_upper_levels']}, max x_oracle_met "
            f"{t['max_x_oracle_met_llama_upper_levels']}; min attainment where "
            "the oracle meets 99% "
            f"{t.get('min_attainment_llama_upper_levels_oracle_feasible')} "
            f"({t.get('rows_oracle_feasible')} rows)"
        )
        out.append("")
    return "\n".join(out)


def _seconds(value: float | None) -> str:
    """A latency for the header: seconds, or 'never ended' (None)."""
    return "never ended" if value is None else f"{value} s"


def _level_of(rows: list[dict[str, Any]]) -> str:
    """The SLO level of a section's rows (the middle one of those asked for)."""
    return f"{rows[0]['level']:g}" if rows else "-"


def _draws_lines(w: dict[str, Any], level: str) -> list[str]:
    """Llama on other draws of the simulated truth, and their summary per drift."""
    if not w.get("draws"):
        return []
    lines = [
        f"-- Llama at level {level} on other draws of the simulated truth "
        "(column draw; the tables above are of one draw)",
        rows_table(w["draws"], extra=("draw",)),
    ]
    for drift, d in w.get("draws_summary", {}).items():
        lines.append(
            f"{drift}: x_oracle median {d['x_oracle_median']}, max "
            f"{d['x_oracle_max']}, within 1.10x in {d['within_1_10']} of "
            f"{d['draws']} draws; min attainment {d['min_attainment']}"
        )
    return lines
