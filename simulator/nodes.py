"""Simulated node definitions: what a node is made of, and the Node object that carries it.

A simulated kubelet learns everything about its node from the Node object (labels and
`sim.image-sync.io/*` annotations), so nodes can be created by a scenario, the CLI, kubectl,
or a test on any API server, and a kubelet attached through a kubeconfig takes them over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesync.quantities import parse_bandwidth, parse_duration, parse_size
from simulator.imagestore import GCPolicy

ANNOTATION_PREFIX = "sim.image-sync.io/"
MANAGED = ANNOTATION_PREFIX + "managed"
NOT_READY = ANNOTATION_PREFIX + "not-ready"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One simulated node; sizes in bytes, bandwidth in bytes per second, durations in seconds."""

    name: str
    arch: str = "amd64"
    os: str = "linux"
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0
    gpu_product: str = "NVIDIA-A100-SXM4-80GB"
    disk: int = 200 * 1024**3
    system_disk_used: int = 10 * 1024**3
    bandwidth: float = 125e6
    max_pods: int = 110
    zone: str = "zone-a"
    instance_type: str = "sim.standard"
    pool: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    serialize_image_pulls: bool = True
    # maxParallelImagePulls (KEP-3673; with serializeImagePulls false): pulls in flight at once
    # on the node, 0 for no limit (the kubelet's default when unset). Pulls in flight share
    # the node's bandwidth.
    max_parallel_image_pulls: int = 0
    gc: GCPolicy = field(default_factory=GCPolicy)
    preloaded_images: tuple[str, ...] = ()
    unschedulable: bool = False
    # The kubelet feature gate KubeletEnsureSecretPulledImages (KEP-2535; off in the 1.32
    # kubelet this simulates, on by default from 1.35): an image pulled with credentials is
    # used only by pods that bring the same pull secret, or by a pod whose own pull succeeds.
    ensure_secret_pulled_images: bool = False
    # Whether deleting a pod stops its image pull in flight. Kubelets up to at least 1.35 do
    # not (kubernetes#88662, #122905: SyncPod runs without the pod worker's cancellation);
    # on: a kubelet that cancels, freeing the node's pull queue and the registry at once (the
    # bytes fetched are lost: containerd drops a cancelled pull's lease).
    cancel_pull_on_delete: bool = False

    def all_labels(self) -> dict[str, str]:
        """The labels a kubelet (and GPU feature discovery on GPU nodes) puts on the node."""
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/arch": self.arch,
            "kubernetes.io/os": self.os,
            "beta.kubernetes.io/arch": self.arch,
            "beta.kubernetes.io/os": self.os,
            "topology.kubernetes.io/zone": self.zone,
            "node.kubernetes.io/instance-type": self.instance_type,
        }
        if self.gpus:
            labels["nvidia.com/gpu.present"] = "true"
            labels["nvidia.com/gpu.product"] = self.gpu_product
            labels["nvidia.com/gpu.count"] = str(self.gpus)
        if self.pool:
            labels[ANNOTATION_PREFIX + "pool"] = self.pool
        labels.update(self.labels)
        return labels

    def parallel_pulls(self) -> int:
        """How many pulls the kubelet runs at once: one when serialized, else
        `maxParallelImagePulls` (unlimited when 0)."""
        if self.serialize_image_pulls:
            return 1
        return self.max_parallel_image_pulls or 1_000_000

    def annotations(self) -> dict[str, str]:
        out = {
            MANAGED: "true",
            ANNOTATION_PREFIX + "cpu": self.cpu,
            ANNOTATION_PREFIX + "memory": self.memory,
            ANNOTATION_PREFIX + "gpus": str(self.gpus),
            ANNOTATION_PREFIX + "gpu-product": self.gpu_product,
            ANNOTATION_PREFIX + "disk": str(self.disk),
            ANNOTATION_PREFIX + "system-disk-used": str(self.system_disk_used),
            ANNOTATION_PREFIX + "bandwidth": str(self.bandwidth),
            ANNOTATION_PREFIX + "max-pods": str(self.max_pods),
            ANNOTATION_PREFIX + "zone": self.zone,
            ANNOTATION_PREFIX + "instance-type": self.instance_type,
            ANNOTATION_PREFIX + "serialize-image-pulls": str(self.serialize_image_pulls).lower(),
            ANNOTATION_PREFIX + "max-parallel-image-pulls": str(self.max_parallel_image_pulls),
            ANNOTATION_PREFIX + "ensure-secret-pulled-images": str(
                self.ensure_secret_pulled_images
            ).lower(),
            ANNOTATION_PREFIX + "cancel-pull-on-delete": str(self.cancel_pull_on_delete).lower(),
            ANNOTATION_PREFIX + "image-gc-high-threshold": str(self.gc.high_threshold),
            ANNOTATION_PREFIX + "image-gc-low-threshold": str(self.gc.low_threshold),
            ANNOTATION_PREFIX + "image-minimum-gc-age": str(self.gc.min_age),
            ANNOTATION_PREFIX + "image-gc-period": str(self.gc.period),
            ANNOTATION_PREFIX + "eviction-imagefs-available": str(self.gc.pressure_available),
        }
        if self.gc.max_age is not None:
            out[ANNOTATION_PREFIX + "image-maximum-gc-age"] = str(self.gc.max_age)
        if self.preloaded_images:
            out[ANNOTATION_PREFIX + "preloaded-images"] = ",".join(self.preloaded_images)
        return out

    def manifest(self) -> dict[str, Any]:
        """The Node object to create; the simulated kubelet fills in its status."""
        spec: dict[str, Any] = {"podCIDR": pod_cidr(self.name), "podCIDRs": [pod_cidr(self.name)]}
        if self.taints:
            spec["taints"] = [dict(t) for t in self.taints]
        if self.unschedulable:
            spec["unschedulable"] = True
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.all_labels(),
                "annotations": self.annotations(),
            },
            "spec": spec,
        }


