"""Scheduler predicates (pure) and binding through pods/binding (end to end)."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.cluster import SimCluster
from simulator.scheduling import filter_node, node_matches, parse_quantity, pod_requests, schedule
from tests.simulator.sim_fixtures import cluster, pod, raw_pod
from tests.waiting import wait_for

__all__ = ["cluster"]


def _node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {
            "allocatable": {
                "cpu": "4",
                "memory": "8Gi",
                "pods": "110",
                "nvidia.com/gpu": spec.pop("gpus", "0"),
            }
        },
    }


def _pod(**spec: Any) -> dict[str, Any]:
    containers = [
        {"name": "c", "image": "busybox", "resources": {"requests": spec.pop("requests", {})}}
    ]
    return {"metadata": {"name": "p"}, "spec": {"containers": containers, **spec}}


def _affinity(
    *expressions: dict[str, Any], fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    term: dict[str, Any] = {}
    if expressions:
        term["matchExpressions"] = list(expressions)
    if fields:
        term["matchFields"] = fields
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def test_quantities() -> None:
    assert parse_quantity("500m") == 0.5
    assert parse_quantity("2Gi") == 2 * 1024**3
    assert parse_quantity("1e3") == 1000
    requests = pod_requests(_pod(requests={"cpu": "250m", "memory": "1Gi"}))
    assert requests["cpu"] == 0.25 and requests["pods"] == 1


@pytest.mark.parametrize(
    ("expression", "labels", "ok"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"zone": "a"}, True),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {"zone": "c"}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "gpu", "operator": "Exists"}, {"gpu": "x"}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": "x"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "16"}, False),
    ],
)
def test_required_node_affinity(
    expression: dict[str, Any], labels: dict[str, str], ok: bool
) -> None:
    assert node_matches(_pod(affinity=_affinity(expression)), _node("n", labels)) is ok


def test_match_fields_metadata_name() -> None:
    pod = _pod(
        affinity=_affinity(fields=[{"key": "metadata.name", "operator": "In", "values": ["n2"]}])
    )
    assert not node_matches(pod, _node("n1"))
    assert node_matches(pod, _node("n2"))


def test_taints_tolerations_and_unschedulable() -> None:
    tainted = _node(
        "g", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    )
    assert filter_node(_pod(), tainted) == [
        "node(s) had untolerated taint {nvidia.com/gpu: present}"
    ]
    tolerant = _pod(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    assert node_matches(tolerant, tainted)
    soft = _node("s", taints=[{"key": "x", "effect": "PreferNoSchedule"}])
    assert node_matches(_pod(), soft)
    assert filter_node(_pod(), _node("u", unschedulable=True)) == ["node(s) were unschedulable"]


def test_resources_and_unschedulable_message() -> None:
    nodes = [_node("cpu-1"), _node("gpu-1", {"gpu": "yes"}, gpus="2")]
    gpu_pod = _pod(requests={"nvidia.com/gpu": "1"})
    assert schedule(gpu_pod, nodes, {}).node == "gpu-1"
    decision = schedule(gpu_pod, nodes, {"gpu-1": {"nvidia.com/gpu": 2}})
    assert decision.node is None
    assert decision.message.startswith("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    assert schedule(_pod(requests={"cpu": "3"}), nodes, {"cpu-1": {"cpu": 2}}).node == "gpu-1"


def test_scheduler_binds_by_node_selector_and_gpu(cluster: SimCluster) -> None:
    core: Any = cluster.core()
    gpu = pod(
        "gpu-pod",
        "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        nodeSelector={"nvidia.com/gpu.present": "true"},
        resources={"limits": {"nvidia.com/gpu": "1"}},
    )
    core.create_namespaced_pod("default", gpu)
    obj: Any = wait_for(lambda: (p := raw_pod(core, "gpu-pod"))["spec"].get("nodeName") and p)
    assert obj["spec"]["nodeName"] == "gpu-1"
    wait_for(lambda: raw_pod(core, "gpu-pod")["status"].get("phase") == "Running")


def test_unschedulable_pod_says_why(cluster: SimCluster) -> None:
    core: Any = cluster.core()
    core.create_namespaced_pod(
        "default", pod("too-big", "busybox:1.36", resources={"requests": {"nvidia.com/gpu": "4"}})
    )

    def condition() -> dict[str, Any] | None:
        for c in raw_pod(core, "too-big")["status"].get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                return dict(c)
        return None

    found: Any = wait_for(condition)
    assert found["reason"] == "Unschedulable"
    assert found["message"].startswith("0/3 nodes are available:")
    assert "Insufficient nvidia.com/gpu" in found["message"]


def test_cordoned_node_gets_no_pods(cluster: SimCluster) -> None:
    cluster.cordon("cpu-1")
    cluster.cordon("gpu-1")
    assert cluster.scheduler is not None
    informer = cluster.scheduler.informers.nodes

    def cordoned_in_scheduler_cache() -> bool:
        nodes = [informer.get(name) for name in ("cpu-1", "gpu-1")]
        return all(n is not None and n["spec"].get("unschedulable") for n in nodes)

    wait_for(cordoned_in_scheduler_cache)
    core: Any = cluster.core()
    for i in range(3):
        core.create_namespaced_pod("default", pod(f"spread-{i}", "busybox:1.36"))
    for i in range(3):
        name = f"spread-{i}"

        def bound(name: str = name) -> Any:
            return raw_pod(core, name)["spec"].get("nodeName")

        assert wait_for(bound) == "cpu-2"
