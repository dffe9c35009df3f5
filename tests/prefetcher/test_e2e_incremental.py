"""On the simulator, every incremental plan equals plan() of the same real snapshot."""

from __future__ import annotations

import threading
from typing import Any

from imagesync.config import Config
from prefetcher.model import Plan, Snapshot
from prefetcher.planner import plan
from prefetcher.planning.incremental import IncrementalPlanner
from tests.prefetcher.conftest import (
    BUSYBOX,
    CUDA,
    GPU_SELECTOR,
    SMALL,
    Running,
    declare,
    report,
    sim_config,
)
from tests.prefetcher.test_e2e_lifecycle import HOUR, covered, has
from tests.waiting import wait_for


class Checked:
    """A plan function that plans incrementally, and notes every pass where plan() differs."""

    def __init__(self, config: Config) -> None:
        self.planner = IncrementalPlanner(config)
        self.lock = threading.Lock()
        self.passes = 0
        self.differences: list[str] = []

    def __call__(self, snapshot: Snapshot, config: Config) -> Plan:
        with self.lock:
            got = self.planner.plan(snapshot)
            self.passes += 1
            if got != plan(snapshot, config):
                self.differences.append(f"pass {self.passes} at {snapshot.now}")
            return got


def test_incremental_plans_equal_full_plans_through_joins_new_images_and_removals(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    declare(api, SMALL)
    declare(api, CUDA, GPU_SELECTOR)
    config = sim_config(sweep_interval=10 * HOUR)
    checked = Checked(config)
    prefetcher = prefetchers.start(config, plan_fn=checked)
    wait_for(lambda: covered(prefetcher), timeout=120, interval=0.5, what="initial coverage")

    joined = [sim.add_node("cpu"), sim.add_node("gpu")]
    declare(api, BUSYBOX)
    wait_for(
        lambda: all(has(sim, node, BUSYBOX) for node in joined) and has(sim, joined[1], CUDA),
        timeout=120,
        interval=0.2,
        what="the joining nodes warmed with the new image",
    )
    sim.remove_node(joined[0])
    wait_for(
        lambda: (
            covered(prefetcher)
            and joined[0] not in {n["name"] for n in report(prefetcher)["nodes"]}
        ),
        timeout=120,
        interval=0.5,
        what="coverage without the removed node",
    )
    assert checked.passes >= 5
    assert checked.differences == []
