"""Hypervolume of a two-objective front, for comparing an exploration with the grid.

Both objectives are minimized. Points are first normalized by the grid's range of each
objective (0 at the grid's best, 1 at its worst), so seconds and dollars weigh the
same, and the reference point is `REFERENCE` in normalized units on both axes: a
point at the grid's worst value still adds a sliver of area.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Reference point of the normalized hypervolume, on both axes (ours).
REFERENCE = 1.1

Point = tuple[float, float]


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """Area dominated by `points` and bounded by `reference` (both minimized).

    Points beyond the reference on either axis add nothing.
    """
    inside = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, best_y = 0.0, reference[1]
    # Sweep by the first objective: a point below every earlier one on the second
    # objective adds the strip between its value and the lowest earlier value, from
    # its first objective to the reference (later points lie right of it).
    for x, y in inside:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def normalizer(grid: Sequence[Point]) -> tuple[Point, Point]:
    """The lowest and highest value of each objective over `grid`."""
    xs, ys = [p[0] for p in grid], [p[1] for p in grid]
    return (min(xs), min(ys)), (max(xs), max(ys))


def normalized_hypervolume(points: Sequence[Point], grid: Sequence[Point]) -> float:
    """Hypervolume of `points` after normalizing both objectives by `grid`'s range."""
    (x0, y0), (x1, y1) = normalizer(grid)
    span_x, span_y = max(x1 - x0, 1e-300), max(y1 - y0, 1e-300)
    scaled = [((x - x0) / span_x, (y - y0) / span_y) for x, y in points]
    return hypervolume_2d(scaled, (REFERENCE, REFERENCE))
