"""One simulated node's pure kubelet (`NodeRuntime`) and pods to run on it: the kubelet tests' setup."""

from __future__ import annotations

from typing import Any

from simulator.noderuntime import NodeRuntime
from simulator.nodes import NodeConfig
from simulator.registry import Registry, RegistrySet, catalog_image

T0 = 1_700_000_000.0
MB = 1_000_000


def sample_registries() -> RegistrySet:
    hub = Registry(host="docker.io", bandwidth=1000 * MB, latency=0.0)
    hub.add(
        catalog_image("busybox:1.36", compressed="100MB", disk="200MB", archs=("amd64", "arm64"))
    )
    hub.add(catalog_image("app:latest", compressed="100MB", disk="200MB"))
    nvcr = Registry(host="nvcr.io", bandwidth=1000 * MB, latency=0.0)
    nvcr.add(catalog_image("nvcr.io/nvidia/pytorch:24.08-py3", compressed="9.5GB", disk="20.4GB"))
    return RegistrySet([hub, nvcr], epoch=T0)


def make_node(**kw: Any) -> NodeRuntime:
    config = NodeConfig(name="n1", bandwidth=kw.pop("bandwidth", 100 * MB), **kw)
    return NodeRuntime(config, sample_registries(), T0)


def make_pod(name: str, *images: str, **extra: Any) -> dict[str, Any]:
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


def pod_status(node: NodeRuntime, name: str) -> dict[str, Any]:
    return node.pod_status(node.pods[f"uid-{name}"])


def waiting_reason(status: dict[str, Any], index: int = 0) -> str | None:
    state = status["containerStatuses"][index]["state"]
    reason = state.get("waiting", {}).get("reason")
    return None if reason is None else str(reason)
