"""End to end through the real kubernetes client: the pod lifecycle and its reasons, image GC."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, watch

from simulator.cluster import SimCluster
from simulator.rawapi import call
from tests.simulator.sim_fixtures import cluster, pod, raw_pod, waiting_reason
from tests.waiting import wait_for

__all__ = ["cluster"]


def _create(sim: SimCluster, manifest: dict[str, Any]) -> Any:
    core: Any = sim.core()
    core.create_namespaced_pod("default", manifest)
    return core


def test_nodes_are_ready_with_labels_capacity_and_lease(cluster: SimCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.nodes()}
    assert set(nodes) == {"cpu-1", "cpu-2", "gpu-1"}
    gpu = nodes["gpu-1"]
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert nodes["cpu-1"]["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
    coordination = client.CoordinationV1Api(cluster.api_client())
    lease: Any = wait_for(lambda: coordination.list_namespaced_lease("kube-node-lease").items)
    assert {item.metadata.name for item in lease} >= {"cpu-1"}


def test_pod_runs_and_reports_image_id_and_wait(cluster: SimCluster) -> None:
    core: Any = _create(cluster, pod("web", "busybox:1.36"))
    obj: Any = wait_for(
        lambda: (p := raw_pod(core, "web"))["status"].get("phase") == "Running" and p
    )
    status = obj["status"]["containerStatuses"][0]
    assert status["ready"] is True
    assert status["imageID"].startswith("docker.io/library/busybox@sha256:")
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Ready"] == conditions["PodScheduled"] == conditions["Initialized"] == "True"
    annotated = wait_for(
        lambda: (
            raw_pod(core, "web")["metadata"]
            .get("annotations", {})
            .get("sim.image-sync.io/image-wait-seconds")
        )
    )
    assert float(annotated) >= 0
    assert "default/web" in cluster.pod_image_waits()


def test_not_found_goes_err_image_pull_then_image_pull_backoff(cluster: SimCluster) -> None:
    core: Any = cluster.core()
    seen: list[str] = []
    stream = watch.Watch()
    version = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("missing", "docker.io/library/nope:1"))
    for event in stream.stream(
        core.list_namespaced_pod,
        "default",
        field_selector="metadata.name=missing",
        resource_version=version,
        timeout_seconds=60,
    ):
        statuses = event["object"].status.container_statuses or []
        if statuses and statuses[0].state.waiting:
            reason = statuses[0].state.waiting.reason
            if not seen or seen[-1] != reason:
                seen.append(reason)
            if reason == "ImagePullBackOff":
                message = statuses[0].state.waiting.message
                break
    stream.stop()
    assert "ErrImagePull" in seen
    assert seen[-1] == "ImagePullBackOff"
    assert seen.index("ErrImagePull") < seen.index("ImagePullBackOff")
    assert 'Back-off pulling image "docker.io/library/nope:1"' in message
    assert "not found" in message


def test_never_unauthorized_and_invalid_reasons(cluster: SimCluster) -> None:
    core: Any = cluster.core()
    core.create_namespaced_pod(
        "default", pod("never", "docker.io/library/busybox:1.36", imagePullPolicy="Never")
    )
    core.create_namespaced_pod("default", pod("denied", "nvcr.io/nvidia/private/x:1"))
    never: Any = wait_for(
        lambda: (
            waiting_reason(raw_pod(core, "never")) == "ErrImageNeverPull" and raw_pod(core, "never")
        )
    )
    assert (
        "is not present with pull policy of Never"
        in never["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    denied: Any = wait_for(
        lambda: (
            waiting_reason(p := raw_pod(core, "denied")) in ("ErrImagePull", "ImagePullBackOff")
            and p
        )
    )
    assert (
        "pull access denied"
        in denied["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )


def test_job_like_pod_completes(cluster: SimCluster) -> None:
    core: Any = _create(
        cluster,
        pod(
            "job",
            "busybox:1.36",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "20"},
        ),
    )
    obj: Any = wait_for(
        lambda: (p := raw_pod(core, "job"))["status"].get("phase") == "Succeeded" and p
    )
    terminated = obj["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "Completed" and terminated["exitCode"] == 0
    failing = pod(
        "fails",
        "busybox:1.36",
        restartPolicy="Never",
        annotations={"sim.image-sync.io/run-seconds": "5", "sim.image-sync.io/exit-code": "2"},
    )
    core.create_namespaced_pod("default", failing)
    obj = wait_for(lambda: (p := raw_pod(core, "fails"))["status"].get("phase") == "Failed" and p)
    assert obj["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_graceful_delete_is_finished_by_the_kubelet(cluster: SimCluster) -> None:
    core: Any = _create(cluster, pod("gone", "busybox:1.36"))
    wait_for(lambda: raw_pod(core, "gone")["status"].get("phase") == "Running")
    core.delete_namespaced_pod("gone", "default", grace_period_seconds=30)

    def deleted() -> bool:
        names = [p.metadata.name for p in core.list_namespaced_pod("default").items]
        return "gone" not in names

    wait_for(deleted)


def _watch_disk_pressure(
    cluster: SimCluster, node: str, seen: list[str], tainted: threading.Event, stop: threading.Event
) -> None:
    core: Any = cluster.core()
    stream = watch.Watch()
    for event in stream.stream(
        core.list_node, field_selector=f"metadata.name={node}", timeout_seconds=60
    ):
        obj = event["object"]
        for condition in obj.status.conditions or []:
            if condition.type == "DiskPressure" and (not seen or seen[-1] != condition.status):
                seen.append(condition.status)
        if any(t.key == "node.kubernetes.io/disk-pressure" for t in obj.spec.taints or []):
            tainted.set()
        if stop.is_set():
            stream.stop()


def test_image_gc_collects_unused_and_spares_running(cluster: SimCluster) -> None:
    core: Any = cluster.core()
    pressure: list[str] = []
    tainted = threading.Event()
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_disk_pressure, args=(cluster, "cpu-1", pressure, tainted, stop), daemon=True
    )
    watcher.start()
    # cpu-1: 19 GB disk, 5 GB system. big:1 (6 GB) runs; big:2 (6 GB) is pulled by a job that ends.
    keep = pod("keeper", "docker.io/library/big:1", nodeName="cpu-1")
    core.create_namespaced_pod("default", keep)
    wait_for(lambda: raw_pod(core, "keeper")["status"].get("phase") == "Running")
    job = pod(
        "once",
        "docker.io/library/big:2",
        nodeName="cpu-1",
        restartPolicy="Never",
        annotations={"sim.image-sync.io/run-seconds": "1"},
    )
    core.create_namespaced_pod("default", job)
    done = wait_for(
        lambda: (p := raw_pod(core, "once"))["status"].get("phase") == "Succeeded" and p
    )
    assert "docker.io/library/big@sha256:" in done["status"]["containerStatuses"][0]["imageID"]
    store = cluster.image_store("cpu-1")
    # 17 GB of 19 GB used: past the 85 % threshold and under 15 % free (DiskPressure). Once
    # big:2 is older than the minimum age (2 simulated minutes), GC frees it, not the running big:1.
    wait_for(lambda: not store.has("docker.io/library/big:2"), timeout=60)
    assert store.has("docker.io/library/big:1")

    def status_names() -> list[str]:
        node = call(cluster.core().read_node, "cpu-1")
        return [n for image in node["status"].get("images", []) for n in image["names"]]

    wait_for(lambda: not any("big:2" in n for n in status_names()))
    assert any("big:1" in n for n in status_names())
    wait_for(lambda: "True" in pressure and pressure[-1] == "False", timeout=30)
    assert tainted.is_set()  # TaintNodesByCondition while DiskPressure was True
    stop.set()


def test_node_join_and_remove(cluster: SimCluster) -> None:
    name = cluster.add_node("gpu")
    assert name == "gpu-2"
    cluster.wait_nodes_ready([name])
    core: Any = cluster.core()
    core.create_namespaced_pod("default", pod("pinned", "busybox:1.36", nodeName=name))
    wait_for(lambda: raw_pod(core, "pinned")["status"].get("phase") == "Running")
    cluster.remove_node(name)

    def pod_collected() -> bool:
        return "pinned" not in [p.metadata.name for p in core.list_namespaced_pod("default").items]

    wait_for(pod_collected)
    assert name not in cluster.node_names()


def test_not_ready_marks_node_and_taints_it(cluster: SimCluster) -> None:
    cluster.set_not_ready("cpu-2")

    def unknown() -> dict[str, Any] | None:
        node = next(n for n in cluster.nodes() if n["metadata"]["name"] == "cpu-2")
        ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
        return node if ready and ready[0]["status"] == "Unknown" else None

    node = wait_for(unknown)
    assert wait_for(
        lambda: any(
            t["key"] == "node.kubernetes.io/unreachable"
            for n in cluster.nodes()
            if n["metadata"]["name"] == "cpu-2"
            for t in n["spec"].get("taints", [])
        )
    )
    del node
    cluster.set_not_ready("cpu-2", False)
    cluster.wait_nodes_ready(["cpu-2"])


def test_final_delete_is_retried_after_429_and_500(cluster: SimCluster) -> None:
    """The status manager deletes a terminated pod again on its next sync when the API
    server refused (429, 5xx): the pod must not stay Terminating."""
    from simulator.apiserver import FaultRule

    core: Any = _create(cluster, pod("stuck", "busybox:1.36"))
    wait_for(lambda: raw_pod(core, "stuck")["status"].get("phase") == "Running")
    kubelets = cluster.kubelets
    assert kubelets is not None
    path = r"/namespaces/default/pods/stuck$"
    with kubelets.lock:  # the kubelets wait: only their final deletes meet the faults
        core.delete_namespaced_pod("stuck", "default", grace_period_seconds=30)
        cluster.server.set_faults(
            [
                FaultRule(path=path, verbs=("delete",), status=500, times=2),
                # urllib3 retries a 429 with Retry-After 3 times by itself, then gives up.
                FaultRule(path=path, verbs=("delete",), status=429, retry_after=0, times=4),
            ]
        )

    def deleted() -> bool:
        return "stuck" not in [p.metadata.name for p in core.list_namespaced_pod("default").items]

    wait_for(deleted)
    rules = cluster.server.faults.to_json()["rules"]
    assert [rule["fired"] for rule in rules] == [rule["times"] for rule in rules]
    assert kubelets.counters["delete_retries"] >= 2
    cluster.server.clear_faults()


def test_api_server_stamps_metadata_in_simulated_time(cluster: SimCluster) -> None:
    """One clock for the cluster: creation and deletion timestamps are simulated time, like
    the times the kubelets write, not the wall clock (which the simulation runs ahead of)."""
    import time

    from simulator.clock import parse_time

    wait_for(lambda: cluster.clock.now() - time.time() > 60)  # one wall second at speed 60
    core: Any = _create(cluster, pod("timed", "busybox:1.36"))
    obj = wait_for(lambda: (p := raw_pod(core, "timed"))["status"].get("phase") == "Running" and p)
    created = parse_time(obj["metadata"]["creationTimestamp"])
    assert abs(created - cluster.clock.now()) < 30
    assert created - time.time() > 50
    started = parse_time(obj["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
    assert created - 1 <= parse_time(obj["status"]["startTime"]) <= started
    assert cluster.kubelets is not None
    with cluster.kubelets.lock:  # read it before the kubelet finishes the deletion
        core.delete_namespaced_pod("timed", "default", grace_period_seconds=30)
        deleting = raw_pod(core, "timed")["metadata"]
    grace_end = parse_time(deleting["deletionTimestamp"])
    assert abs(grace_end - (cluster.clock.now() + 30)) < 30


def test_a_pod_status_cadence_writes_progress_rarely_and_phases_at_once() -> None:
    # pod_status_every: a pod still starting its containers (the first running, the next
    # pulling) is not written until the cadence comes round; its new phase is written at once.
    from tests.simulator.sim_fixtures import small_scenario

    with SimCluster(small_scenario(), speed=10, events=False, pod_status_every=1e6) as sim:
        manifest = pod("seq", "docker.io/library/big:1")
        manifest["spec"]["containers"] += [
            {"name": "second", "image": "docker.io/library/big:2"},
            {"name": "third", "image": "docker.io/library/busybox:1.36"},
        ]
        core = _create(sim, manifest)
        seen: list[tuple[str, ...]] = []

        def running() -> bool:
            obj = raw_pod(core, "seq")
            states = tuple(
                next(iter(s.get("state") or {"waiting": {}}))
                for s in obj["status"].get("containerStatuses") or []
            )
            if states and (not seen or seen[-1] != states):
                seen.append(states)
            return bool(obj["status"].get("phase") == "Running")

        wait_for(running, timeout=60, interval=0.02)
    assert seen[-1] == ("running", "running", "running")
    assert all(set(states) == {"waiting"} for states in seen[:-1]), seen
