"""Tests of `llama_prefect.sim.backends`: start-up delays and bills, by hand."""

from __future__ import annotations

import pytest

from llama_prefect.core.pricing import PriceCatalog
from llama_prefect.sim.backends import FixedPoolModel, GpuPoolModel, LambdaModel

PRICES = PriceCatalog.load()


class TestLambda:
    def test_cold_start_then_warm_then_cold_again_after_keep_warm(self):
        lam = LambdaModel(PRICES, cold_start_s=1.0, keep_warm_s=600.0)
        assert lam.startup_hint_s(0.0) == 1.0
        assert lam.start(0.0, 1769) == 1.0  # nothing warm: cold
        lam.end(3.0, 1769, 3.0)
        assert lam.startup_hint_s(3.0) == 0.0
        assert lam.start(10.0, 1769) == 0.0  # the environment is warm
        assert lam.start(10.0, 1769) == 1.0  # a second at once: cold
        lam.end(12.0, 1769, 2.0)
        assert lam.start(700.0, 1769) == 1.0  # idle 688 s > 600 s: gone
        assert lam.cold_starts == 3 and lam.invocations == 4

    def test_memory_sizes_keep_their_own_environments(self):
        lam = LambdaModel(PRICES, cold_start_s=1.0, keep_warm_s=600.0)
        lam.start(0.0, 1024)
        lam.end(1.0, 1024, 1.0)
        assert lam.start(2.0, 3008) == 1.0

    def test_billed_per_ms_by_memory_with_the_request_fee(self):
        lam = LambdaModel(PRICES, cold_start_s=1.0, keep_warm_s=600.0)
        price = PRICES.price("lambda")
        usd = lam.end(5.0, 512, 2.0004)  # 2.0004 s -> 2001 ms, 0.5 GB
        expected = 2.001 * 0.5 * price.usd_per_gb_s + price.usd_per_invocation
        assert usd == pytest.approx(expected)
        assert lam.cost_usd == pytest.approx(expected)


class TestGpuPool:
    def test_tasks_start_on_demand_and_bill_until_stopped(self):
        gpu = GpuPoolModel(PRICES, slots=2, start_s=40.0, idle_stop_s=120.0)
        assert gpu.startup_hint_s(0.0) == 40.0
        assert gpu.start(0.0) == (0, 40.0)
        assert gpu.start(0.0) == (1, 40.0)
        check = gpu.end(50.0, 0)
        assert check == 170.0
        assert gpu.startup_hint_s(60.0) == 0.0
        assert gpu.start(60.0) == (0, 0.0)  # the idle task, no start-up
        assert gpu.end(70.0, 0) == 190.0
        gpu.check_stop(170.0, 0)  # a stale check: idle since 70 s only
        assert gpu.tasks[0].up_since == 0.0
        gpu.check_stop(190.0, 0)
        per_s = PRICES.price("ecs-gpu").usd_per_slot_s
        assert gpu.cost_usd == pytest.approx(190.0 * per_s)  # up 0 -> 190 s
        gpu.end(80.0, 1)
        gpu.close(100.0)  # idle since 80 s: billed until its stop at 200 s
        assert gpu.cost_usd == pytest.approx((190.0 + 200.0) * per_s)
        assert gpu.starts == 2

    def test_a_call_waiting_for_a_busy_task_sees_no_start_up(self):
        # One task up and busy, one cold: the next call would start the cold one.
        gpu = GpuPoolModel(PRICES, slots=2, start_s=40.0, idle_stop_s=120.0)
        gpu.start(0.0)
        assert gpu.startup_hint_s(1.0) == 40.0
        # Both up and busy: the next call waits for one of them (the scheduler
        # predicts that wait), and the task that frees needs no start.
        gpu.start(1.0)
        assert gpu.startup_hint_s(2.0) == 0.0
        busy = GpuPoolModel(
            PRICES, slots=2, start_s=40.0, idle_stop_s=1.0, always_on=True
        )
        busy.start(0.0)
        busy.start(0.0)
        assert busy.startup_hint_s(1.0) == 0.0

    def test_a_warmed_task_is_up_after_its_start_up_and_bills_from_the_warm(self):
        gpu = GpuPoolModel(PRICES, slots=2, start_s=40.0, idle_stop_s=120.0)
        assert gpu.warm(10.0) == (0, 170.0)  # ready at 50 s, idle until 170 s
        assert (gpu.up(), gpu.ready(49.0), gpu.ready(50.0)) == (1, 0, 1)
        assert gpu.startup_hint_s(30.0) == 20.0  # what is left of its start-up
        assert gpu.start(30.0) == (0, 20.0)  # a call takes the starting task
        assert gpu.end(60.0, 0) == 180.0
        gpu.check_stop(180.0, 0)
        per_s = PRICES.price("ecs-gpu").usd_per_slot_s
        assert gpu.cost_usd == pytest.approx((180.0 - 10.0) * per_s)
        assert gpu.warm(200.0) == (0, 360.0)
        assert gpu.warm(200.0) == (1, 360.0)
        assert gpu.warm(200.0) is None  # every task is up
        assert gpu.starts == 3

    def test_an_idle_task_the_scheduler_wants_stays_up(self):
        gpu = GpuPoolModel(PRICES, slots=2, start_s=0.0, idle_stop_s=50.0)
        gpu.start(0.0)
        gpu.end(1.0, 0)
        assert gpu.check_stop(51.0, 0, keep=1) == 101.0  # wanted: look again later
        assert gpu.tasks[0].up_since == 0.0
        assert gpu.check_stop(101.0, 0, keep=0) is None
        assert gpu.tasks[0].up_since is None
        per_s = PRICES.price("ecs-gpu").usd_per_slot_s
        assert gpu.cost_usd == pytest.approx(101.0 * per_s)  # up until it stopped

    def test_short_tasks_bill_the_minute(self):
        gpu = GpuPoolModel(PRICES, slots=1, start_s=0.0, idle_stop_s=1.0)
        gpu.start(0.0)
        gpu.end(2.0, 0)
        gpu.check_stop(3.0, 0)
        per_s = PRICES.price("ecs-gpu").usd_per_slot_s
        assert gpu.cost_usd == pytest.approx(60.0 * per_s)

    def test_an_always_on_pool_bills_the_whole_run(self):
        gpu = GpuPoolModel(
            PRICES, slots=3, start_s=40.0, idle_stop_s=1.0, always_on=True
        )
        assert gpu.start(5.0) == (0, 0.0)
        assert gpu.end(6.0, 0) is None
        gpu.close(1000.0)
        per_s = PRICES.price("ecs-gpu").usd_per_slot_s
        assert gpu.cost_usd == pytest.approx(3 * 1000.0 * per_s)


def test_a_fixed_pool_bills_every_vcpu_for_the_whole_run():
    vm = FixedPoolModel(PRICES, slots=8)
    vm.close(500.4)
    per_s = PRICES.price("vm-cpu").usd_per_slot_s
    assert vm.cost_usd == pytest.approx(8 * 501 * per_s)
