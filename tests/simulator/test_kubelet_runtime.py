"""The kubelet's pure state machine: pulls, states and reasons, restarts, GC, image waits."""

from __future__ import annotations

from typing import Any

from simulator.noderuntime import NodeRuntime
from simulator.nodes import NodeConfig
from simulator.registry import Registry, RegistrySet, catalog_image

T0 = 1_700_000_000.0
MB = 1_000_000


def _registries() -> RegistrySet:
    hub = Registry(host="docker.io", bandwidth=1000 * MB, latency=0.0)
    hub.add(
        catalog_image("busybox:1.36", compressed="100MB", disk="200MB", archs=("amd64", "arm64"))
    )
    hub.add(catalog_image("app:latest", compressed="100MB", disk="200MB"))
    nvcr = Registry(host="nvcr.io", bandwidth=1000 * MB, latency=0.0)
    nvcr.add(catalog_image("nvcr.io/nvidia/pytorch:24.08-py3", compressed="9.5GB", disk="20.4GB"))
    return RegistrySet([hub, nvcr], epoch=T0)


def _node(**kw: Any) -> NodeRuntime:
    config = NodeConfig(name="n1", bandwidth=kw.pop("bandwidth", 100 * MB), **kw)
    return NodeRuntime(config, _registries(), T0)


def _pod(name: str, *images: str, **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", {})
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        "restartPolicy": extra.pop("restartPolicy", "Always"),
        **extra,
    }
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "annotations": annotations,
        },
        "spec": spec,
    }


def _status(node: NodeRuntime, name: str) -> dict[str, Any]:
    return node.pod_status(node.pods[f"uid-{name}"])


def _waiting_reason(status: dict[str, Any], index: int = 0) -> str | None:
    state = status["containerStatuses"][index]["state"]
    reason = state.get("waiting", {}).get("reason")
    return None if reason is None else str(reason)


def test_pull_takes_size_over_bandwidth_then_runs() -> None:
    node = _node()
    node.sync_pod(_pod("p", "busybox:1.36"))
    node.advance(T0)
    status = _status(node, "p")
    assert status["phase"] == "Pending"
    assert _waiting_reason(status) == "ContainerCreating"
    node.advance(T0 + 0.5)  # 100 MB at 100 MB/s takes 1 s
    assert _waiting_reason(_status(node, "p")) == "ContainerCreating"
    node.advance(T0 + 3)
    status = _status(node, "p")
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["ready"] and cs["started"]
    assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")
    assert cs["containerID"].startswith("containerd://")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert node.image_wait(node.pods["uid-p"]) == 1.0


