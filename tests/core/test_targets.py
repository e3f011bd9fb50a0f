"""Tests of `llama_prefect.core.targets`: stage estimates and per-invocation targets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_prefect.core.pipeline import OpSpec, Pipeline
from llama_prefect.core.targets import StageEstimate, invocation_target


def _pipeline(edges: list[tuple[str, str]], ops: list[str]) -> Pipeline:
    p = Pipeline("t")
    for op in ops:
        p.add_op(OpSpec(op))
    for u, v in edges:
        p.add_edge(u, v)
    return p


class TestStageEstimate:
    def test_fewer_remaining_than_parallelism_takes_one_invocation(self):
        # 3 invocations of 2 s on 8 slots run side by side: 3 x 2 / min(8, 3) = 2 s
        assert StageEstimate(2.0, 3.0, 8.0).stage_s == pytest.approx(2.0)

    def test_more_remaining_than_parallelism_queues(self):
        # 10 invocations of 2 s on 4 slots: 10 x 2 / 4 = 5 s
        assert StageEstimate(2.0, 10.0, 4.0).stage_s == pytest.approx(5.0)

    def test_equal_remaining_and_parallelism(self):
        # 4 x 3 / 4 = 3 s
        assert StageEstimate(3.0, 4.0, 4.0).stage_s == pytest.approx(3.0)

    @pytest.mark.parametrize("remaining", [0.0, -1.0])
    def test_no_work_left_takes_no_time(self, remaining):
        assert StageEstimate(2.0, remaining, 4.0).stage_s == 0.0

    def test_fractional_remaining_is_never_divided_below_one_slot(self):
        # An expected half invocation: width max(1, min(4, 0.5)) = 1, so 0.5 x 2 / 1
        assert StageEstimate(2.0, 0.5, 4.0).stage_s == pytest.approx(1.0)

    def test_parallelism_below_one_counts_as_one(self):
        # 3 x 2 / max(1, 0.5) = 6 s
        assert StageEstimate(2.0, 3.0, 0.5).stage_s == pytest.approx(6.0)


class TestInvocationTarget:
    @staticmethod
    def _chain_stages() -> dict[str, StageEstimate]:
        return {
            "a": StageEstimate(2.0, 1.0, 1.0),  # 1 x 2 / 1 = 2 s
            "b": StageEstimate(1.0, 8.0, 4.0),  # 8 x 1 / 4 = 2 s
            "c": StageEstimate(4.0, 1.0, 1.0),  # 1 x 4 / 1 = 4 s
        }

    def test_chain_gives_own_share_of_the_work_ahead(self):
        p = _pipeline([("a", "b"), ("b", "c")], ["a", "b", "c"])
        target = invocation_target(p, "a", 2.0, 80.0, self._chain_stages())
        # ahead = 2 + 2 + 4 = 8 s; target = 80 x 2 / 8 = 20 s
        assert target.target_s == pytest.approx(20.0)
        assert target.ahead_s == pytest.approx(8.0)
        assert target.time_left_s == 80.0
        assert target.path == ("a", "b", "c")

    def test_chain_from_a_middle_op_ignores_work_behind_it(self):
        p = _pipeline([("a", "b"), ("b", "c")], ["a", "b", "c"])
        target = invocation_target(p, "b", 1.0, 80.0, self._chain_stages())
        # ahead = b 2 + c 4 = 6 s; target = 80 x 1 / 6
        assert target.target_s == pytest.approx(80.0 / 6.0)
        assert target.path == ("b", "c")

    def test_sink_gets_all_of_its_share(self):
        p = _pipeline([("a", "b"), ("b", "c")], ["a", "b", "c"])
        target = invocation_target(p, "c", 4.0, 30.0, self._chain_stages())
        # ahead = c 4 s; target = 30 x 4 / 4 = 30 s
        assert target.target_s == pytest.approx(30.0)

    def test_diamond_worst_path_decides(self):
        # s -> x -> t and s -> y -> t
        p = _pipeline(
            [("s", "x"), ("s", "y"), ("x", "t"), ("y", "t")], ["s", "x", "y", "t"]
        )
        stages = {
            "s": StageEstimate(1.0, 1.0, 1.0),  # 1 s
            "x": StageEstimate(3.0, 1.0, 1.0),  # 3 s
            "y": StageEstimate(1.0, 12.0, 3.0),  # 12 x 1 / 3 = 4 s
            "t": StageEstimate(2.0, 1.0, 1.0),  # 2 s
        }
        target = invocation_target(p, "s", 1.0, 70.0, stages)
        # via x: ahead 1 + 3 + 2 = 6, 70 x 1 / 6 = 11.67
        # via y: ahead 1 + 4 + 2 = 7, 70 x 1 / 7 = 10   <- smaller, decides
        assert target.target_s == pytest.approx(10.0)
        assert target.path == ("s", "y", "t")
        assert target.ahead_s == pytest.approx(7.0)

    @pytest.mark.parametrize("time_left_s", [0.0, -5.0])
    def test_deadline_passed_gives_zero(self, time_left_s):
        p = _pipeline([("a", "b"), ("b", "c")], ["a", "b", "c"])
        target = invocation_target(p, "a", 2.0, time_left_s, self._chain_stages())
        assert target.target_s == 0.0
        assert target.time_left_s == time_left_s

    def test_share_never_above_one(self):
        p = _pipeline([("a", "b")], ["a", "b"])
        stages = {"a": StageEstimate(1.0, 1.0, 1.0), "b": StageEstimate(2.0, 1.0, 1.0)}
        # own 10 s against stages 1 + 2 = 3 s: ahead becomes max(3, 10) = 10, share 1
        target = invocation_target(p, "a", 10.0, 50.0, stages)
        assert target.target_s == pytest.approx(50.0)
        assert target.ahead_s == pytest.approx(10.0)

    def test_ops_missing_from_stages_count_as_no_work(self):
        p = _pipeline([("a", "b"), ("b", "c")], ["a", "b", "c"])
        stages = {"a": StageEstimate(2.0, 1.0, 1.0), "c": StageEstimate(6.0, 1.0, 1.0)}
        target = invocation_target(p, "a", 2.0, 40.0, stages)
        # ahead = a 2 + c 6 = 8 (b unknown); target = 40 x 2 / 8 = 10 s
        assert target.target_s == pytest.approx(10.0)


# -- oracle: random DAGs against paths enumerated by hand ------------------------------


def _own_stage_s(invocation_s: float, remaining: float, parallelism: float) -> float:
    if remaining <= 0:
        return 0.0
    return remaining * invocation_s / max(1.0, min(parallelism, remaining))


def _paths_by_dfs(successors: dict[str, list[str]], op: str) -> list[list[str]]:
    if not successors[op]:
        return [[op]]
    return [
        [op, *rest] for nxt in successors[op] for rest in _paths_by_dfs(successors, nxt)
    ]


@st.composite
def _random_case(draw):
    n = draw(st.integers(1, 7))
    ops = [f"op{i}" for i in range(n)]
    # Edges only from lower to higher index: always a DAG.
    edges = [
        (ops[i], ops[j])
        for i in range(n)
        for j in range(i + 1, n)
        if draw(st.booleans())
    ]
    stages = {}
    for op in ops:
        if draw(st.integers(0, 5)) == 0:
            continue  # an op without an estimate counts as no work
        stages[op] = StageEstimate(
            invocation_s=draw(st.floats(0.01, 50.0)),
            remaining=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.5, 40.0])),
            parallelism=draw(st.sampled_from([1.0, 2.0, 4.0, 64.0])),
        )
    op = draw(st.sampled_from(ops))
    own_s = draw(st.floats(0.01, 50.0))
    time_left_s = draw(st.floats(-100.0, 10_000.0))
    return ops, edges, stages, op, own_s, time_left_s


@settings(max_examples=300, deadline=None, database=None)
@given(_random_case())
def test_target_matches_brute_force_over_paths(case):
    ops, edges, stages, op, own_s, time_left_s = case
    pipeline = _pipeline(edges, ops)
    successors: dict[str, list[str]] = {o: [] for o in ops}
    for u, v in edges:
        successors[u].append(v)

    per_path = {}
    for path in _paths_by_dfs(successors, op):
        work_s = sum(
            _own_stage_s(s.invocation_s, s.remaining, s.parallelism)
            for x, s in stages.items()
            if x in path
        )
        # R x own / sum, with the share capped at 1 (own is part of the work ahead).
        share = min(1.0, own_s / work_s) if work_s > 0 else 1.0
        per_path[tuple(path)] = max(0.0, time_left_s) * share
    expected = min(per_path.values())

    got = invocation_target(pipeline, op, own_s, time_left_s, stages)

    assert got.target_s == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got.path in per_path
    assert per_path[got.path] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got.target_s <= max(0.0, time_left_s) + 1e-9
