"""Builders for the prefetcher core tests, and a tiny in-memory cluster that carries out plans.

`World.step()` plans, then applies the plan the way the cluster would: pullers for images
in `fail` fail with the kubelet's message, other pullers finish; keepers start with every
container running (or ErrImageNeverPull for images no longer on the node); deletions,
taint removals and status patches take effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from imagesync.cachedimage import PlacementProfile
from imagesync.config import Config
from prefetcher.model import (
    ContainerObservation,
    ManagedPod,
    NodeInfo,
    Plan,
    PullKey,
    PullRecord,
    ReportedStatus,
    Snapshot,
    Taint,
    WantedImage,
)
from prefetcher.planner import plan
from prefetcher.pods import puller_container_name

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GB = 1_000_000_000
APP = "harbor.example.internal/library/app:1.0"
CUDA = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"
BUSYBOX = "docker.io/library/busybox:1.36"
MISSING = "harbor.example.internal/library/nope:0.0"


def config(**overrides: Any) -> Config:
    return Config(**overrides)


def node(
    name: str,
    *,
    gpu: int = 0,
    capacity: int | None = 500 * GB,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    ready: bool = True,
    unschedulable: bool = False,
    age: timedelta = timedelta(days=10),
    **more: Any,
) -> NodeInfo:
    all_labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", **(labels or {})}
    if gpu:
        all_labels["nvidia.com/gpu.present"] = "true"
    fields: dict[str, Any] = {
        "uid": f"uid-{name}",
        "labels": all_labels,
        "taints": taints,
        "ready": ready,
        "unschedulable": unschedulable,
        "arch": "amd64",
        "os": "linux",
        "gpu_allocatable": gpu,
        "image_fs_capacity": capacity,
        "created": NOW - age,
        "ready_since": NOW - age,
    }
    fields.update(more)
    return NodeInfo(name=name, **fields)


def profile(*, gpu: bool = False, **more: Any) -> PlacementProfile:
    base = PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=gpu,
        namespace="default",
        ownerKind="Job",
    )
    base.update(more)  # type: ignore[typeddict-item]
    return base


def image(
    ref: str,
    *,
    uses: int = 10,
    gpu: bool = False,
    size: int | None = GB,
    source: str = "Learned",
    profiles: tuple[PlacementProfile, ...] | None = None,
    last_seen: datetime | None = None,
    age: timedelta = timedelta(days=5),
    **more: Any,
) -> WantedImage:
    day = NOW.strftime("%Y-%m-%d")
    fields: dict[str, Any] = {
        "name": ref.replace("/", "-").replace(":", "-").replace(".", "-").replace(" ", "-")[:60],
        "uid": f"uid-{ref}",
        "source": source,
        "profiles": profiles if profiles is not None else (profile(gpu=gpu),),
        "last_seen": last_seen or NOW - timedelta(hours=1),
        "use_count": uses,
        "daily_uses": {day: uses} if uses else {},
        "size": size,
        "created": NOW - age,
    }
    fields.update(more)
    return WantedImage(image=ref, **fields)


def cluster_nodes() -> tuple[NodeInfo, ...]:
    return (
        node("cpu-1"),
        node("cpu-2"),
        node("cpu-3"),
        node("cpu-4"),
        node("gpu-1", gpu=8, capacity=2000 * GB),
        node("gpu-2", gpu=8, capacity=2000 * GB),
    )


def cluster_images() -> tuple[WantedImage, ...]:
    return (
        image(APP, uses=50, size=50_000_000),
        image(CUDA, uses=20, gpu=True, size=300_000_000),
        image(PYTORCH, uses=30, gpu=True, size=20_400_000_000),
        image(BUSYBOX, uses=5, size=4_000_000),
    )


def running(name: str, ref: str) -> ContainerObservation:
    return ContainerObservation(name=name, image=ref, state="running", started_at=NOW)


@dataclass
class World:
    """Cluster state the tests evolve by applying plans."""

    nodes: list[NodeInfo]
    images: list[WantedImage]
    config: Config = field(default_factory=Config)
    now: datetime = NOW
    pods: dict[str, ManagedPod] = field(default_factory=dict)
    records: dict[PullKey, PullRecord] = field(default_factory=dict)
    disk: dict[str, set[str]] = field(default_factory=dict)  # node -> images on disk
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)  # image -> reason, message
    uid_counter: int = 0
    history: list[Plan] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            now=self.now,
            nodes=tuple(self.nodes),
            images=tuple(self.images),
            pods=tuple(self.pods.values()),
            pull_records=dict(self.records),
        )

    def plan(self) -> Plan:
        return plan(self.snapshot(), self.config)

    def _uid(self) -> str:
        self.uid_counter += 1
        return f"pod-{self.uid_counter}"

    def step(self, advance: timedelta = timedelta(minutes=1)) -> Plan:
        """Plan, apply the plan, then let the kubelets act and the clock advance."""
        result = self.plan()
        self.history.append(result)
        self.records = dict(result.pull_records)
        for deletion in result.deletions:
            pod = self.pods.get(deletion.name)
            assert pod is not None and pod.uid == deletion.uid, deletion
            del self.pods[deletion.name]
        for pull in result.pulls:
            assert pull.pod_name not in self.pods, pull
            self.pods[pull.pod_name] = ManagedPod(
                name=pull.pod_name,
                uid=self._uid(),
                node=pull.node,
                role="puller",
                images=pull.images,
                created=self.now,
                active_deadline=pull.deadline_seconds,
            )
        for keeper in result.keepers:
            assert keeper.pod_name not in self.pods, keeper
            self.pods[keeper.pod_name] = ManagedPod(
                name=keeper.pod_name,
                uid=self._uid(),
                node=keeper.node,
                role="keeper",
                images=keeper.images,
                created=self.now,
            )
        for removal in result.taint_removals:
            self.nodes = [
                replace(n, taints=tuple(t for t in n.taints if t.key != removal.key))
                if n.name == removal.node
                else n
                for n in self.nodes
            ]
        by_name = {i.name: i for i in self.images}
        for update in result.status_updates:
            obj = by_name[update.name]
            reported = obj.reported
            patch = update.patch
            reported = ReportedStatus(
                score=patch.get("score", reported.score),
                nodes_wanted=patch.get("nodesWanted", reported.nodes_wanted),
                nodes_present=patch.get("nodesPresent", reported.nodes_present),
                last_error=patch.get("lastError", reported.last_error),
            )
            by_name[update.name] = replace(obj, reported=reported)
        self.images = [by_name[i.name] for i in self.images]
        self.kubelets()
        self.now += advance
        return result

    def kubelets(self) -> None:
        """Pending pods run: pullers pull (or fail), keepers start."""
        for name, pod in list(self.pods.items()):
            if pod.role == "keeper" and pod.containers:
                # Like the kubelet: a container waiting for a missing image (Never) starts
                # once the image is on the node.
                on_disk = self.disk.get(pod.node, set())
                self.pods[name] = replace(
                    pod,
                    containers=tuple(
                        running(c.name, c.image)
                        if c.state == "waiting" and c.image in on_disk
                        else c
                        for c in pod.containers
                    ),
                )
            if pod.containers:
                continue
            if pod.role == "puller":
                # Every image in one step: each container ran, or waits with its pull error.
                pulled: list[ContainerObservation] = []
                for ref in pod.images:
                    if ref in self.fail:
                        reason, message = self.fail[ref]
                        pulled.append(
                            ContainerObservation(
                                name=puller_container_name(ref),
                                image=ref,
                                state="waiting",
                                reason=reason,
                                message=message,
                            )
                        )
                        continue
                    self.disk.setdefault(pod.node, set()).add(ref)
                    pulled.append(
                        ContainerObservation(
                            name=puller_container_name(ref),
                            image=ref,
                            state="terminated",
                            exit_code=0,
                            started_at=self.now,
                            finished_at=self.now,
                        )
                    )
                ok = all(c.state == "terminated" for c in pulled)
                self.pods[name] = replace(
                    pod, phase="Succeeded" if ok else "Pending", containers=tuple(pulled)
                )
            else:
                on_disk = self.disk.get(pod.node, set())
                containers = tuple(
                    running(f"c{i}", ref)
                    if ref in on_disk
                    else ContainerObservation(
                        name=f"c{i}", image=ref, state="waiting", reason="ErrImageNeverPull"
                    )
                    for i, ref in enumerate(pod.images)
                )
                self.pods[name] = replace(pod, phase="Running", containers=containers)

    def gc(self) -> None:
        """Kubelet image GC: delete every image no running container uses."""
        for node_name, images in self.disk.items():
            used = {
                c.image
                for p in self.pods.values()
                if p.node == node_name
                for c in p.containers
                if c.state == "running"
            }
            images.intersection_update(used)

    def converge(self, limit: int = 200) -> Plan:
        """Step until a plan asks for nothing; return that plan."""
        for _ in range(limit):
            result = self.step()
            if result.writes == 0:
                return result
        raise AssertionError("did not converge")

    def guarded(self, node_name: str) -> set[str]:
        return {
            c.image
            for p in self.pods.values()
            if p.node == node_name and p.role == "keeper"
            for c in p.containers
            if c.state == "running"
        }


def world(**config_overrides: Any) -> World:
    return World(
        nodes=list(cluster_nodes()),
        images=list(cluster_images()),
        config=config(**config_overrides),
    )


def test_world_builders_are_consistent() -> None:
    w = world()
    assert {n.name for n in w.nodes} == {"cpu-1", "cpu-2", "cpu-3", "cpu-4", "gpu-1", "gpu-2"}
    assert dataclasses.is_dataclass(w.snapshot())