def test_serialized_pulls_queue_behind_a_big_image() -> None:
    node = _node()
    node.sync_pod(_pod("big", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    node.sync_pod(_pod("small", "busybox:1.36"))
    node.advance(T0 + 10)
    assert node.pulls_in_flight() == ["nvcr.io/nvidia/pytorch:24.08-py3"]
    node.advance(T0 + 200)
    assert _status(node, "small")["phase"] == "Running"
    wait = node.image_wait(node.pods["uid-small"])
    assert wait is not None and wait > 90  # waited behind 95 s of pytorch


def test_not_found_goes_err_image_pull_then_backoff_doubling() -> None:
    node = _node()
    node.sync_pod(_pod("p", "docker.io/library/nope:1"))
    node.advance(T0)
    status = _status(node, "p")
    assert _waiting_reason(status) == "ErrImagePull"
    assert "not found" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    node.advance(T0 + 5)
    status = _status(node, "p")
    assert _waiting_reason(status) == "ImagePullBackOff"
    assert status["containerStatuses"][0]["state"]["waiting"]["message"].startswith(
        'Back-off pulling image "docker.io/library/nope:1"'
    )
    container = node.pods["uid-p"].containers[0]
    assert container.backoff == 10
    node.advance(T0 + 11)
    node.advance(T0 + 12)
    assert container.backoff == 20
    reasons = [e.reason for e in node.take_events()]
    assert "Failed" in reasons and "BackOff" in reasons


def test_never_policy_and_invalid_name() -> None:
    node = _node()
    node.sync_pod(
        _pod(
            "never",
            "busybox:1.36",
            containers=[{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "Never"}],
        )
    )
    node.sync_pod(_pod("bad", "Not A Valid:Image"))
    node.advance(T0)
    never = _status(node, "never")["containerStatuses"][0]["state"]["waiting"]
    assert never["reason"] == "ErrImageNeverPull"
    assert (
        never["message"]
        == 'Container image "busybox:1.36" is not present with pull policy of Never'
    )
    assert _waiting_reason(_status(node, "bad")) == "InvalidImageName"


def test_no_matching_platform_on_arm() -> None:
    node = _node(arch="arm64")
    node.sync_pod(_pod("p", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    message = _status(node, "p")["containerStatuses"][0]["state"]["waiting"]["message"]
    assert "no matching manifest for linux/arm64 in the manifest list entries" in message


def test_job_completes_and_failure_exit_code() -> None:
    node = _node()
    node.sync_pod(
        _pod(
            "ok",
            "busybox:1.36",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "5"},
        )
    )
    node.sync_pod(
        _pod(
            "bad",
            "busybox:1.36",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "5", "sim.image-sync.io/exit-code": "3"},
        )
    )
    for t in range(0, 20):
        node.advance(T0 + t)
    ok = _status(node, "ok")
    assert ok["phase"] == "Succeeded"
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    bad = _status(node, "bad")
    assert bad["phase"] == "Failed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_always_restarts_with_crash_loop_backoff() -> None:
    node = _node()
    node.sync_pod(_pod("p", "busybox:1.36", annotations={"sim.image-sync.io/run-seconds": "5"}))
    for t in range(0, 40):
        node.advance(T0 + t)
    status = _status(node, "p")
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["restartCount"] >= 2


def test_init_containers_run_in_order() -> None:
    node = _node()
    pod = _pod("p", "busybox:1.36")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "app:latest"}]
    node.sync_pod(pod)
    node.advance(T0)
    status = _status(node, "p")
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["reason"] == "ContainersNotInitialized"
    for t in range(1, 15):
        node.advance(T0 + t)
    status = _status(node, "p")
    assert status["phase"] == "Running"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_active_deadline() -> None:
    node = _node()
    node.sync_pod(_pod("p", "busybox:1.36", activeDeadlineSeconds=10))
    for t in range(0, 15):
        node.advance(T0 + t)
    status = _status(node, "p")
    assert status["phase"] == "Failed"
    assert status["reason"] == "DeadlineExceeded"


def test_deletion_asks_for_final_delete() -> None:
    node = _node()
    pod = _pod("p", "busybox:1.36")
    node.sync_pod(pod)
    node.advance(T0 + 5)
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod)
    assert node.take_deletions() == [("default", "p", "uid-p")]


def test_image_gc_spares_running_and_collects_unused() -> None:
    node = _node(disk=30_000_000_000, system_disk_used=0)
    node.sync_pod(_pod("keep", "busybox:1.36"))
    node.sync_pod(
        _pod(
            "job",
            "nvcr.io/nvidia/pytorch:24.08-py3",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "1"},
        )
    )
    for t in range(0, 400, 5):
        node.advance(T0 + t)
    assert node.store.has("nvcr.io/nvidia/pytorch:24.08-py3")  # 68 % used: under the threshold
    node.forget_pod("uid-job")
    node.sync_pod(_pod("other", "app:latest"))
    # Fill the disk past 85 % with a second large image on another tag.
    node.registries.registries["nvcr.io"].add(
        catalog_image("nvcr.io/nvidia/pytorch:24.09-py3", compressed="1GB", disk="6GB")
    )
    node.sync_pod(
        _pod(
            "p2",
            "nvcr.io/nvidia/pytorch:24.09-py3",
            annotations={"sim.image-sync.io/run-seconds": "forever"},
        )
    )
    for t in range(400, 1400, 5):
        node.advance(T0 + t)
    assert not node.store.has("nvcr.io/nvidia/pytorch:24.08-py3")
    assert node.store.has("docker.io/library/busybox:1.36")
    assert node.store.has("nvcr.io/nvidia/pytorch:24.09-py3")


