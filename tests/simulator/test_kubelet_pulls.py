"""The kubelet's image pulls: their time, queue, failures and back-off, pull policies, and order within a pod."""

from __future__ import annotations

from typing import Any

from simulator.noderuntime import NodeRuntime
from simulator.nodes import NodeConfig
from simulator.registry import Registry, RegistrySet, catalog_image
from tests.simulator.noderuntime_fixtures import (
    MB,
    T0,
    make_node,
    make_pod,
    pod_status,
    sample_registries,
    waiting_reason,
)


def test_pull_takes_size_over_bandwidth_then_runs() -> None:
    node = make_node()
    node.sync_pod(make_pod("p", "busybox:1.36"))
    node.advance(T0)
    status = pod_status(node, "p")
    assert status["phase"] == "Pending"
    assert waiting_reason(status) == "ContainerCreating"
    node.advance(T0 + 0.5)  # 100 MB at 100 MB/s takes 1 s
    assert waiting_reason(pod_status(node, "p")) == "ContainerCreating"
    node.advance(T0 + 3)
    status = pod_status(node, "p")
    assert status["phase"] == "Running"
    cs = status["containerStatuses"][0]
    assert cs["ready"] and cs["started"]
    assert cs["imageID"].startswith("docker.io/library/busybox@sha256:")
    assert cs["containerID"].startswith("containerd://")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert node.image_wait(node.pods["uid-p"]) == 1.0


