"""The proxy body's rules, without Prefect: first success wins, cancelled attempts
never start, a retry asks for a new attempt, a batched call is shared.

The runner's side (`AttemptHooks`) is a stand-in that answers as the scheduler would
for the scripted case; the attempts run on a real thread pool.
"""

from __future__ import annotations

import concurrent.futures
import threading
from types import SimpleNamespace

import pytest

from llama_prefect.errors import TransientError
from llama_prefect.proxy import BatchCall, InvocationBody


def _attempt(n: int, kind: str = "first") -> SimpleNamespace:
    return SimpleNamespace(
        id=f"a{n}", op="op", number=n, injected=None, call=object(), kind=kind
    )


class Hooks:
    """Scripted runner side: `results` says (won, more) per attempt id."""

    def __init__(self, results: dict[str, tuple[bool, bool]]) -> None:
        self.results = results
        self.ended_ids: list[str] = []
        self.withdrawn_ids: list[str] = []
        self.on_again = lambda: True

    def execute(self, attempt, fn, kwargs):
        return fn(**kwargs, n=attempt.number)

    def knobs(self, attempt):
        return {}

    def ended(self, attempt, error):
        self.ended_ids.append(attempt.id)
        return self.results[attempt.id]

    def withdrawn(self, attempt):
        self.withdrawn_ids.append(attempt.id)

    def refused(self, attempt, error, refusals):
        return False

    def again(self, invocation_id):
        return self.on_again()


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(8) as workers:
        yield workers


def _body(fn, hooks, pool) -> InvocationBody:
    return InvocationBody("inv", fn, hooks, pool, 1.0, {})


def test_the_first_success_wins_and_a_later_one_is_dropped(pool):
    slow_may_end = threading.Event()
    calls = []

    def fn(x, n):
        calls.append(n)
        if n == 1:
            slow_may_end.wait(10)
        return (x, n)

    hooks = Hooks({"a1": (False, False), "a2": (True, False)})
    body = _body(fn, hooks, pool)
    body.add_attempt(_attempt(1))
    body.add_attempt(_attempt(2, "duplicate"))
    assert body(x=7) == (7, 2)  # the duplicate's
    slow_may_end.set()
    pool.shutdown(wait=True)
    assert sorted(calls) == [1, 2] and sorted(hooks.ended_ids) == ["a1", "a2"]
    assert body.started == {"a1", "a2"}


def test_an_attempt_cancelled_before_it_starts_never_runs(pool):
    calls = []

    def fn(x, n):
        calls.append(n)
        return n

    hooks = Hooks({"a2": (True, False)})
    body = _body(fn, hooks, pool)
    first, second = _attempt(1), _attempt(2, "duplicate")
    body.add_attempt(first)
    body.cancel(first.id)
    body.add_attempt(second)
    assert body(x=0) == 2
    pool.shutdown(wait=True)
    assert calls == [2] and hooks.withdrawn_ids == ["a1"]


def test_a_failure_goes_to_the_engine_and_its_retry_gets_a_new_attempt(pool):
    def fn(x, n):
        if n == 1:
            raise TransientError("lost")
        return n

    hooks = Hooks({"a1": (False, False), "a2": (True, False)})
    body = _body(fn, hooks, pool)
    body.add_attempt(_attempt(1))
    with pytest.raises(TransientError, match="lost"):
        body(x=0)

    def again():
        body.add_attempt(_attempt(2, "retry"))  # the scheduler re-plans it
        return True

    hooks.on_again = again
    assert body(x=0) == 2 and body.calls == 2


def test_a_retry_after_the_result_was_delivered_gets_the_same_result(pool):
    hooks = Hooks({"a1": (True, False)})
    body = _body(lambda x, n: [x], hooks, pool)
    body.add_attempt(_attempt(1))
    first = body(x=3)
    hooks.on_again = lambda: False  # the invocation has ended
    assert body(x=3) is first and hooks.ended_ids == ["a1"]


def test_the_seconds_in_the_op_body_are_kept_per_attempt(pool):
    import time

    def fn(x, n):
        time.sleep(0.05)
        return x

    hooks = Hooks({"a1": (True, False)})
    body = _body(fn, hooks, pool)
    body.add_attempt(_attempt(1))
    assert body(x=3) == 3
    assert set(body.body_s) == {"a1"}
    assert body.body_s["a1"] >= 0.05  # it slept that long inside the body


def test_members_of_a_batched_call_share_one_call_and_take_their_own_output():
    seen = []

    def batch_fn(inputs):
        seen.append([p["x"] for p in inputs])
        return [10 * p["x"] for p in inputs]

    batch = BatchCall(object(), ["i0", "i1", "i2"], batch_fn, lambda x: -x)
    with concurrent.futures.ThreadPoolExecutor(3) as workers:
        futures = {
            m: workers.submit(batch.join, m, {"x": i})
            for i, m in enumerate(batch.members)
        }
        outputs = {m: f.result(timeout=10) for m, f in futures.items()}
    assert outputs == {"i0": 0, "i1": 10, "i2": 20}
    assert len(seen) == 1 and sorted(seen[0]) == [0, 1, 2]
    assert batch.join("i3", {"x": 4}) == -4  # after the call ran: alone
