"""End to end on the simulator: with `placement: demand`, an image stays in the pool its pods
ran in once they are gone (a finished Job), not on every node its placement allows."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from prefetcher.planning.targets import NOT_PREDICTED
from tests.prefetcher.conftest import SMALL, Running, declare, report, sim_config, untyped
from tests.waiting import wait_for


def short_job_pod(node: str) -> dict[str, Any]:
    """A Job's pod (2 simulated minutes) that tolerates the GPU taint: any node would do."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-0", "annotations": {"sim.image-sync.io/run-seconds": "120"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "main", "image": SMALL}],
        },
    }


def cell(r: dict[str, Any], node: str, image: str) -> dict[str, Any]:
    entry: dict[str, Any] = next((n for n in r["nodes"] if n["name"] == node), {"images": {}})
    found: dict[str, Any] = entry["images"].get(image, {})
    return found


def test_placement_demand_keeps_a_finished_jobs_image_in_its_pool(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    core = untyped(client.CoreV1Api(api))
    cpus = [n for n in sim.node_names() if n.startswith("cpu")]
    gpus = [n for n in sim.node_names() if n.startswith("gpu")]
    prefetcher = prefetchers.start(sim_config(placement="demand"))
    core.create_namespaced_pod("default", short_job_pod(cpus[0]))
    wait_for(
        lambda: core.read_namespaced_pod("job-0", "default").status.phase == "Succeeded",
        timeout=120,
        interval=0.2,
        what="the Job's pod finished",
    )
    # Declared with no nodeSelector: every node is eligible. Its pod ran on a CPU node and is
    # gone; the CPU pool keeps the image, the GPU nodes are not predicted.
    declare(api, SMALL)
    wait_for(
        lambda: all(sim.image_store(n).has(SMALL) for n in cpus),
        timeout=120,
        interval=0.5,
        what="the image on every CPU node",
    )
    r = report(prefetcher)
    for node in gpus:
        assert cell(r, node, SMALL).get("reason") == NOT_PREDICTED, node
        assert not sim.image_store(node).has(SMALL), node
