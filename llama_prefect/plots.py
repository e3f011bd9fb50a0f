"""Plots of what exploration found and how well its predictions held, as PNG files.

* `pareto_plots`: one figure per explored (op, backend): every trial's latency and cost
  per unit of work, feasible trials coloured by accuracy, the feasible Pareto front
  joined by a line, the reference and the seeded configurations marked.
* `fidelity_plot`: predicted against observed latency of every invocation of a run
  report, with the 10% and 30% bands, the warm-up shown apart, and the median and p95
  error per op.

Matplotlib (the ``plots`` extra) is imported when a plot is drawn, with the Agg
backend, so nothing opens a window. `publish_png` turns a file into a Prefect image
artifact when a flow or task run is active.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_prefect.fidelity import Error, by_op, prediction_errors, summarize

logger = logging.getLogger(__name__)

_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# -- Pareto fronts ---------------------------------------------------------------------


def pareto_plots(result: Any, folder: str | Path) -> list[Path]:
    """One Pareto figure per explored (op, backend) of an `ExplorationResult`.

    Ops with a single configuration (nothing to choose) are left out.

    Returns:
        The PNG files written, ``pareto-OP-BACKEND.png`` in `folder`.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for record in result.ops:
        if len(record.measured) < 2:
            continue
        path = out / f"pareto-{record.op}-{record.backend}.png"
        pareto_plot(record, path)
        written.append(path)
    return written


