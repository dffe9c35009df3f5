"""A Node as the API server sends it (cordoned, tainted, GPUs), for the tests that read Nodes."""

from __future__ import annotations

from tests.prefetcher.test_core_fixtures import PYTORCH

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
