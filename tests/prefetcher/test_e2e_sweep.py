"""A sweep plans from scratch from the caches; it does not list them again."""

from __future__ import annotations

from typing import Any

from tests.prefetcher.conftest import BUSYBOX, SMALL, Running, declare, sim_config
from tests.prefetcher.test_e2e_lifecycle import HOUR, covered, has
from tests.waiting import wait_for


def test_a_sweep_keeps_the_caches_its_watches_keep_current(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    declare(api, SMALL)
    prefetcher = prefetchers.start(sim_config(sweep_interval=10 * HOUR))
    controller = prefetcher.controller
    wait_for(lambda: covered(prefetcher), timeout=120, interval=0.5, what="coverage")
    lists_before = {informer.kind: informer.relists for informer in controller.informers}
    first_sweep = controller.last_sweep

    controller.request_sweep()
    wait_for(
        lambda: controller.last_sweep is not first_sweep, timeout=60, interval=0.1, what="a sweep"
    )

    assert controller.last_sweep.trigger == "sweep"
    assert {informer.kind: informer.relists for informer in controller.informers} == lists_before
    assert set(lists_before.values()) == {1}, "each cache listed once, at start"
    # The watches still keep the caches current: a new image is planned and pulled.
    declare(api, BUSYBOX)
    wait_for(
        lambda: all(has(sim, node, BUSYBOX) for node in sim.node_names()),
        timeout=120,
        interval=0.5,
        what="the image declared after the sweep on every node",
    )
    assert {informer.kind: informer.relists for informer in controller.informers} == lists_before
