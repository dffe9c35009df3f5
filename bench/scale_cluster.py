"""The simulated cluster of the end-to-end scale bench: its images, nodes and registries, the
prefetcher's objects it starts with, and the kubelet cadences that let 1,000 nodes fit.

Images span 10 MB to 500 MB compressed (a service fleet), every one declared by a
CachedImage; one registry at 400 Gbit/s, nodes at 10 Gbit/s each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from imagesync.cachedimage import object_name
from imagesync.config import Config
from imagesync.names import POD_NAMESPACE_DEFAULT
from simulator.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]

NAMESPACE = "image-sync"
REGISTRY = "harbor.example.internal"
NODE_BANDWIDTH = 10e9 / 8  # bytes/s (10 Gbit/s)
REGISTRY_BANDWIDTH = 400e9 / 8  # bytes/s (400 Gbit/s)
REGISTRY_ROUND_TRIP = 0.3  # seconds before an image's first byte (its manifest), per pull
PULL_BATCH_SIZE = 10
JOIN_PULL_BATCH_SIZE = Config().join_pull_batch_size  # the default: nodes that just joined
MB = 1_000_000
NEW_IMAGE_BYTES = 20 * MB
NODE_STATUS_EVERY = 10.0  # simulated seconds, the kubelet's nodeStatusUpdateFrequency
POD_STATUS_EVERY = 30.0  # simulated seconds between a puller's progress writes


def image_sizes(count: int) -> list[tuple[str, int, int]]:
    """(image, compressed, disk): a spread from 10 MB to 500 MB compressed, like a service fleet."""
    out = []
    for i in range(count):
        compressed = (10 + (i * 37) % 490) * MB
        out.append((f"{REGISTRY}/bench/svc-{i:03d}:1.0", compressed, int(compressed * 2.5)))
    return out


def new_image() -> tuple[str, int, int]:
    return (f"{REGISTRY}/bench/svc-new:1.0", NEW_IMAGE_BYTES, int(NEW_IMAGE_BYTES * 2.5))


def scenario(
    nodes: int, images: list[tuple[str, int, int]], speed: float, parallel_pulls: int = 0
) -> Any:
    """The bench's cluster; `parallel_pulls` > 0: kubelets that pull that many images at once
    (`serializeImagePulls: false`, `maxParallelImagePulls`), else one at a time."""
    kubelet: dict[str, Any] = (
        {"serializeImagePulls": False, "maxParallelImagePulls": parallel_pulls}
        if parallel_pulls
        else {}
    )
    catalogue = [
        {"image": ref.split("/", 1)[1], "compressed": size, "disk": disk, "archs": ["amd64"]}
        for ref, size, disk in [*images, new_image()]
    ]
    return parse_scenario(
        {
            "name": "prefetch-scale",
            "speed": speed,
            "registries": [
                {
                    "host": REGISTRY,
                    "bandwidth": f"{REGISTRY_BANDWIDTH * 8 / 1e9:g}Gbps",
                    "latency": REGISTRY_ROUND_TRIP,
                    "images": catalogue,
                },
                {
                    "host": "ghcr.io",
                    "bandwidth": "100Gbps",
                    "images": [
                        {
                            "image": "image-sync/image-sync:0.1.0",
                            "compressed": 24 * MB,
                            "disk": 68 * MB,
                            "archs": ["amd64"],
                        }
                    ],
                },
            ],
            "nodes": [
                {
                    "pool": "cpu",
                    "count": nodes,
                    "cpu": "64",
                    "memory": "256Gi",
                    "disk": "2Ti",
                    "bandwidth": f"{NODE_BANDWIDTH * 8 / 1e9:g}Gbps",
                    "maxPods": 500,
                    "zones": ["zone-a", "zone-b", "zone-c"],
                    **kubelet,
                }
            ],
        },
        name="prefetch-scale",
    )


def declare(api: client.ApiClient, ref: str) -> None:
    custom: Any = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        "image-sync.io",
        "v1alpha1",
        "cachedimages",
        {
            "apiVersion": "image-sync.io/v1alpha1",
            "kind": "CachedImage",
            "metadata": {"name": object_name(ref)},
            "spec": {"image": ref, "source": "Declared"},
        },
    )


def install(api: client.ApiClient, images: list[tuple[str, int, int]]) -> None:
    import yaml

    base = ROOT / "manifests" / "base"
    any_api: Any = client.ApiextensionsV1Api(api)
    any_api.create_custom_resource_definition(
        yaml.safe_load((base / "crd-cachedimages.yaml").read_text())
    )
    core: Any = client.CoreV1Api(api)
    for namespace in (NAMESPACE, POD_NAMESPACE_DEFAULT):
        core.create_namespace({"metadata": {"name": namespace}})
    scheduling: Any = client.SchedulingV1Api(api)
    scheduling.create_priority_class(yaml.safe_load((base / "priorityclass.yaml").read_text()))
    for ref, _, _ in images:
        declare(api, ref)


def kubelet_tick(nodes: int) -> float:
    """Wall seconds between the simulated kubelets' passes: 0.1 s up to 200 nodes, longer
    beyond, so a pass writes each pod's status once for several of its changes."""
    return max(0.1, nodes / 2000)


def heartbeat_wall(nodes: int) -> float:
    """Wall seconds between a simulated node's Lease renewals and status writes: about 20
    writes a second whatever the size (nothing in this bench reads node Leases)."""
    return max(1.0, nodes / 20)
