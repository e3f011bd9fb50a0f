"""Re-planning after a backend refused an invocation, and backend-only knobs.

A remote backend that throttles, times out or has no capacity hands its invocation
back with `Scheduler.release`; a cool-down (`mark_unavailable`) keeps the whole
backend out of plans for a while, and `avoid` keeps one invocation off a backend.
"""

from __future__ import annotations

from llama_prefect.core.clock import SimClock
from llama_prefect.core.pipeline import Configuration, OpSpec, Pipeline
from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.core.profiles import ProfileStore
from llama_prefect.core.scheduler import BackendSlots, Scheduler, Settings, State

CPU, LAMBDA = "local-cpu", "lambda"
ON_CPU = Configuration.of(CPU, {})
ON_LAMBDA = Configuration.of(LAMBDA, {"memory_mb": 1769})


def _scheduler(late_commit: bool = True) -> tuple[Scheduler, SimClock]:
    p = Pipeline("p")
    p.add_op(
        OpSpec(
            "work",
            backends=(CPU, LAMBDA),
            backend_knobs={LAMBDA: {"memory_mb": (1769,)}},
        )
    )
    store = ProfileStore("p")
    store.seed("work", ON_CPU, 4.0)
    store.seed("work", ON_LAMBDA, 1.0)  # faster and cheaper: always planned first
    clock = SimClock()
    backends = {CPU: BackendSlots(CPU, 2), LAMBDA: BackendSlots(LAMBDA, 10)}
    settings = Settings(deadline_s=1000.0, late_commit=late_commit)
    return Scheduler(p, store, PriceCatalog.load(), backends, settings, clock), clock


def _committed(sched: Scheduler, inv_id: str) -> str:
    sched.add(inv_id, "work", 1.0, "g")
    sched.mark_ready(inv_id)
    (inv,) = sched.commit_ready()
    assert inv.plan is not None
    return inv.plan.config.backend


def test_backend_knobs_are_searched_only_on_their_backend():
    spec = OpSpec(
        "w",
        knobs={"sample_every": (1, 2)},
        backends=(CPU, LAMBDA),
        backend_knobs={LAMBDA: {"memory_mb": (1024, 3008)}},
    )
    configs = spec.configurations()
    assert sum(c.backend == CPU for c in configs) == 2
    assert sum(c.backend == LAMBDA for c in configs) == 4
    assert all("memory_mb" not in c.as_dict() for c in configs if c.backend == CPU)
    assert spec.reference_configuration(LAMBDA).as_dict()["memory_mb"] == 1024


def test_a_released_invocation_frees_its_slot_and_is_planned_again_elsewhere():
    sched, clock = _scheduler()
    assert _committed(sched, "a") == LAMBDA
    assert sched.used_slots()[LAMBDA] == 1

    sched.mark_unavailable(LAMBDA, until_s=clock.now() + 30.0)
    inv = sched.release("a", error="throttled")
    assert inv.state is State.READY and sched.used_slots()[LAMBDA] == 0
    assert inv.failures == 0  # a refusal is not a failure of the invocation

    (again,) = sched.commit_ready()
    assert again.invocation.id == "a" and again.plan.config.backend == CPU
    assert sched.attempts["a"].error == "throttled"


def test_a_cooled_down_backend_is_planned_on_again_after_its_cool_down():
    sched, clock = _scheduler()
    sched.mark_unavailable(LAMBDA, until_s=clock.now() + 30.0)
    assert LAMBDA not in sched.available_backends()
    assert _committed(sched, "a") == CPU
    clock.advance(30.0)
    assert _committed(sched, "b") == LAMBDA


def test_an_avoided_backend_stays_out_for_that_invocation_only():
    sched, _ = _scheduler()
    assert _committed(sched, "a") == LAMBDA
    sched.release("a", error="timed out", avoid=[LAMBDA])
    (again,) = sched.commit_ready()
    assert again.plan.config.backend == CPU
    assert _committed(sched, "b") == LAMBDA  # the backend itself is fine


def test_without_late_commit_a_refused_speculative_plan_is_replaced():
    sched, _ = _scheduler(late_commit=False)
    assert _committed(sched, "a") == LAMBDA
    sched.release("a", error="timed out", avoid=[LAMBDA])
    (again,) = sched.commit_ready()
    assert again.plan.config.backend == CPU
