"""Small clusters for the virtual-time tests, built from scenario YAML like the shipped ones."""

from __future__ import annotations

from typing import Any

from simulator.scenario import Scenario, parse_scenario
from simulator.virtual.pods import PodSpec

HARBOR = "harbor.example.internal"
APP = f"{HARBOR}/library/app:1.0"
BIG = f"{HARBOR}/ml/big:1.0"
GPU_IMAGE = "nvcr.io/nvidia/pytorch:24.08-py3"


def scenario(
    *,
    cpu_nodes: int = 2,
    gpu_nodes: int = 0,
    disk: str = "200Gi",
    registry_bandwidth: str = "100MB/s",
    node_bandwidth: str = "50MB/s",
    outages: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    scoring: dict[str, Any] | None = None,
) -> Scenario:
    """Harbor (app 100 MB, big 1 GB) and nvcr.io (pytorch 2 GB); no latency, round numbers."""
    nodes: list[dict[str, Any]] = [
        {
            "pool": "cpu",
            "count": cpu_nodes,
            "cpu": "16",
            "memory": "64Gi",
            "disk": disk,
            "systemDiskUsed": "0",
            "bandwidth": node_bandwidth,
        }
    ]
    if gpu_nodes:
        nodes.append(
            {
                "pool": "gpu",
                "count": gpu_nodes,
                "cpu": "96",
                "memory": "1024Gi",
                "gpus": 8,
                "disk": disk,
                "systemDiskUsed": "0",
                "bandwidth": node_bandwidth,
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            }
        )
    data = {
        "name": "test",
        "nodes": nodes,
        "registries": [
            {
                "host": HARBOR,
                "bandwidth": registry_bandwidth,
                "latency": 0,
                "outages": outages or [],
                "images": [
                    {"image": "library/app:1.0", "compressed": "100MB", "disk": "200MB"},
                    {"image": "ml/big:1.0", "compressed": "1GB", "disk": "2GB"},
                ],
            },
            {
                "host": "nvcr.io",
                "bandwidth": registry_bandwidth,
                "latency": 0,
                "images": [
                    {"image": "nvidia/pytorch:24.08-py3", "compressed": "2GB", "disk": "4GB"},
                ],
            },
            {
                "host": "ghcr.io",
                "bandwidth": "1GB/s",
                "latency": 0,
                "images": [
                    {"image": "image-sync/image-sync:0.1.0", "compressed": "1MB", "disk": "1MB"}
                ],
            },
        ],
        "events": events or [],
        "scheduler": {"scoringStrategy": scoring} if scoring else {},
    }
    return parse_scenario(data, "test")


def pod(
    name: str, at: float, image: str = APP, duration: float | None = 60.0, **kwargs: Any
) -> PodSpec:
    return PodSpec(
        at=at, namespace="default", name=name, images=(image,), duration=duration, **kwargs
    )