def pareto_plot(record: Any, path: str | Path) -> Path:
    """Draws one op's trials and its feasible front (an `OpExploration`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 5.6))
    floor = record.accuracy_floor
    feasible = [m for m in record.measured if m.accuracy >= floor]
    infeasible = [m for m in record.measured if m.accuracy < floor]
    _scatter_trials(ax, feasible, infeasible)
    _draw_front(ax, record.front)
    _mark_seeds(ax, record)
    _log_axes(ax)
    ax.set_xlabel("latency per unit of work (s)")
    ax.set_ylabel("cost per unit of work ($)")
    failed = f", {len(record.failed)} failed" if record.failed else ""
    ax.set_title(
        f"{record.op} on {record.backend}: {len(record.measured)} configurations"
        f"{failed}; {len(record.front)} on the front at accuracy >= {floor:.2f}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)


def _scatter_trials(
    ax: Any, feasible: Sequence[Any], infeasible: Sequence[Any]
) -> None:
    if infeasible:
        ax.scatter(
            [m.s_per_unit for m in infeasible],
            [m.cost_usd_per_unit for m in infeasible],
            marker="x",
            color="0.6",
            label="below the accuracy floor",
        )
    if feasible:
        points = ax.scatter(
            [m.s_per_unit for m in feasible],
            [m.cost_usd_per_unit for m in feasible],
            c=[m.accuracy for m in feasible],
            cmap="viridis",
            vmin=min(m.accuracy for m in feasible),
            vmax=1.0,
            s=36,
            label="feasible",
        )
        ax.figure.colorbar(points, ax=ax, label="accuracy against the reference")


def _draw_front(ax: Any, front: Sequence[Any]) -> None:
    if not front:
        return
    ordered = sorted(front, key=lambda m: m.s_per_unit)
    ax.step(
        [m.s_per_unit for m in ordered],
        [m.cost_usd_per_unit for m in ordered],
        where="post",
        color="tab:red",
        linewidth=1.2,
        label="Pareto front (feasible)",
    )
    for m in ordered:
        ax.annotate(
            short_label(m.config.as_dict()),
            (m.s_per_unit, m.cost_usd_per_unit),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
            color="tab:red",
        )


def _mark_seeds(ax: Any, record: Any) -> None:
    seeded = [m for m in record.seeded if m not in record.front]
    if seeded:
        ax.scatter(
            [m.s_per_unit for m in seeded],
            [m.cost_usd_per_unit for m in seeded],
            facecolors="none",
            edgecolors="tab:orange",
            s=110,
            linewidths=1.5,
            label="also seeded (reference, fastest)",
        )
    reference = record.measured[0] if record.measured else None
    if reference is not None:
        ax.scatter(
            [reference.s_per_unit],
            [reference.cost_usd_per_unit],
            marker="*",
            s=180,
            color="black",
            label="reference",
            zorder=5,
        )


def _log_axes(ax: Any) -> None:
    """Log scales labelled at 1, 2 and 5 times powers of ten, nothing in between."""
    from matplotlib.ticker import LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("log")
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())


def short_label(knobs: Mapping[str, Any]) -> str:
    """Knob values in a few characters: ``opencv se10 wp768 wsp8 t1``."""
    parts = []
    for name, value in sorted(knobs.items()):
        if name == "device":
            continue
        if isinstance(value, str):
            parts.append(value)
        else:
            initials = "".join(word[0] for word in name.split("_"))
            parts.append(f"{initials}{value}")
    return " ".join(parts)


# -- predicted against observed --------------------------------------------------------


def fidelity_plot(report: Mapping[str, Any], path: str | Path) -> Path:
    """Predicted against observed latency of every invocation of a run report."""
    plt = _pyplot()
    errors = prediction_errors(report)
    fig, ax = plt.subplots(figsize=(7.4, 6.4))
    if errors:
        _bands(ax, errors)
        _scatter_ops(ax, errors)
    overall = summarize(errors)
    headline = (
        f"after warm-up: median error {overall.median:.0%}, p95 {overall.p95:.0%} "
        f"over {overall.n} invocations"
        if overall
        else "no invocation after warm-up"
    )
    ax.set_title(f"{report.get('pipeline', '')}: predicted vs observed\n{headline}")
    ax.set_xlabel("predicted latency of the run (s)")
    ax.set_ylabel("observed latency (s)")
    ax.grid(True, which="both", alpha=0.25)
    if errors:  # a run whose every video was stored before has nothing to label
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)


def _bands(ax: Any, errors: Sequence[Error]) -> None:
    values = [e.predicted_s for e in errors] + [e.observed_s for e in errors]
    low, high = min(values) * 0.7, max(values) * 1.4
    line = [low, high]
    ax.fill_between(
        line,
        [v / 1.3 for v in line],
        [v * 1.3 for v in line],
        color="tab:blue",
        alpha=0.08,
        label="within 30%",
    )
    ax.fill_between(
        line,
        [v / 1.1 for v in line],
        [v * 1.1 for v in line],
        color="tab:blue",
        alpha=0.16,
        label="within 10%",
    )
    ax.plot(line, line, color="black", linewidth=0.8, label="observed = predicted")
    _log_axes(ax)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)


def _scatter_ops(ax: Any, errors: Sequence[Error]) -> None:
    stats = by_op(errors)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, op in enumerate(sorted({e.op for e in errors})):
        colour = colours[i % len(colours)]
        warm = [e for e in errors if e.op == op and not e.warmup]
        cold = [e for e in errors if e.op == op and e.warmup]
        s = stats.get(op)
        label = f"{op}: median {s.median:.0%}, p95 {s.p95:.0%} (n={s.n})" if s else op
        ax.scatter(
            [e.predicted_s for e in warm],
            [e.observed_s for e in warm],
            s=18,
            color=colour,
            label=label,
        )
        if cold:
            ax.scatter(
                [e.predicted_s for e in cold],
                [e.observed_s for e in cold],
                s=30,
                facecolors="none",
                edgecolors=colour,
            )
    ax.scatter(
        [], [], s=30, facecolors="none", edgecolors="0.3", label="warm-up (not counted)"
    )


# -- Prefect artifacts -----------------------------------------------------------------


def publish_png(path: str | Path, key: str, description: str) -> bool:
    """Publishes a PNG as a Prefect image artifact when a flow or task run is active.

    The image travels inside the artifact as a ``data:`` URL, so the UI shows it
    without access to this machine's files.

    Returns:
        True when an artifact was created.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return False
    from prefect.artifacts import create_image_artifact

    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    create_image_artifact(
        image_url=f"data:image/png;base64,{encoded}",
        key=key,
        description=f"{description} (file: {path})",
    )
    return True


def publish_run_plots(report: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Draws the fidelity plot of a run report and publishes it as an artifact."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = fidelity_plot(report, out / "fidelity.png")
    key = f"{str(report.get('pipeline', 'run')).lower().replace('_', '-')}-fidelity"
    publish_png(path, key, "Predicted against observed latency per invocation")
    return [path]
