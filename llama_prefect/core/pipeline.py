"""Pipelines: the DAG of operations, their knob spaces and the expected shape of work.

A pipeline is declared once in Python. Each op names its knobs and the backends it may
run on; each edge says how many invocations of the downstream op one upstream invocation
is expected to create (`fanout`) and how often the branch fires at all (`fire_prob`).
Ops marked `gather` run once per source invocation (one per video) whatever the fan-out
above them. The declared numbers are priors: the profile store learns the real ones.

This module is pure Python plus networkx: no Prefect, no decoders, no torch.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from llama_prefect.errors import ConfigurationError

KnobValue = str | int | float | bool
KnobSpace = Mapping[str, tuple[KnobValue, ...]]

#: Knob that a backend sets itself (the torch device of a local GPU, for instance).
DEVICE_KNOB = "device"
#: Knob that sets how many slots of its backend one invocation occupies.
THREADS_KNOB = "threads"
#: Knob that sets how many invocations one call of a batched op takes at most. (The
#: frames per forward pass inside one invocation are an ordinary knob besides this.)
CALL_BATCH_KNOB = "call_batch"


@dataclass(frozen=True, order=True)
class Configuration:
    """One value for every knob of an op, plus the backend it runs on.

    Attributes:
        backend: Name of the backend, e.g. ``"local-cpu"``.
        knobs: ``(name, value)`` pairs sorted by name, so equal settings compare equal.
    """

    backend: str
    knobs: tuple[tuple[str, KnobValue], ...] = ()

    @classmethod
    def of(cls, backend: str, knobs: Mapping[str, KnobValue]) -> Configuration:
        """Builds a configuration from a mapping of knob values."""
        return cls(backend, tuple(sorted(knobs.items())))

    @functools.cached_property
    def key(self) -> str:
        """A stable text key such as ``local-cpu|sample_every=5,width_px=480``."""
        body = ",".join(f"{name}={value}" for name, value in self.knobs)
        return f"{self.backend}|{body}"

    @classmethod
    def from_key(cls, key: str) -> Configuration:
        """Parses a key made by `key`; values come back as int, float, bool or str."""
        backend, _, body = key.partition("|")
        knobs = {}
        for item in filter(None, body.split(",")):
            name, _, text = item.partition("=")
            knobs[name] = _parse_value(text)
        return cls.of(backend, knobs)

    def as_dict(self) -> dict[str, KnobValue]:
        """The knob values as a plain dict (without the backend)."""
        return dict(self.knobs)

    @functools.cached_property
    def slots(self) -> int:
        """Slots of its backend that one invocation with this configuration holds."""
        return int(self.as_dict().get(THREADS_KNOB, 1))

    @functools.cached_property
    def call_batch(self) -> int:
        """Invocations one call with this configuration takes at most (1: unbatched)."""
        return max(1, int(self.as_dict().get(CALL_BATCH_KNOB, 1)))


def _parse_value(text: str) -> KnobValue:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class OpSpec:
    """An operation of a pipeline: its knob space and where it may run.

    Attributes:
        name: The op's name; by default also the name of its Prefect task.
        knobs: Values each knob may take. The first value of each is the default.
        backends: Backends the op may run on, in order of preference for ties.
        unit: What one unit of work is (``"frame"``, ``"video"``, ``"segment"``).
        gather: True when the op runs once per source invocation (a fan-in).
        reference: The most accurate configuration's knob values; accuracy of every
            other configuration is measured against it. Defaults to the first values.
        device_by_backend: Value of the ``device`` knob on each backend, when the op
            has one; the backend decides it, so it is not searched.
        backend_knobs: Knobs that exist on one backend only, such as a Lambda
            function's ``memory_mb``; searched on that backend alongside `knobs`.
        units_of: Work units of one invocation from its resolved task parameters.
        group_of: The source item (video) an invocation belongs to, from its
            parameters; invocations of one group share a fan-out.
        batch_fn: The op's body over a list of parameter sets, returning one output
            per set, for configurations with a ``call_batch`` knob: several
            invocations committed together share one call of it.
    """

    name: str
    knobs: KnobSpace = field(default_factory=dict)
    backends: tuple[str, ...] = ("local-cpu",)
    unit: str = "frame"
    gather: bool = False
    reference: Mapping[str, KnobValue] | None = None
    device_by_backend: Mapping[str, str] = field(default_factory=dict)
    backend_knobs: Mapping[str, KnobSpace] = field(default_factory=dict)
    units_of: Callable[[Mapping[str, Any]], float] | None = None
    group_of: Callable[[Mapping[str, Any]], str] | None = None
    batch_fn: Callable[[list[dict[str, Any]]], list[Any]] | None = None

    def __post_init__(self) -> None:
        for knob, values in self.knobs.items():
            if not values:
                raise ConfigurationError(
                    f"op {self.name!r}: knob {knob!r} must list at least one value, "
                    "but got none. Give it a tuple of values."
                )
        if not self.backends:
            raise ConfigurationError(f"op {self.name!r} must name at least one backend")

    def configurations(
        self, backends: Iterable[str] | None = None
    ) -> list[Configuration]:
        """Every configuration of the op on the given backends (default: all of its).

        The ``device`` knob is not searched: each backend fixes it.
        """
        chosen = self.backends if backends is None else tuple(backends)
        common = {k: v for k, v in self.knobs.items() if k != DEVICE_KNOB}
        configs = []
        for backend in chosen:
            if backend not in self.backends:
                continue
            searched = {**common, **self.backend_knobs.get(backend, {})}
            names = sorted(searched)
            for values in itertools.product(*(searched[n] for n in names)):
                knobs: dict[str, KnobValue] = dict(zip(names, values, strict=True))
                if DEVICE_KNOB in self.knobs:
                    knobs[DEVICE_KNOB] = self.device_by_backend.get(backend, "cpu")
                configs.append(Configuration.of(backend, knobs))
        return configs

    def reference_configuration(self, backend: str) -> Configuration:
        """The reference configuration on `backend`."""
        knobs = {k: v[0] for k, v in self.knobs.items()}
        knobs.update({k: v[0] for k, v in self.backend_knobs.get(backend, {}).items()})
        knobs.update(self.reference or {})
        if DEVICE_KNOB in self.knobs:
            knobs[DEVICE_KNOB] = self.device_by_backend.get(backend, "cpu")
        return Configuration.of(backend, knobs)

    def units(self, parameters: Mapping[str, Any]) -> float:
        """Work units of an invocation; 1 when the op declares no `units_of`."""
        return float(self.units_of(parameters)) if self.units_of else 1.0

    def group(self, parameters: Mapping[str, Any]) -> str | None:
        """The source item an invocation belongs to, when the op declares `group_of`."""
        return self.group_of(parameters) if self.group_of else None


class Pipeline:
    """A DAG of ops with expected fan-out and branch odds on its edges.

    Example:
        >>> p = Pipeline("demo")
        >>> p.add_op(OpSpec("split", unit="video"))
        >>> p.add_op(OpSpec("detect"))
        >>> p.add_edge("split", "detect", fanout=8)
        >>> p.paths_from("split")
        [['split', 'detect']]
        >>> p.expected_counts()["detect"]
        8.0
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.graph: nx.DiGraph = nx.DiGraph()
        self.ops: dict[str, OpSpec] = {}

    def add_op(self, spec: OpSpec) -> None:
        """Adds an op; its name must be new."""
        if spec.name in self.ops:
            raise ConfigurationError(
                f"pipeline {self.name!r} already has an op named {spec.name!r}"
            )
        self.ops[spec.name] = spec
        self.graph.add_node(spec.name)

    def add_edge(
        self,
        upstream: str,
        downstream: str,
        *,
        fanout: float = 1.0,
        fire_prob: float = 1.0,
    ) -> None:
        """Declares that `downstream` consumes what `upstream` makes.

        Args:
            upstream: Name of the producing op.
            downstream: Name of the consuming op.
            fanout: Expected downstream invocations per upstream invocation that fires.
            fire_prob: Probability that the branch fires at all, in [0, 1].
        """
        for name in (upstream, downstream):
            if name not in self.ops:
                raise ConfigurationError(
                    f"pipeline {self.name!r} has no op {name!r}; add it with add_op "
                    "first"
                )
        if fanout <= 0 or not 0.0 <= fire_prob <= 1.0:
            raise ConfigurationError(
                f"edge {upstream}->{downstream}: fanout must be > 0 and fire_prob in "
                f"[0, 1], but got fanout={fanout}, fire_prob={fire_prob}"
            )
        self.graph.add_edge(upstream, downstream, fanout=fanout, fire_prob=fire_prob)
        if not nx.is_directed_acyclic_graph(self.graph):
            self.graph.remove_edge(upstream, downstream)
            raise ConfigurationError(
                f"edge {upstream}->{downstream} would close a cycle; a pipeline is "
                "a DAG"
            )

    def sources(self) -> list[str]:
        """Ops without upstream ops."""
        return [n for n in self.graph if self.graph.in_degree(n) == 0]

    def sinks(self) -> list[str]:
        """Ops without downstream ops."""
        return [n for n in self.graph if self.graph.out_degree(n) == 0]

    def paths(self) -> list[list[str]]:
        """Every source-to-sink path."""
        return [p for s in self.sources() for p in self.paths_from(s)]

    def paths_from(self, op: str) -> list[list[str]]:
        """Every path from `op` to a sink, `op` included."""
        if self.graph.out_degree(op) == 0:
            return [[op]]
        return [
            path
            for sink in self.sinks()
            for path in nx.all_simple_paths(self.graph, op, sink)
        ]

    def depth(self, op: str) -> int:
        """Length of the longest path from a source to `op` (sources have depth 0)."""
        return max(
            (
                len(p) - 1
                for s in self.sources()
                for p in nx.all_simple_paths(self.graph, s, op)
            ),
            default=0,
        )

    def expected_counts(
        self,
        edge_rates: Mapping[tuple[str, str], float] | None = None,
        *,
        order: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """Expected invocations of each op per invocation of a source.

        A gather op counts 1. Any other op counts the largest, over its upstream ops,
        of the upstream count times the edge's rate (fanout x fire_prob), unless
        `edge_rates` gives a learned rate for that edge.

        Args:
            edge_rates: Learned rates of edges, by (upstream, downstream).
            order: Every op in topological order, when the caller keeps it (a
                scheduler asks after every group); by default the graph is sorted.
        """
        rates = dict(edge_rates or {})
        counts: dict[str, float] = {}
        for op in nx.topological_sort(self.graph) if order is None else order:
            parents = list(self.graph.predecessors(op))
            if not parents or self.ops[op].gather:
                counts[op] = 1.0
                continue
            counts[op] = max(
                counts[u] * rates.get((u, op), self.edge_rate(u, op)) for u in parents
            )
        return counts

    def edge_rate(self, upstream: str, downstream: str) -> float:
        """Declared expected downstream invocations per upstream invocation."""
        data = self.graph.edges[upstream, downstream]
        return float(data["fanout"]) * float(data["fire_prob"])
