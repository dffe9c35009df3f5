"""Reading API objects into the model, and what managed pods prove."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prefetcher import cacheforms, observe, presence
from prefetcher.model import ContainerObservation, ManagedPod
from prefetcher.pods import build_keeper, build_puller
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, NOW, PYTORCH, config, node

NODE = {
    "metadata": {
        "name": "gpu-1",
        "uid": "u-1",
        "creationTimestamp": "2026-11-20T10:00:00Z",
        "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
    },
    "spec": {
        "unschedulable": True,
        "taints": [{"key": "dedicated", "value": "infer", "effect": "NoSchedule"}],
    },
    "status": {
        "capacity": {"ephemeral-storage": "2000Gi", "nvidia.com/gpu": "8"},
        "allocatable": {"cpu": "95500m", "memory": "1000Gi", "nvidia.com/gpu": "8"},
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-21T10:00:00Z"},
            {"type": "DiskPressure", "status": "False"},
        ],
        "images": [
            {
                "names": ["nvcr.io/nvidia/pytorch@sha256:" + "a" * 64, PYTORCH],
                "sizeBytes": 20400000000,
            },
            {"names": ["busybox:1.36"], "sizeBytes": 4000000},
        ],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
    },
}


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


def test_managed_pod_round_trips_the_pods_we_build() -> None:
    n = node("cpu-1")
    puller = build_puller(n, [APP, BUSYBOX, PYTORCH], config(), deadline_seconds=700)
    puller["metadata"]["uid"] = "p-1"
    names = [c["name"] for c in puller["spec"]["containers"]]
    puller["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": names[0],
                "image": APP,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}},
            },
            {"name": names[1], "image": BUSYBOX, "state": {"terminated": {"exitCode": 0}}},
            {
                "name": names[2],
                "image": PYTORCH,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            },
        ],
    }
    pod = observe.managed_pod(puller)
    assert pod is not None and pod.role == "puller" and pod.node == "cpu-1"
    assert pod.images == (APP, BUSYBOX, PYTORCH)  # pull order
    assert pod.active_deadline == 700 and pod.attempt == 1
    results = presence.puller_results(pod)
    assert set(results) == {APP, BUSYBOX}  # PYTORCH is still to come
    assert (results[APP].reason, results[APP].kind) == ("ErrImagePull", "not-found")
    assert results[BUSYBOX].succeeded
    assert presence.present_images([pod]) == {"cpu-1": frozenset({BUSYBOX})}

    keeper = build_keeper(n, [BUSYBOX, APP], config())
    keeper["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {"name": c["name"], "image": c["image"], "state": {"running": {}}}
            for c in keeper["spec"]["containers"]
        ],
    }
    pod = observe.managed_pod(keeper)
    assert pod is not None and pod.role == "keeper" and pod.deleting
    assert pod.images == (BUSYBOX, APP)  # sorted
    assert presence.keeper_running_images(pod) == {APP, BUSYBOX}


def test_the_slim_cache_entry_of_a_puller_or_keeper_reads_the_same() -> None:
    # The informer keeps only what managed_pod and the executor read: the same ManagedPod
    # comes out, from far less (no security contexts, mounts, resources, tolerations).
    import json

    n = node("cpu-1")
    puller = build_puller(n, [APP, BUSYBOX], config(), deadline_seconds=700)
    puller["metadata"].update(uid="p-1", resourceVersion="7", namespace="image-sync-cache")
    names = [c["name"] for c in puller["spec"]["containers"]]
    puller["status"] = {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "too long",
        "podIP": "10.0.0.1",
        "initContainerStatuses": [
            {"name": "install", "image": "tools", "state": {"terminated": {"exitCode": 0}}}
        ],
        "containerStatuses": [
            {
                "name": names[0],
                "image": APP,
                "imageID": "sha256:1",
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-22T00:00:05Z"}},
            },
            {
                "name": names[1],
                "image": BUSYBOX,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "no such host"}},
            },
        ],
    }
    keeper = build_keeper(n, [BUSYBOX, APP], config())
    keeper["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "sha256:2",
                "ready": True,
                "state": {"running": {"startedAt": "2026-11-22T00:00:01Z"}},
            }
            for c in keeper["spec"]["containers"]
        ],
    }
    for full in (puller, keeper):
        slim = cacheforms.slim_managed_pod(json.loads(json.dumps(full)))
        assert observe.managed_pod(slim) == observe.managed_pod(full)
        assert slim["metadata"] == {
            k: v
            for k, v in full["metadata"].items()
            if k not in ("managedFields", "ownerReferences")
        }
        assert set(slim["spec"]) <= {"nodeName", "activeDeadlineSeconds"}
        assert set(slim["status"]) <= {"phase", "reason", "message", observe.OBSERVED}
    # The ManagedPod made of the slim form shares its observations: one form of each.
    slim = cacheforms.slim_managed_pod(puller)
    made = observe.managed_pod(slim)
    assert made is not None and made.containers is slim["status"][observe.OBSERVED].containers


def test_a_finished_puller_is_cached_small() -> None:
    # Twenty thousand finished pullers wait for their keepers while a thousand nodes
    # converge: what the cache keeps of one (and the ManagedPod made of it) stays small.
    import json
    import tracemalloc

    n = node("cpu-1")
    images = [f"harbor.example.internal/library/app-{i}:1.0" for i in range(10)]
    moment = "2026-11-22T00:00:05Z"

    def finished(index: int) -> dict[str, Any]:
        pod = build_puller(n, images, config(), deadline_seconds=700)
        pod["metadata"].update(
            uid=f"p-{index}", resourceVersion=str(index), creationTimestamp=moment
        )
        done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": moment}}
        pod["status"] = {
            "phase": "Succeeded",
            "initContainerStatuses": [{"name": "install", "image": "tools", "state": done}],
            "containerStatuses": [
                {"name": c["name"], "image": c["image"], "imageID": "sha256:1", "state": done}
                for c in pod["spec"]["containers"]
            ],
        }
        copied: dict[str, Any] = json.loads(json.dumps(pod))  # as decoded from the API
        return copied

    raw = [finished(i) for i in range(200)]
    tracemalloc.start()
    try:
        kept = [cacheforms.slim_managed_pod(pod) for pod in raw]
        made = [observe.managed_pod(pod) for pod in kept]
        size = tracemalloc.get_traced_memory()[0] / len(raw)
    finally:
        tracemalloc.stop()
    assert all(m == observe.managed_pod(r) for m, r in zip(made, raw, strict=True))
    assert size < 4000  # bytes; the API's form, slimmed as dicts, took over 10 kB


def test_a_cached_keeper_is_the_set_of_images_it_runs() -> None:
    # A keeper's running container only says its image is held: the cache keeps the images,
    # not 200 container statuses per node; one that does not run keeps its reason.
    keeper = build_keeper(node("cpu-1"), [BUSYBOX, APP, PYTORCH], config())
    keeper["metadata"].update(uid="k-1", resourceVersion="3")
    running = {"running": {"startedAt": "2026-11-22T00:00:01Z"}}
    gone = {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "state": gone if PYTORCH in c["image"] else running,
            }
            for c in keeper["spec"]["containers"]
        ],
    }
    slim = cacheforms.slim_managed_pod(keeper)
    seen = slim["status"][observe.OBSERVED]
    assert seen.running == {APP, BUSYBOX}
    assert [c.state for c in seen.containers] == ["waiting"]
    pod = observe.managed_pod(slim)
    assert pod is not None and pod == observe.managed_pod(keeper)
    assert presence.keeper_running_images(pod) == {APP, BUSYBOX}
    assert [c.reason for c in pod.containers] == ["ErrImageNeverPull"]
    assert presence.keeper_settled(pod)
    assert presence.present_images([pod]) == {"cpu-1": frozenset({APP, BUSYBOX})}


def test_other_pods_are_not_ours() -> None:
    assert observe.managed_pod({"metadata": {"name": "x", "labels": {}}}) is None


def _puller(
    *containers: ContainerObservation, phase: str = "Pending", reason: str = ""
) -> ManagedPod:
    return ManagedPod(
        name="p",
        uid="u",
        node="n",
        role="puller",
        images=(APP,),
        phase=phase,
        reason=reason,
        containers=containers,
        active_deadline=900,
    )


def _result(pod: ManagedPod) -> presence.PullResult | None:
    return presence.puller_results(pod).get(APP)


def test_puller_outcomes() -> None:
    done = ContainerObservation("pull", APP, "terminated", exit_code=0)
    crashed = ContainerObservation("pull", APP, "terminated", exit_code=127)
    creating = ContainerObservation("pull", APP, "waiting", reason="ContainerCreating")
    unauthorized = ContainerObservation(
        "pull", APP, "waiting", reason="ErrImagePull", message="401 Unauthorized"
    )
    platform = ContainerObservation(
        "pull",
        APP,
        "waiting",
        reason="ErrImagePull",
        message="no matching manifest for linux/arm64 in the manifest list entries",
    )
    tools = ContainerObservation(
        "install-sleeper", "t", "waiting", reason="ImagePullBackOff", init=True
    )
    assert _result(_puller(done)) == presence.PullResult(True)
    ok = _result(_puller(crashed))
    assert ok is not None and ok.succeeded  # the container was created: the image is there
    assert _result(_puller(creating)) is None
    assert _result(_puller()) is None
    bad = _result(_puller(unauthorized))
    assert bad is not None and bad.kind == "unauthorized" and bad.message == "401 Unauthorized"
    plat = _result(_puller(platform))
    assert plat is not None and plat.kind == "no-matching-platform"
    init = _result(_puller(tools))
    assert init is not None and init.message.startswith("tools image t:")
    late = _result(_puller(phase="Failed", reason="DeadlineExceeded"))
    assert late is not None and late.kind == "deadline" and "900 s" in late.message
    evicted = _result(_puller(phase="Failed", reason="Evicted"))
    assert evicted is not None and evicted.reason == "Evicted" and evicted.message


def test_a_batch_ends_per_image() -> None:
    """Images pulled before a batch puller ran out of time count; the rest failed."""
    pod = replace(
        _puller(
            ContainerObservation("a", APP, "terminated", exit_code=137),
            ContainerObservation("b", BUSYBOX, "waiting", reason="ContainerCreating"),
            phase="Failed",
            reason="DeadlineExceeded",
        ),
        images=(APP, BUSYBOX),
    )
    results = presence.puller_results(pod)
    assert results[APP].succeeded
    assert not results[BUSYBOX].succeeded and results[BUSYBOX].kind == "deadline"


def test_a_puller_of_an_earlier_version_names_one_image() -> None:
    manifest = build_puller(node("n"), [APP], config(), deadline_seconds=60)
    annotations = manifest["metadata"]["annotations"]
    del annotations["image-sync.io/images"]
    annotations["image-sync.io/image"] = APP
    pod = observe.managed_pod(manifest)
    assert pod is not None and pod.images == (APP,)


def test_starting_workload_pods() -> None:
    def pod(
        phase: str = "Pending", reason: str = "ContainerCreating", **meta: Any
    ) -> dict[str, Any]:
        return {
            "metadata": {
                "name": "w",
                "namespace": "ml",
                "creationTimestamp": "2026-11-22T02:00:00Z",
                **meta,
            },
            "spec": {"nodeName": "gpu-1"},
            "status": {
                "phase": phase,
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastTransitionTime": "2026-11-22T02:01:00Z",
                    }
                ],
                "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": reason}}}],
            },
        }

    starting = observe.starting_pod(pod())
    assert starting is not None and (starting.node, starting.pod) == ("gpu-1", "ml/w")
    assert starting.since == NOW - timedelta(minutes=59)
    assert observe.starting_pod(pod(reason="ImagePullBackOff")) is None  # stuck, not starting
    assert observe.starting_pod(pod(phase="Running")) is None
    assert observe.starting_pod(pod(deletionTimestamp="2026-11-22T02:02:00Z")) is None
    ours = pod(labels={"app.kubernetes.io/managed-by": "image-sync"})
    assert observe.starting_pod(ours) is None


def test_a_starting_pod_names_the_registries_of_the_images_it_still_waits_for() -> None:
    obj = {
        "metadata": {"name": "w", "namespace": "ml"},
        "spec": {
            "nodeName": "gpu-1",
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [
                {"name": "main", "image": "nvcr.io/nvidia/pytorch:24.08-py3"},
                {"name": "side", "image": "harbor.example.internal/library/app:1.0"},
            ],
        },
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "side", "state": {"waiting": {"reason": "ContainerCreating"}}},
            ],
        },
    }
    starting = observe.starting_pod(obj)
    assert starting is not None
    # The init container ran: its image (docker.io) is pulled; the others are not.
    assert starting.registries == ("harbor.example.internal", "nvcr.io")
    assert starting.images == (
        "nvcr.io/nvidia/pytorch:24.08-py3",
        "harbor.example.internal/library/app:1.0",
    )


def test_presence_is_keepers_running_plus_successful_pullers() -> None:
    keeper = ManagedPod(
        name="k",
        uid="k",
        node="a",
        role="keeper",
        images=(APP, BUSYBOX),
        phase="Running",
        containers=(
            ContainerObservation("c0", APP, "running"),
            ContainerObservation("c1", BUSYBOX, "waiting", reason="ErrImageNeverPull"),
        ),
    )
    pulled = ManagedPod(
        name="p",
        uid="p",
        node="b",
        role="puller",
        images=(PYTORCH,),
        phase="Succeeded",
        containers=(ContainerObservation("pull", PYTORCH, "terminated", exit_code=0),),
    )
    pulling = ManagedPod(name="q", uid="q", node="b", role="puller", images=(APP,))
    present = presence.present_images([keeper, pulled, pulling])
    assert present == {"a": frozenset({APP}), "b": frozenset({PYTORCH})}
    assert presence.keeper_settled(keeper) is True
