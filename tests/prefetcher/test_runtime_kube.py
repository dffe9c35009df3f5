"""The adapter's writes against the simulated API server: idempotent, typed errors, counted."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from imagesync.cachedimage import new_cached_image, object_name
from imagesync.kubeclient import KubeError
from prefetcher.events import pull_failure_event
from prefetcher.kube import Kube
from prefetcher.leader import LeaderElector, LeaseSettings
from tests.prefetcher.conftest import NAMESPACE, StepClock, untyped

IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "image-sync"}},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]},
    }


@pytest.fixture
def calls() -> list[tuple[str, str, int | None]]:
    return []


@pytest.fixture
def kube(api: client.ApiClient, calls: list[tuple[str, str, int | None]]) -> Kube:
    return Kube(
        api,
        NAMESPACE,
        on_call=lambda verb, resource, error: calls.append(
            (verb, resource, None if error is None else error.status)
        ),
    )


def test_pod_writes_are_idempotent(kube: Kube, calls: list[tuple[str, str, int | None]]) -> None:
    assert kube.create_pod(pod("p1")) is True
    assert kube.create_pod(pod("p1")) is False  # 409: already done
    live = untyped(client.CoreV1Api(kube.api_client)).read_namespaced_pod("p1", NAMESPACE)
    assert kube.delete_pod("p1", uid="not-its-uid") is False  # precondition: a namesake survives
    assert kube.delete_pod("p1", uid=live.metadata.uid) is True
    assert kube.delete_pod("p1", uid=live.metadata.uid) is False  # 404: already gone
    assert calls[:2] == [("create", "pods", None), ("create", "pods", 409)]


def test_errors_become_kube_errors(kube: Kube) -> None:
    with pytest.raises(KubeError) as caught:
        kube.create_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "Bad_Name"},
                "spec": {"containers": []},
            }
        )
    assert caught.value.status == 422


def test_cached_image_create_and_status(kube: Kube) -> None:
    body = new_cached_image(IMAGE, [])
    assert kube.create_cached_image(body)  # its resourceVersion
    assert kube.create_cached_image(body) is None
    name = object_name(IMAGE)
    assert kube.patch_cached_image_status(name, {"score": 1.5, "nodesWanted": 2}) is True
    assert kube.patch_cached_image_status(name, {"nodesPresent": 1}) is True  # a merge patch
    obj = untyped(client.CustomObjectsApi(kube.api_client)).get_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages", name
    )
    assert obj["status"] == {"score": 1.5, "nodesWanted": 2, "nodesPresent": 1}
    assert kube.patch_cached_image_status("missing", {"score": 1}) is False


def test_remove_taint_and_event(kube: Kube) -> None:
    core = untyped(client.CoreV1Api(kube.api_client))
    taints = [
        {"key": "image-sync.io/warming", "effect": "NoSchedule"},
        {"key": "other", "value": "x", "effect": "NoExecute"},
    ]
    core.create_node({"metadata": {"name": "n1"}, "spec": {"taints": taints}})
    node = kube.api_client.sanitize_for_serialization(core.read_node("n1"))
    assert kube.remove_taint(node, "image-sync.io/warming") is True
    assert [t.key for t in core.read_node("n1").spec.taints] == ["other"]
    with pytest.raises(KubeError):  # stale view of the taints: the JSON patch test fails
        kube.remove_taint(node, "other")
    fresh = kube.api_client.sanitize_for_serialization(core.read_node("n1"))
    assert kube.remove_taint(fresh, "image-sync.io/warming") is False
    assert kube.remove_taint(fresh, "other") is True
    assert not core.read_node("n1").spec.taints

    event = pull_failure_event(
        namespace=NAMESPACE,
        pod="isync-pull-x",
        pod_uid="u1",
        node="n1",
        image=IMAGE,
        reason="ErrImagePull",
        message="not found",
        now="2026-11-22T00:00:00Z",
    )
    kube.create_event(event)
    events = core.list_namespaced_event(NAMESPACE).items
    assert [e.reason for e in events] == ["PrefetchFailed"]
    assert "ErrImagePull: not found" in events[0].message


def test_two_replicas_elect_one_leader_on_a_real_lease(kube: Kube, api: client.ApiClient) -> None:
    clock = StepClock()
    settings = LeaseSettings(name="prefetcher-test", lease_duration=15)
    a = LeaderElector(kube, "replica-a", clock=clock, settings=settings)
    b = LeaderElector(Kube(api, NAMESPACE), "replica-b", clock=clock, settings=settings)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    lease = untyped(client.CoordinationV1Api(api)).read_namespaced_lease(
        "prefetcher-test", NAMESPACE
    )
    assert lease.spec.holder_identity == "replica-a"
    assert lease.spec.lease_duration_seconds == 15
    clock.t += 16
    assert b.try_acquire_or_renew()  # a stopped renewing
    lease = untyped(client.CoordinationV1Api(api)).read_namespaced_lease(
        "prefetcher-test", NAMESPACE
    )
    assert lease.spec.holder_identity == "replica-b"
    assert lease.spec.lease_transitions == 1
    assert not a.try_acquire_or_renew()


def test_seeded_counts_of_running_pods_never_overwrite_the_webhooks(kube: Kube) -> None:
    """A fresh install seeds the counts of an image it created from running pods, only onto
    the version it created: counts the webhook wrote in between stand."""
    from datetime import UTC, datetime

    from imagesync.cachedimage import PlacementProfile
    from imagesync.config import Config
    from prefetcher.controller import Controller
    from prefetcher.metrics import Metrics
    from prefetcher.model import Plan
    from webhook.learning import Sighting
    from webhook.metrics import Metrics as WebhookMetrics
    from webhook.recorder import Recorder
    from webhook.store import KubeCachedImageStore

    controller = Controller(
        kube,
        Config(namespace=NAMESPACE),
        clock=StepClock(),
        metrics=Metrics(),
        plan_fn=lambda snapshot, config: Plan(now=snapshot.now),
    )
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    custom = untyped(client.CustomObjectsApi(kube.api_client))

    def use_count(image: str) -> int:
        obj = custom.get_cluster_custom_object(
            "image-sync.io", "v1alpha1", "cachedimages", object_name(image)
        )
        return int((obj.get("status") or {}).get("useCount") or 0)

    version = kube.create_cached_image(new_cached_image(IMAGE, []))
    assert version
    webhook = Recorder(
        KubeCachedImageStore(kube.api_client), WebhookMetrics(), flush_interval=3600, max_pending=10
    )
    profile = PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=False,
        namespace="ml",
        ownerKind="Job",
    )
    webhook.record(Sighting((IMAGE,), profile))
    assert webhook.flush().written == 1
    controller._seed_usage(IMAGE, version, 3, now)
    assert use_count(IMAGE) == 1  # the webhook's count stands

    other = "nvcr.io/nvidia/other:1"
    version = kube.create_cached_image(new_cached_image(other, []))
    assert version
    controller._seed_usage(other, version, 3, now)
    assert use_count(other) == 3  # nothing in between: the seed lands
    controller.stop(timeout=1)


def test_running_pods_leaves_out_our_own(kube: Kube, api: client.ApiClient) -> None:
    """The start-up scan reads the workloads' running pods, not our pullers and keepers
    (thousands of containers at scale, and they confirm nothing)."""
    core = untyped(client.CoreV1Api(api))
    ours = pod("isync-keep-x")
    theirs = {**pod("web-1"), "metadata": {"name": "web-1", "labels": {"app": "web"}}}
    for body in (ours, theirs):
        core.create_namespaced_pod(NAMESPACE, body)
        core.patch_namespaced_pod_status(
            body["metadata"]["name"], NAMESPACE, {"status": {"phase": "Running"}}
        )
    assert [p["metadata"]["name"] for p in kube.running_pods()] == ["web-1"]
