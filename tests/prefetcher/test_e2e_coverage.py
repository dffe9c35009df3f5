"""End to end on the simulator: full coverage after the first sweep, GPU images only on GPU nodes."""

from __future__ import annotations

from typing import Any

from tests.prefetcher.conftest import (
    BUSYBOX,
    CUDA,
    GPU_SELECTOR,
    SMALL,
    Running,
    declare,
    our_pods,
    report,
)
from tests.waiting import wait_for


def test_full_coverage_after_first_sweep(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    declare(api, SMALL)
    declare(api, BUSYBOX)
    declare(api, CUDA, GPU_SELECTOR)
    prefetcher = prefetchers.start()

    def covered() -> dict[str, Any] | None:
        r = report(prefetcher)
        return r if r["summary"]["coverage"] == 1.0 and r["summary"]["wantedPairs"] else None

    final = wait_for(covered, timeout=120, interval=0.5, what="coverage 1.0")
    nodes = sim.node_names()
    gpu_nodes = [n for n in nodes if n.startswith("gpu")]
    assert final["summary"]["wantedPairs"] == 2 * len(nodes) + len(gpu_nodes)
    for node in nodes:
        store = sim.image_store(node)
        assert store.has(SMALL) and store.has(BUSYBOX), node
        assert store.has(CUDA) == (node in gpu_nodes), node

    def one_keeper_per_node() -> bool:
        pods = our_pods(api)
        keepers = [p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "keeper"]
        pullers = [p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "puller"]
        return not pullers and sorted(p.spec.node_name for p in keepers) == nodes

    # Make-before-break: replaced keepers and finished pullers are cleaned up.
    wait_for(one_keeper_per_node, timeout=120, interval=0.5, what="one keeper per node, no pullers")