def _octets(name: str) -> tuple[int, int]:
    digest = hashlib.sha256(name.encode()).digest()
    return digest[0], digest[1]


def node_ip(name: str) -> str:
    """A stable InternalIP derived from the node name."""
    a, b = _octets(name)
    return f"10.{a % 250}.{b}.{(a + b) % 250 + 2}"


def pod_cidr(name: str) -> str:
    a, b = _octets(name)
    return f"100.{64 + a % 64}.{b}.0/24"


def pod_ip(name: str, index: int) -> str:
    a, b = _octets(name)
    return f"100.{64 + a % 64}.{b}.{2 + index % 250}"


def config_from_node(node: Mapping[str, Any]) -> NodeConfig:
    """Read a NodeConfig back from a Node object; anything missing takes the default."""
    meta = node.get("metadata") or {}
    name = str(meta.get("name", ""))
    ann = meta.get("annotations") or {}
    labels = dict(meta.get("labels") or {})
    default = NodeConfig(name=name)

    def get(key: str) -> str | None:
        value = ann.get(ANNOTATION_PREFIX + key)
        return None if value in (None, "") else str(value)

    def number(key: str, fallback: float) -> float:
        value = get(key)
        return fallback if value is None else float(value)

    max_age = get("image-maximum-gc-age")
    gc = GCPolicy(
        high_threshold=number("image-gc-high-threshold", default.gc.high_threshold),
        low_threshold=number("image-gc-low-threshold", default.gc.low_threshold),
        min_age=parse_duration(get("image-minimum-gc-age") or default.gc.min_age),
        period=parse_duration(get("image-gc-period") or default.gc.period),
        max_age=parse_duration(max_age) if max_age else None,
        pressure_available=number("eviction-imagefs-available", default.gc.pressure_available),
    )
    preloaded = tuple(p.strip() for p in (get("preloaded-images") or "").split(",") if p.strip())
    spec = node.get("spec") or {}
    return NodeConfig(
        name=name,
        arch=labels.get("kubernetes.io/arch") or get("arch") or default.arch,
        os=labels.get("kubernetes.io/os") or default.os,
        cpu=get("cpu") or default.cpu,
        memory=get("memory") or default.memory,
        gpus=int(number("gpus", 0)),
        gpu_product=labels.get("nvidia.com/gpu.product")
        or get("gpu-product")
        or default.gpu_product,
        disk=parse_size(get("disk") or default.disk),
        system_disk_used=parse_size(get("system-disk-used") or default.system_disk_used),
        bandwidth=parse_bandwidth(get("bandwidth") or default.bandwidth),
        max_pods=int(number("max-pods", default.max_pods)),
        zone=labels.get("topology.kubernetes.io/zone") or get("zone") or default.zone,
        instance_type=labels.get("node.kubernetes.io/instance-type")
        or get("instance-type")
        or default.instance_type,
        pool=labels.get(ANNOTATION_PREFIX + "pool", ""),
        labels=labels,
        taints=tuple(spec.get("taints") or ()),
        serialize_image_pulls=(get("serialize-image-pulls") or "true").lower() != "false",
        max_parallel_image_pulls=int(number("max-parallel-image-pulls", 0)),
        ensure_secret_pulled_images=(get("ensure-secret-pulled-images") or "").lower() == "true",
        cancel_pull_on_delete=(get("cancel-pull-on-delete") or "").lower() == "true",
        gc=gc,
        preloaded_images=preloaded,
        unschedulable=bool(spec.get("unschedulable")),
    )


def is_managed(node: Mapping[str, Any]) -> bool:
    ann = (node.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(MANAGED, "")).lower() == "true"


def is_marked_not_ready(node: Mapping[str, Any]) -> bool:
    ann = (node.get("metadata") or {}).get("annotations") or {}
    return str(ann.get(NOT_READY, "")).lower() == "true"