def test_node_status_reports_gpu_capacity_and_images() -> None:
    node = _node(gpus=8)
    node.sync_pod(_pod("p", "busybox:1.36"))
    node.advance(T0 + 5)
    status = node.node_status(T0 + 5, T0 + 5)
    assert status["capacity"]["nvidia.com/gpu"] == "8"
    assert status["images"][0]["names"][0].startswith("docker.io/library/busybox@sha256:")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_registry_outage_mid_pull_fails_with_unavailable_then_recovers() -> None:
    node = _node()
    node.registries.set_outage("nvcr.io", T0 + 30, T0 + 60)
    node.sync_pod(_pod("p", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    node.advance(T0 + 31)
    status = _status(node, "p")
    assert _waiting_reason(status) == "ErrImagePull"
    assert "i/o timeout" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    assert node.registries.active_transfers("nvcr.io") == 0
    for t in range(32, 400, 5):
        node.advance(T0 + t)
    assert _status(node, "p")["phase"] == "Running"


def test_cached_image_runs_without_credentials_with_if_not_present() -> None:
    """What KEP-2535 is about: a pulled private image is usable by any pod on the node."""
    registries = _registries()
    registries.registries["docker.io"].unauthorized = ("private",)
    registries.registries["docker.io"].pull_secrets = ("creds",)
    registries.registries["docker.io"].add(
        catalog_image("private/app:1", compressed="1MB", disk="2MB")
    )
    node = NodeRuntime(NodeConfig(name="n1"), registries, T0)
    node.sync_pod(_pod("with", "private/app:1", imagePullSecrets=[{"name": "creds"}]))
    node.sync_pod(_pod("without", "private/app:1"))
    for t in range(0, 20):
        node.advance(T0 + t)
    assert _status(node, "with")["phase"] == "Running"
    # The second pod's own pull was refused, its retry finds the image present (IfNotPresent).
    for t in range(20, 40):
        node.advance(T0 + t)
    assert _status(node, "without")["phase"] == "Running"


def test_kubelet_admission_rejects_pods_that_do_not_fit() -> None:
    node = _node(gpus=0)
    gpu = _pod("gpu", "busybox:1.36")
    gpu["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    node.sync_pod(gpu)
    node.sync_pod(
        _pod("elsewhere", "busybox:1.36", nodeSelector={"nvidia.com/gpu.present": "true"})
    )
    node.sync_pod(_pod("fine", "busybox:1.36"))
    node.advance(T0 + 5)
    rejected = _status(node, "gpu")
    assert rejected["phase"] == "Failed"
    assert rejected["reason"] == "OutOfnvidia.com/gpu"
    assert rejected["message"].startswith(
        "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1"
    )
    assert _status(node, "elsewhere")["reason"] == "NodeAffinity"
    assert _status(node, "fine")["phase"] == "Running"


def test_run_duration_from_annotation_or_sleeper_command() -> None:
    node = _node()
    keeper = _pod("keeper", "busybox:1.36", restartPolicy="Never")
    keeper["spec"]["containers"][0]["command"] = ["/image-sync/sleeper"]
    sleeper = _pod("sleep5", "busybox:1.36", restartPolicy="Never")
    sleeper["spec"]["containers"][0]["command"] = ["sh", "-c"]
    sleeper["spec"]["containers"][0]["args"] = ["sleep", "5"]
    node.sync_pod(keeper)
    node.sync_pod(sleeper)
    node.sync_pod(_pod("job", "busybox:1.36", restartPolicy="Never"))
    for t in range(0, 100, 2):
        node.advance(T0 + t)
    assert _status(node, "keeper")["phase"] == "Running"
    assert _status(node, "sleep5")["phase"] == "Succeeded"
    assert _status(node, "job")["phase"] == "Succeeded"  # the 30 s default


def _three_app_images(node: NodeRuntime) -> None:
    hub = node.registries.registries["docker.io"]
    for name in ("one", "two", "three"):
        hub.add(catalog_image(f"{name}:1", compressed="100MB", disk="200MB"))


def _pull_starts(events: list[Any]) -> list[tuple[float, str]]:
    """(time, image) of every Pulling event, in order."""
    return [(round(e.at - T0, 3), e.message.split('"')[1]) for e in events if e.reason == "Pulling"]


def test_a_pods_images_are_pulled_one_after_another() -> None:
    """SyncPod starts the containers in turn and each start waits for its image: a workload
    pod arriving meanwhile waits behind the one pull in flight, not behind all of them."""
    node = _node()  # serialized pulls; 100 MB at 100 MB/s: one second per image
    _three_app_images(node)
    node.sync_pod(_pod("multi", "one:1", "two:1", "three:1"))
    node.advance(T0)
    assert node.pulls_in_flight() == ["docker.io/library/one:1"]
    assert node.queue == []  # two:1 and three:1 are not asked for yet
    node.sync_pod(_pod("web", "busybox:1.36"))
    node.advance(T0 + 0.5)
    assert [job.reference for job in node.queue] == ["docker.io/library/busybox:1.36"]
    status = _status(node, "multi")
    assert [_waiting_reason(status, i) for i in range(3)] == ["ContainerCreating"] * 3
    events: list[Any] = node.take_events()
    for step in range(2, 20):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
    assert _pull_starts(events) == [
        (0.0, "one:1"),
        (1.0, "busybox:1.36"),  # right after the first pull, before two:1 and three:1
        (2.0, "two:1"),
        (3.0, "three:1"),
    ]
    assert _status(node, "web")["phase"] == "Running"
    multi = _status(node, "multi")
    assert multi["phase"] == "Running"
    assert [c["state"].get("running") is not None for c in multi["containerStatuses"]] == [True] * 3
    pulled = [e.message for e in events if e.reason == "Pulled" and "two:1" in e.message]
    assert pulled == [
        'Successfully pulled image "two:1" in 1.000s (2.000s including waiting). '
        "Image size: 100000000 bytes."
    ]
    # The pod waited from its first pull asked for to its last image: 4 s; the web pod,
    # asked for at T0 too, 1 s behind one:1 and 1 s of its own.
    assert node.image_wait(node.pods["uid-multi"]) == 4.0
    assert node.image_wait(node.pods["uid-web"]) == 2.0


def test_a_failed_pull_in_the_middle_does_not_stop_the_next_container() -> None:
    node = _node()
    _three_app_images(node)
    node.sync_pod(_pod("p", "one:1", "docker.io/library/nope:1", "three:1"))
    events: list[Any] = []
    for step in range(0, 12):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
    assert _pull_starts(events) == [
        (0.0, "one:1"),
        (1.0, "docker.io/library/nope:1"),
        (1.0, "three:1"),
    ]
    status = _status(node, "p")
    states = [c["state"] for c in status["containerStatuses"]]
    assert "running" in states[0] and "running" in states[2]
    assert states[1]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "not found" in states[1]["waiting"]["message"]
    assert status["phase"] == "Pending"
    failed = [e.message for e in events if e.reason == "Failed"]
    assert failed[0].startswith('Failed to pull image "docker.io/library/nope:1": ')
    assert failed[1] == "Error: ErrImagePull"
    # The failed image is retried after its back-off, on a later sync.
    for step in range(12, 30):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
    assert [t for t, image in _pull_starts(events) if "nope" in image] == [1.0, 11.0]
    assert node.pods["uid-p"].containers[1].backoff == 20
    assert node.image_wait(node.pods["uid-p"]) is None  # it never got all its images


def test_a_present_image_after_a_pulling_container_starts_once_the_pull_is_done() -> None:
    """The SyncPod loop is blocked in the second container's EnsureImageExists."""
    node = _node(preloaded_images=("docker.io/library/busybox:1.36",))
    _three_app_images(node)
    node.sync_pod(_pod("p", "busybox:1.36", "one:1", "busybox:1.36"))
    events: list[Any] = []
    for step in range(0, 8):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
        if step == 1:
            assert _waiting_reason(_status(node, "p"), 2) == "ContainerCreating"
    present = [round(e.at - T0, 3) for e in events if "already present" in e.message]
    assert present == [0.0, 1.0]  # the third container's turn comes when one:1 is pulled
    started = [(round(e.at - T0, 3), e.message) for e in events if e.reason == "Started"]
    assert started == [
        (1.0, "Started container c0"),
        (2.0, "Started container c1"),
        (2.0, "Started container c2"),
    ]
    assert node.image_wait(node.pods["uid-p"]) == 1.0


def test_parallel_pulls_still_pull_one_image_of_a_pod_at_a_time() -> None:
    node = _node(serialize_image_pulls=False)
    _three_app_images(node)
    node.sync_pod(_pod("multi", "one:1", "two:1"))
    node.sync_pod(_pod("web", "busybox:1.36"))
    node.advance(T0)
    assert sorted(node.pulls_in_flight()) == [
        "docker.io/library/busybox:1.36",
        "docker.io/library/one:1",
    ]


def test_max_parallel_image_pulls_caps_the_pulls_in_flight_and_they_share_the_link() -> None:
    node = _node(serialize_image_pulls=False, max_parallel_image_pulls=2)
    _three_app_images(node)
    for name in ("one", "two", "three"):
        node.sync_pod(_pod(name, f"{name}:1"))
    node.advance(T0)
    assert sorted(node.pulls_in_flight()) == ["docker.io/library/one:1", "docker.io/library/two:1"]
    node.advance(T0 + 1.5)  # 100 MB each at half of 100 MB/s: neither is done
    assert len(node.pulls_in_flight()) == 2
    node.advance(T0 + 2.5)  # both done at about 2 s; the third runs alone
    assert node.pulls_in_flight() == ["docker.io/library/three:1"]


def test_a_pod_seen_after_the_last_advance_starts_when_seen() -> None:
    """The kubelet set syncs a pod at its own `now`: nothing of the pod happens earlier (its
    startTime and container times never precede the creationTimestamp)."""
    from simulator.clock import parse_time

    node = _node()
    node.advance(T0)
    node.sync_pod(_pod("p", "busybox:1.36"), T0 + 5)
    node.advance(T0 + 5)
    node.advance(T0 + 8)
    events = [(e.reason, e.at - T0) for e in node.take_events()]
    assert events == [("Pulling", 5.0), ("Pulled", 6.0), ("Created", 7.0), ("Started", 7.0)]
    status = _status(node, "p")
    assert parse_time(status["startTime"]) == T0 + 5
    started = status["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert parse_time(started) == T0 + 7  # pulled in 1 s, created in 1 s
    pod = _pod("p", "busybox:1.36")
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod, T0 + 9)
    killing = [e for e in node.take_events() if e.reason == "Killing"]
    assert [e.at - T0 for e in killing] == [9.0]
    container = node.pods["uid-p"].containers[0]
    assert container.finished_at == T0 + 9


def test_events_of_one_pod_are_spam_filtered_like_client_go() -> None:
    """25 events about one object at once, then one every 5 minutes (the recorder's filter)."""
    node = _node(preloaded_images=("docker.io/library/busybox:1.36",))
    node.sync_pod(_pod("many", *["busybox:1.36"] * 30))
    node.sync_pod(_pod("one", "busybox:1.36"))
    node.advance(T0)
    node.advance(T0 + 5)
    events = node.take_events()
    many = [e for e in events if e.name == "many"]
    assert len(many) == 25  # of 90: Pulled, Created, Started for each of 30 containers
    assert [e.reason for e in events if e.name == "one"] == ["Pulled", "Created", "Started"]
    assert all("running" in c["state"] for c in _status(node, "many")["containerStatuses"])
    pod = _pod("many", *["busybox:1.36"] * 30)
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod, T0 + 5 + 300)  # 30 Killing events, 5 minutes later: one gets through
    assert len(node.take_events()) == 1


def test_never_policy_container_starts_at_the_recheck_after_its_image_arrives() -> None:
    node = _node()
    never = _pod("keeper", "busybox:1.36")
    never["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    node.sync_pod(never)
    node.advance(T0)
    assert _waiting_reason(_status(node, "keeper")) == "ErrImageNeverPull"
    node.sync_pod(_pod("puller", "busybox:1.36"))  # pulls it in 1 s
    for t in range(1, 5):
        node.advance(T0 + t)
    assert node.store.has("docker.io/library/busybox:1.36")
    assert _waiting_reason(_status(node, "keeper")) == "ErrImageNeverPull"  # not looked yet
    for t in range(5, 13):
        node.advance(T0 + t)
    assert _status(node, "keeper")["phase"] == "Running"  # seen at the 10 s recheck


def test_a_pull_waiting_for_its_manifest_takes_none_of_the_registrys_bandwidth() -> None:
    """The registry's answer before the first byte (token, manifests) is a wait, not a
    transfer: a second node in that wait leaves the registry's whole bandwidth to the first."""
    registry = Registry(host="docker.io", bandwidth=100 * MB, latency=1.0)
    registry.add(catalog_image("busybox:1.36", compressed="100MB", disk="200MB"))
    registries = RegistrySet([registry], epoch=T0)
    first, second = (
        NodeRuntime(NodeConfig(name=name, bandwidth=1000 * MB), registries, T0)
        for name in ("n1", "n2")
    )
    first.sync_pod(_pod("a", "busybox:1.36"), T0)
    first.advance(T0 + 1.5)  # its manifest came at T0 + 1; half its bytes are in
    second.advance(T0 + 1.5)
    second.sync_pod(_pod("b", "busybox:1.36"), T0 + 1.5)
    second.advance(T0 + 1.5)
    assert second.pulls_in_flight() == ["docker.io/library/busybox:1.36"]
    assert registries.active_transfers("docker.io") == 1  # only the first one's bytes flow
    first.advance(T0 + 2.01)
    assert first.store.find("docker.io/library/busybox:1.36") is not None
    second.advance(T0 + 2.6)  # its bytes began at T0 + 2.5, alone at the registry's 100 MB/s
    assert registries.active_transfers("docker.io") == 1
    second.advance(T0 + 3.51)
    assert second.store.find("docker.io/library/busybox:1.36") is not None
    assert registries.active_transfers("docker.io") == 0