def test_serialized_pulls_queue_behind_a_big_image() -> None:
    node = make_node()
    node.sync_pod(make_pod("big", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    node.sync_pod(make_pod("small", "busybox:1.36"))
    node.advance(T0 + 10)
    assert node.pulls_in_flight() == ["nvcr.io/nvidia/pytorch:24.08-py3"]
    node.advance(T0 + 200)
    assert pod_status(node, "small")["phase"] == "Running"
    wait = node.image_wait(node.pods["uid-small"])
    assert wait is not None and wait > 90  # waited behind 95 s of pytorch


def test_not_found_goes_err_image_pull_then_backoff_doubling() -> None:
    node = make_node()
    node.sync_pod(make_pod("p", "docker.io/library/nope:1"))
    node.advance(T0)
    status = pod_status(node, "p")
    assert waiting_reason(status) == "ErrImagePull"
    assert "not found" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    node.advance(T0 + 5)
    status = pod_status(node, "p")
    assert waiting_reason(status) == "ImagePullBackOff"
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
    node = make_node()
    node.sync_pod(
        make_pod(
            "never",
            "busybox:1.36",
            containers=[{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "Never"}],
        )
    )
    node.sync_pod(make_pod("bad", "Not A Valid:Image"))
    node.advance(T0)
    never = pod_status(node, "never")["containerStatuses"][0]["state"]["waiting"]
    assert never["reason"] == "ErrImageNeverPull"
    assert (
        never["message"]
        == 'Container image "busybox:1.36" is not present with pull policy of Never'
    )
    assert waiting_reason(pod_status(node, "bad")) == "InvalidImageName"


def test_no_matching_platform_on_arm() -> None:
    node = make_node(arch="arm64")
    node.sync_pod(make_pod("p", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    message = pod_status(node, "p")["containerStatuses"][0]["state"]["waiting"]["message"]
    assert "no matching manifest for linux/arm64 in the manifest list entries" in message


def test_registry_outage_mid_pull_fails_with_unavailable_then_recovers() -> None:
    node = make_node()
    node.registries.set_outage("nvcr.io", T0 + 30, T0 + 60)
    node.sync_pod(make_pod("p", "nvcr.io/nvidia/pytorch:24.08-py3"))
    node.advance(T0)
    node.advance(T0 + 31)
    status = pod_status(node, "p")
    assert waiting_reason(status) == "ErrImagePull"
    assert "i/o timeout" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    assert node.registries.active_transfers("nvcr.io") == 0
    for t in range(32, 400, 5):
        node.advance(T0 + t)
    assert pod_status(node, "p")["phase"] == "Running"


def test_cached_image_runs_without_credentials_with_if_not_present() -> None:
    """What KEP-2535 is about: a pulled private image is usable by any pod on the node."""
    registries = sample_registries()
    registries.registries["docker.io"].unauthorized = ("private",)
    registries.registries["docker.io"].pull_secrets = ("creds",)
    registries.registries["docker.io"].add(
        catalog_image("private/app:1", compressed="1MB", disk="2MB")
    )
    node = NodeRuntime(NodeConfig(name="n1"), registries, T0)
    node.sync_pod(make_pod("with", "private/app:1", imagePullSecrets=[{"name": "creds"}]))
    node.sync_pod(make_pod("without", "private/app:1"))
    for t in range(0, 20):
        node.advance(T0 + t)
    assert pod_status(node, "with")["phase"] == "Running"
    # The second pod's own pull was refused, its retry finds the image present (IfNotPresent).
    for t in range(20, 40):
        node.advance(T0 + t)
    assert pod_status(node, "without")["phase"] == "Running"


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
    node = make_node()  # serialized pulls; 100 MB at 100 MB/s: one second per image
    _three_app_images(node)
    node.sync_pod(make_pod("multi", "one:1", "two:1", "three:1"))
    node.advance(T0)
    assert node.pulls_in_flight() == ["docker.io/library/one:1"]
    assert node.queue == []  # two:1 and three:1 are not asked for yet
    node.sync_pod(make_pod("web", "busybox:1.36"))
    node.advance(T0 + 0.5)
    assert [job.reference for job in node.queue] == ["docker.io/library/busybox:1.36"]
    status = pod_status(node, "multi")
    assert [waiting_reason(status, i) for i in range(3)] == ["ContainerCreating"] * 3
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
    assert pod_status(node, "web")["phase"] == "Running"
    multi = pod_status(node, "multi")
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
    node = make_node()
    _three_app_images(node)
    node.sync_pod(make_pod("p", "one:1", "docker.io/library/nope:1", "three:1"))
    events: list[Any] = []
    for step in range(0, 12):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
    assert _pull_starts(events) == [
        (0.0, "one:1"),
        (1.0, "docker.io/library/nope:1"),
        (1.0, "three:1"),
    ]
    status = pod_status(node, "p")
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
    node = make_node(preloaded_images=("docker.io/library/busybox:1.36",))
    _three_app_images(node)
    node.sync_pod(make_pod("p", "busybox:1.36", "one:1", "busybox:1.36"))
    events: list[Any] = []
    for step in range(0, 8):
        node.advance(T0 + step * 0.5)
        events += node.take_events()
        if step == 1:
            assert waiting_reason(pod_status(node, "p"), 2) == "ContainerCreating"
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
    node = make_node(serialize_image_pulls=False)
    _three_app_images(node)
    node.sync_pod(make_pod("multi", "one:1", "two:1"))
    node.sync_pod(make_pod("web", "busybox:1.36"))
    node.advance(T0)
    assert sorted(node.pulls_in_flight()) == [
        "docker.io/library/busybox:1.36",
        "docker.io/library/one:1",
    ]


def test_max_parallel_image_pulls_caps_the_pulls_in_flight_and_they_share_the_link() -> None:
    node = make_node(serialize_image_pulls=False, max_parallel_image_pulls=2)
    _three_app_images(node)
    for name in ("one", "two", "three"):
        node.sync_pod(make_pod(name, f"{name}:1"))
    node.advance(T0)
    assert sorted(node.pulls_in_flight()) == ["docker.io/library/one:1", "docker.io/library/two:1"]
    node.advance(T0 + 1.5)  # 100 MB each at half of 100 MB/s: neither is done
    assert len(node.pulls_in_flight()) == 2
    node.advance(T0 + 2.5)  # both done at about 2 s; the third runs alone
    assert node.pulls_in_flight() == ["docker.io/library/three:1"]


def test_never_policy_container_starts_at_the_recheck_after_its_image_arrives() -> None:
    node = make_node()
    never = make_pod("keeper", "busybox:1.36")
    never["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    node.sync_pod(never)
    node.advance(T0)
    assert waiting_reason(pod_status(node, "keeper")) == "ErrImageNeverPull"
    node.sync_pod(make_pod("puller", "busybox:1.36"))  # pulls it in 1 s
    for t in range(1, 5):
        node.advance(T0 + t)
    assert node.store.has("docker.io/library/busybox:1.36")
    assert waiting_reason(pod_status(node, "keeper")) == "ErrImageNeverPull"  # not looked yet
    for t in range(5, 13):
        node.advance(T0 + t)
    assert pod_status(node, "keeper")["phase"] == "Running"  # seen at the 10 s recheck


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
    first.sync_pod(make_pod("a", "busybox:1.36"), T0)
    first.advance(T0 + 1.5)  # its manifest came at T0 + 1; half its bytes are in
    second.advance(T0 + 1.5)
    second.sync_pod(make_pod("b", "busybox:1.36"), T0 + 1.5)
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
