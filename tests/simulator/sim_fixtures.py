"""Fixtures for the simulator's end-to-end tests: a small SimCluster and polling helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client

from simulator.cluster import SimCluster
from simulator.rawapi import call
from simulator.scenario import Scenario, parse_scenario

T = TypeVar("T")

SMALL = {
    "name": "test-small",
    "speed": 60,
    "registries": [
        {
            "host": "docker.io",
            "bandwidth": "1GB/s",
            "images": [
                {
                    "image": "library/busybox:1.36",
                    "compressed": "2MB",
                    "disk": "4MB",
                    "archs": ["amd64", "arm64"],
                },
                {"image": "library/big:1", "compressed": "3GB", "disk": "6GB"},
                {"image": "library/big:2", "compressed": "3GB", "disk": "6GB"},
            ],
        },
        {
            "host": "nvcr.io",
            "bandwidth": "1GB/s",
            "unauthorized": ["nvidia/private"],
            "images": [
                {
                    "image": "nvidia/cuda:12.4.1-base-ubuntu22.04",
                    "compressed": "86MB",
                    "disk": "239MB",
                },
                {"image": "nvidia/private/x:1", "compressed": "1MB", "disk": "1MB"},
            ],
        },
    ],
    "nodes": [
        {
            "pool": "cpu",
            "count": 2,
            "cpu": "4",
            "memory": "8Gi",
            "disk": "19GB",
            "systemDiskUsed": "5GB",
            "bandwidth": "500MB/s",
        },
        {
            "pool": "gpu",
            "count": 1,
            "cpu": "8",
            "memory": "32Gi",
            "gpus": 2,
            "disk": "100GB",
            "bandwidth": "500MB/s",
        },
    ],
}


def small_scenario(**changes: Any) -> Scenario:
    data = json.loads(json.dumps(SMALL))
    data.update(changes)
    return parse_scenario(data, "test-small")


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(small_scenario(), events=True) as sim:
        yield sim


def pod(name: str, image: str, **spec: Any) -> Any:
    annotations = spec.pop("annotations", {})
    container: dict[str, Any] = {"name": "main", "image": image}
    if "imagePullPolicy" in spec:
        container["imagePullPolicy"] = spec.pop("imagePullPolicy")
    if "resources" in spec:
        container["resources"] = spec.pop("resources")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"containers": [container], **spec},
    }


def raw_pod(core: client.CoreV1Api, name: str, namespace: str = "default") -> Any:
    return call(core.read_namespaced_pod, name, namespace)


def waiting_reason(obj: dict[str, Any]) -> str | None:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None
    waiting = statuses[0].get("state", {}).get("waiting")
    return waiting.get("reason") if waiting else None
