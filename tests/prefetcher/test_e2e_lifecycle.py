"""End to end on the simulator: nodes joining, learning from running pods, image GC, failures."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from simulator.imagestore import GCPolicy
from tests.prefetcher.conftest import (
    BUSYBOX,
    CUDA,
    GPU_SELECTOR,
    POD_NAMESPACE,
    SMALL,
    Running,
    declare,
    our_pods,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

HOUR = 3600.0


def covered(prefetcher: Any) -> dict[str, Any] | None:
    r = report(prefetcher)
    return r if r["summary"]["coverage"] == 1.0 and r["summary"]["wantedPairs"] else None


def has(sim: Any, node: str, image: str) -> bool:
    """Whether `image` is really on `node`'s disk (False until a kubelet runs the node)."""
    try:
        return bool(sim.image_store(node).has(image))
    except KeyError:
        return False


def cell(r: dict[str, Any], node: str, image: str) -> dict[str, Any]:
    entry: dict[str, Any] = next((n for n in r["nodes"] if n["name"] == node), {"images": {}})
    result: dict[str, Any] = entry["images"].get(image, {})
    return result


def test_joining_node_is_warmed_without_waiting_for_the_sweep(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    declare(api, SMALL)
    declare(api, CUDA, GPU_SELECTOR)
    # A sweep only every 10 simulated hours: anything that happens sooner was event-driven.
    prefetcher = prefetchers.start(sim_config(sweep_interval=10 * HOUR))
    wait_for(lambda: covered(prefetcher), timeout=120, interval=0.5, what="initial coverage")
    sweeps_before = report(prefetcher)["runtime"]["lastSweep"]["started"]

    new_cpu = sim.add_node("cpu")
    new_gpu = sim.add_node("gpu")
    wait_for(
        lambda: has(sim, new_cpu, SMALL) and has(sim, new_gpu, CUDA),
        timeout=120,
        interval=0.2,
        what="the joining nodes warmed",
    )
    wait_for(
        lambda: covered(prefetcher), timeout=120, interval=0.5, what="coverage with the new nodes"
    )
    # A node's warm-up time is recorded by the pass that sees its last image arrive, which
    # may come after the report that first showed full coverage.
    runtime = wait_for(
        lambda: (
            r["runtime"]
            if {new_cpu, new_gpu} <= set((r := report(prefetcher))["runtime"]["nodeWarmSeconds"])
            else None
        ),
        timeout=60,
        interval=0.5,
        what="both joining nodes' warm-up times",
    )
    assert runtime["lastSweep"]["started"] == sweeps_before, "no sweep ran meanwhile"
    assert not sim.image_store(new_cpu).has(CUDA), "a GPU image never lands on a CPU node"
    metrics = prefetcher.metrics.node_warm_seconds.collect()[0]
    count = next(s.value for s in metrics.samples if s.name.endswith("_count"))
    assert count >= 2

    # A node that goes away leaves no pod of ours behind, and leaves the report.
    sim.remove_node(new_cpu)
    wait_for(
        lambda: (
            all(p.spec.node_name != new_cpu for p in our_pods(api))
            and new_cpu not in {n["name"] for n in report(prefetcher)["nodes"]}
        ),
        timeout=120,
        interval=0.5,
        what="the removed node's pods gone",
    )
    assert covered(prefetcher)


def gpu_pod(name: str, image: str, node: str) -> dict[str, Any]:
    """A long-running training pod that asks for a GPU, as a Job would create it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"sim.image-sync.io/run-seconds": "360000"}},
        "spec": {
            "nodeName": node,
            "nodeSelector": GPU_SELECTOR,
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {"name": "main", "image": image, "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
        },
    }


def test_fresh_install_learns_running_pods_and_keeps_gpu_images_on_gpu_nodes(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    core = untyped(client.CoreV1Api(api))
    core.create_namespace({"metadata": {"name": "ml"}})
    gpus = [n for n in sim.node_names() if n.startswith("gpu")]
    cpus = [n for n in sim.node_names() if n.startswith("cpu")]
    core.create_namespaced_pod("ml", gpu_pod("train-0", CUDA, gpus[0]))
    wait_for(
        lambda: core.read_namespaced_pod("train-0", "ml").status.phase == "Running",
        timeout=120,
        what="the training pod running",
    )
    assert not sim.image_store(gpus[1]).has(CUDA)

    prefetcher = prefetchers.start()  # no CachedImage exists: it learns from the running pod
    wait_for(
        lambda: sim.image_store(gpus[1]).has(CUDA), timeout=120, interval=0.2, what="CUDA on gpu-2"
    )
    learned = untyped(client.CustomObjectsApi(api)).list_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages"
    )
    (item,) = [i for i in learned["items"] if i["spec"]["image"] == CUDA]
    assert item["spec"]["source"] == "Learned"
    assert item["spec"]["profiles"][0]["gpu"] is True
    r = wait_for(lambda: covered(prefetcher), timeout=120, interval=0.5, what="coverage")
    for node in cpus:
        assert cell(r, node, CUDA)["state"] == "ineligible"
        assert not sim.image_store(node).has(CUDA), node


def test_cached_images_survive_image_gc_while_unprotected_ones_go(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    core = untyped(client.CoreV1Api(api))
    # imageMaximumGCAge: the kubelet deletes images unused for 10 simulated minutes, even
    # prefetched ones that never ran, unless a running container uses them.
    node = sim.add_node(
        "cpu", name="gc-node", gc=GCPolicy(min_age=60.0, max_age=600.0, period=60.0)
    )
    declare(api, SMALL)
    declare(api, BUSYBOX)
    prefetcher = prefetchers.start()
    wait_for(lambda: covered(prefetcher), timeout=120, interval=0.5, what="coverage")

    nginx = "docker.io/library/nginx:1.27"  # not declared: nothing protects it
    core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "one-off", "annotations": {"sim.image-sync.io/run-seconds": "5"}},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": nginx}],
            },
        },
    )
    wait_for(lambda: has(sim, node, nginx), timeout=60, what="nginx pulled")
    wait_for(
        lambda: core.read_namespaced_pod("one-off", "default").status.phase == "Succeeded",
        timeout=60,
        what="the one-off pod finished",
    )
    core.delete_namespaced_pod("one-off", "default")
    wait_for(
        lambda: not sim.image_store(node).has(nginx),
        timeout=120,
        interval=0.2,
        what="nginx collected",
    )
    store = sim.image_store(node)
    assert store.has(SMALL) and store.has(BUSYBOX), "the keeper's images survive image GC"
    assert covered(prefetcher)


def test_failing_image_is_reported_with_its_reason_and_retried_with_backoff(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    missing = "harbor.example.internal/library/does-not-exist:1.0"
    declare(api, missing, {"kubernetes.io/hostname": "cpu-1"})
    prefetcher = prefetchers.start(sim_config(pull_backoff_base=300.0))

    def attempts(n: int) -> dict[str, Any] | None:
        entry = cell(report(prefetcher), "cpu-1", missing)
        return entry if entry.get("state") == "failed" and entry.get("attempts", 0) >= n else None

    first = wait_for(lambda: attempts(1), timeout=120, interval=0.2, what="a first failure")
    assert first["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "not found" in first["message"]
    assert first["kind"] == "not-found"
    # The Event is written after the pass that records the failure: wait for it.
    failed = wait_for(
        lambda: [
            e
            for e in untyped(client.CoreV1Api(api)).list_namespaced_event(POD_NAMESPACE).items
            if e.reason == "PrefetchFailed"
        ],
        timeout=60,
        what="a PrefetchFailed Event",
    )
    assert missing in failed[0].message and "not found" in failed[0].message
    third = wait_for(lambda: attempts(3), timeout=180, interval=0.2, what="two retries")
    assert third["retryAt"] > first["retryAt"]
    r = report(prefetcher)
    assert any(f["image"] == missing and f["node"] == "cpu-1" for f in r["failures"])
    name = next(i["name"] for i in r["images"] if i["image"] == missing)

    def last_error() -> str:
        obj = untyped(client.CustomObjectsApi(api)).get_cluster_custom_object(
            "image-sync.io", "v1alpha1", "cachedimages", name
        )
        return str((obj.get("status") or {}).get("lastError") or "")

    # Statuses are sent by their own thread, after the pass that planned them.
    assert "not found" in wait_for(last_error, timeout=30, what="the image's lastError")


def test_a_joining_node_is_planned_without_the_coalescing_wait(
    sim: Any, prefetchers: Running
) -> None:
    """Passes come at most every passCoalesce, but a node that joins or turns Ready is planned
    at once: its first puller does not wait for the next slot."""
    api = sim.api_client()
    declare(api, SMALL)
    # The slot after any pass is 10 simulated hours away (10 wall minutes at this speed).
    prefetchers.start(sim_config(sweep_interval=10 * HOUR, pass_coalesce=10 * HOUR))

    def pullers_on(node: str | None = None) -> list[Any]:
        return [
            p
            for p in our_pods(api)
            if p.metadata.labels.get("app.kubernetes.io/component") == "puller"
            and (node is None or p.spec.node_name == node)
        ]

    wait_for(pullers_on, timeout=60, interval=0.2, what="the first pass's pullers")
    joined = sim.add_node("cpu")
    wait_for(
        lambda: pullers_on(joined), timeout=60, interval=0.2, what="a puller on the joined node"
    )
