"""Reading Nodes and CachedImages into the model, and what the node cache keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from prefetcher import cacheforms, observe
from tests.prefetcher.node_object import NODE
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, PYTORCH


def test_node_info_reads_what_the_planner_needs() -> None:
    info = observe.node_info(NODE)
    assert info.name == "gpu-1" and info.uid == "u-1"
    assert info.ready and info.unschedulable and not info.disk_pressure
    assert info.gpu_allocatable == 8 and info.arch == "amd64" and info.os == "linux"
    assert info.image_fs_capacity == 2000 * 2**30
    assert info.hinted_images == {PYTORCH: 20400000000, BUSYBOX: 4000000}
    assert info.taints[0].key == "dedicated" and info.taints[0].effect == "NoSchedule"
    assert info.ready_since == datetime(2026, 11, 21, 10, tzinfo=UTC)


def test_node_info_reads_the_allocatable_or_else_the_capacity() -> None:
    info = observe.node_info(NODE)
    assert info.allocatable == {"cpu": 95.5, "memory": 1000 * 2**30, "nvidia.com/gpu": 8}
    status = {"capacity": {"cpu": "8", "nvidia.com/gpu": "4", "odd": "lots"}}
    bare = observe.node_info({"metadata": {"name": "x"}, "status": status})
    assert bare.allocatable == {"cpu": 8, "nvidia.com/gpu": 4}
    assert observe.node_info({"metadata": {"name": "x"}}).allocatable == {}


def test_the_node_cache_keeps_what_is_read_and_drops_the_rest() -> None:
    # A kubelet's Node as the API sends it: heartbeats, addresses, the image list with
    # digests. The cache keeps what node_info, the triggers and the taint removal read.
    import json

    from prefetcher.informer import Change
    from prefetcher.triggers import node_trigger

    full: dict[str, Any] = json.loads(json.dumps(NODE))
    full["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    full["metadata"]["annotations"] = {"image-sync.io/image-fs-capacity": "500Gi"}
    full["status"]["addresses"] = [{"type": "InternalIP", "address": "10.0.0.1"}]
    full["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": 10250}}
    full["status"]["nodeInfo"].update(kubeletVersion="v1.31.0", machineID="m" * 32)
    for condition in full["status"]["conditions"]:
        condition.update(
            lastHeartbeatTime="2026-11-22T10:00:00Z", reason="KubeletReady", message="ok"
        )
    full["status"]["images"] += [
        {
            "names": [
                f"harbor.example.internal/library/app-{i}@sha256:{i:064d}",
                f"harbor.example.internal/library/app-{i}:1.0",
            ],
            "sizeBytes": 1000 + i,
        }
        for i in range(48)
    ]
    slim = cacheforms.slim_node(json.loads(json.dumps(full)))
    assert observe.node_info(slim) == observe.node_info(full)
    assert observe.node_info(slim).image_fs_capacity == 500 * 2**30
    assert slim["spec"] == full["spec"] and "managedFields" not in slim["metadata"]
    listed = slim["status"][observe.LISTED_IMAGES]
    assert listed.entries == 50 and not any("@" in name for name in listed.sizes)
    assert observe.node_info(slim).hinted_images is listed.sizes  # one form, shared
    assert not {"addresses", "daemonEndpoints"} & slim["status"].keys()
    assert len(json.dumps(slim)) < len(json.dumps(full)) / 2
    # A heartbeat changes nothing a trigger reads; a new taint does.
    beat = json.loads(json.dumps(full))
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-22T10:00:10Z"
    assert node_trigger(Change("Node", "gpu-1", slim, cacheforms.slim_node(beat))) is None
    tainted = json.loads(json.dumps(full))
    tainted["spec"]["taints"].append({"key": "x", "effect": "NoExecute"})
    changed = Change("Node", "gpu-1", slim, cacheforms.slim_node(tainted))
    assert node_trigger(changed) == "node changed"


def test_node_info_tolerates_a_bare_node() -> None:
    info = observe.node_info({"metadata": {"name": "x"}})
    assert info.name == "x" and not info.ready and info.image_fs_capacity is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("100Gi", 100 * 2**30), ("1500m", 1.5), ("2", 2), ("1e3", 1000), ("5G", 5e9), ("x", None)],
)
def test_quantities(text: str, value: float | None) -> None:
    assert observe.parse_quantity(text) == value


def test_wanted_image_from_cached_image() -> None:
    obj = {
        "metadata": {"name": "app", "uid": "c-1", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "image": "harbor.example.internal/library/app:1.0",
            "source": "Learned",
            "profiles": [
                {
                    "nodeSelector": {"pool": "a"},
                    "requiredNodeAffinity": [],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "gpu": True,
                    "namespace": "ns",
                    "ownerKind": "Job",
                    "lastSeen": "2026-11-21T00:00:00Z",
                    "requests": {"cpu": "500m", "nvidia.com/gpu": 8},
                },
                {"gpu": False, "namespace": "ns"},
            ],
        },
        "status": {
            "lastSeen": "2026-11-21T00:00:00Z",
            "useCount": 7,
            "dailyUses": {"2026-11-21": 7},
            "score": 1.5,
            "nodesWanted": 2,
        },
    }
    wanted = observe.wanted_image(obj)
    assert wanted.image == APP and wanted.uid == "c-1" and wanted.use_count == 7
    assert wanted.profiles[0]["gpu"] and wanted.profiles[0]["nodeSelector"] == {"pool": "a"}
    # A number a person wrote reads as the text the webhook writes; no requests: unknown.
    assert wanted.profiles[0]["requests"] == {"cpu": "500m", "nvidia.com/gpu": "8"}
    assert "requests" not in wanted.profiles[1]
    assert wanted.reported.score == 1.5 and wanted.reported.nodes_wanted == 2
    assert wanted.reported.nodes_present is None and wanted.reported.last_error is None
