"""Puller and keeper pods: valid Pod objects, deterministic, restricted, owned by the Node."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from imagesync.names import (
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NODE,
    POD_NAMESPACE_DEFAULT,
    POD_SERVICE_ACCOUNT,
)
from prefetcher.model import Taint
from prefetcher.pods import (
    build_keeper,
    build_puller,
    keeper_name,
    node_label_value,
    pull_deadline,
    puller_name,
)
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, PYTORCH, config, node

K8S_VERSION = "1.35.0"
CFG = config(image_pull_secrets=("harbor-pull",), namespace="image-sync")


def _pods() -> list[dict[str, Any]]:
    n = node("gpu-1", gpu=8)
    return [
        build_puller(n, [PYTORCH, APP], CFG, deadline_seconds=2640, attempt=2),
        build_keeper(n, [PYTORCH, APP, BUSYBOX], CFG),
    ]


@pytest.mark.parametrize("version", [K8S_VERSION, "1.37.0"])
def test_pods_are_valid_pod_objects(version: str) -> None:
    for pod in _pods():
        kubernetes_validate.validate(pod, version, strict=True)


def test_puller_shape() -> None:
    puller = _pods()[0]
    spec = puller["spec"]
    assert puller["metadata"]["name"] == puller_name("gpu-1", [APP, PYTORCH])
    assert puller["metadata"]["namespace"] == "image-sync-cache"
    assert spec["nodeName"] == "gpu-1" and spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 2640
    assert {"operator": "Exists"} not in spec["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "harbor-pull"}]
    assert spec["priorityClassName"] == "image-sync-keeper"
    # One container per image, in pull order (the kubelet starts them one after another).
    assert [c["image"] for c in spec["containers"]] == [PYTORCH, APP]
    assert len({c["name"] for c in spec["containers"]}) == 2
    for main in spec["containers"]:
        assert main["imagePullPolicy"] == "IfNotPresent"
        assert main["command"] == ["/.image-sync/image-sync-sleeper", "--exit"]
    annotations = puller["metadata"]["annotations"]
    assert json.loads(annotations["image-sync.io/images"]) == [PYTORCH, APP]
    assert annotations["image-sync.io/attempt"] == "2"
    init = spec["initContainers"][0]
    assert init["image"] == CFG.tools_image
    assert init["command"] == [
        "/usr/local/bin/image-sync-sleeper",
        "--install",
        "/.image-sync/image-sync-sleeper",
    ]
    labels = puller["metadata"]["labels"]
    assert labels[LABEL_MANAGED_BY] == "image-sync" and labels[LABEL_COMPONENT] == "puller"
    assert labels[LABEL_NODE] == "gpu-1"
    kinds = [o["kind"] for o in puller["metadata"]["ownerReferences"]]
    assert kinds == ["Node"]


def test_tolerations_are_the_nodes_taints_never_pressure_nor_everything() -> None:
    tainted = node(
        "gpu-1",
        gpu=8,
        taints=(
            Taint("nvidia.com/gpu", "", "NoSchedule"),
            Taint("dedicated", "ml", "NoExecute"),
            Taint("node.kubernetes.io/memory-pressure", "", "NoSchedule"),
            Taint("node.kubernetes.io/disk-pressure", "", "NoSchedule"),
            Taint("node.kubernetes.io/not-ready", "", "NoExecute"),
            Taint("image-sync.io/warming", "", "NoSchedule"),
            Taint("spot", "true", "PreferNoSchedule"),
        ),
    )
    cfg = config(startup_taint="image-sync.io/warming")
    survive = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    expected = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
        {"key": "image-sync.io/warming", "operator": "Exists"},
        *survive,
    ]
    for pod in (
        build_puller(tainted, [PYTORCH], cfg, deadline_seconds=60),
        build_keeper(tainted, [PYTORCH], cfg),
    ):
        assert pod["spec"]["tolerations"] == expected
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    # An untainted node: only the two every pod has.
    assert build_keeper(node("cpu-1"), [APP], config())["spec"]["tolerations"] == survive


def test_keeper_shape() -> None:
    keeper = _pods()[1]
    spec = keeper["spec"]
    images = [c["image"] for c in spec["containers"]]
    assert images == sorted([PYTORCH, APP, BUSYBOX])
    assert all(c["imagePullPolicy"] == "Never" for c in spec["containers"])
    assert all(c["command"] == ["/.image-sync/image-sync-sleeper"] for c in spec["containers"])
    assert spec["restartPolicy"] == "Always" and "activeDeadlineSeconds" not in spec
    # The secrets its images were pulled with (KEP-2535), the pullers' own.
    assert spec["imagePullSecrets"] == _pods()[0]["spec"]["imagePullSecrets"]
    assert json.loads(keeper["metadata"]["annotations"]["image-sync.io/images"]) == images
    assert [o["kind"] for o in keeper["metadata"]["ownerReferences"]] == ["Node"]
    assert keeper["metadata"]["name"] == keeper_name("gpu-1", [BUSYBOX, APP, PYTORCH])


def test_pods_run_in_the_pod_namespace_under_its_account_without_a_token() -> None:
    for pod in _pods():
        assert pod["metadata"]["namespace"] == CFG.pod_namespace == POD_NAMESPACE_DEFAULT
        assert pod["metadata"]["namespace"] != CFG.namespace
        assert pod["spec"]["serviceAccountName"] == POD_SERVICE_ACCOUNT
        assert pod["spec"]["automountServiceAccountToken"] is False
    moved = config(namespace="image-sync", pod_namespace="team-cache")
    assert build_keeper(node("n"), [APP], moved)["metadata"]["namespace"] == "team-cache"


def test_every_container_is_restricted() -> None:
    for pod in _pods():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in [*spec["initContainers"], *spec["containers"]]:
            sc = container["securityContext"]
            assert sc["runAsUser"] == 65534 and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"]
            assert container["resources"]["requests"]["cpu"] == "1m"


def test_names_are_deterministic_and_distinct() -> None:
    assert _pods() == _pods()
    assert puller_name("a", [APP]) != puller_name("b", [APP]) != puller_name("a", [BUSYBOX])
    assert puller_name("a", [APP, BUSYBOX]) == puller_name("a", [BUSYBOX, APP])
    assert keeper_name("a", [APP, BUSYBOX]) == keeper_name("a", [BUSYBOX, APP, APP])
    assert keeper_name("a", [APP]) != keeper_name("a", [APP, BUSYBOX])
    assert node_label_value("x" * 70).startswith("h-") and len(node_label_value("x" * 70)) < 63


def test_deadline_grows_with_size() -> None:
    assert pull_deadline(0, config()) == 600
    assert pull_deadline(20_400_000_000, config()) == 600 + 2040
    assert pull_deadline(20_400_000_000, config(pull_deadline_min_bandwidth=100_000_000)) == 804


def test_without_uids_there_are_no_owner_references() -> None:
    bare = node("n", uid="")
    pod = build_keeper(bare, [APP], CFG)
    assert "ownerReferences" not in pod["metadata"]
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_a_keeper_of_200_images_shares_what_its_containers_have_alike() -> None:
    # A pass that plans a thousand keepers holds their manifests: an image's container is
    # one object on every node, and its parts are shared, so a manifest is a fraction of
    # the size it would be with copies (249 kB at 200 images), and the API gets the same.
    import tracemalloc

    images = [f"harbor.example.internal/library/app-{i:03d}:1.0" for i in range(200)]
    tracemalloc.start()
    try:
        keepers = [build_keeper(node(f"cpu-{i}"), images, CFG) for i in range(20)]
        size = tracemalloc.get_traced_memory()[0] / len(keepers)
    finally:
        tracemalloc.stop()
    assert size < 25_000
    containers = keepers[0]["spec"]["containers"]
    assert containers[0]["securityContext"] is containers[1]["securityContext"]
    assert containers[7] is keepers[1]["spec"]["containers"][7]  # one per image, every node
    assert json.loads(json.dumps(keepers[0]))["spec"]["containers"][5]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
    }
