"""Simulated kubelets attached to a real control plane behave like kubelets: they renew their
Lease in kube-node-lease so the real node-lifecycle controller keeps their nodes Ready, write
pod status through the status subresource, and confirm graceful deletions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.realk8s.components import Process, get_json, kubectl
from tests.realk8s.conftest import CPU_NODES, GPU_NODES, Installed
from tests.waiting import wait_for

NODES = (*CPU_NODES, *GPU_NODES)
# The node-lifecycle controller marks a node Unknown when its Lease is older than
# --node-monitor-grace-period (40 s) and looks every 5 s: a node Ready past this age has
# been kept Ready by its heartbeats, not by the controller not having looked yet.
PAST_GRACE = 65.0
UNHEALTHY_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
NAMESPACE = "kubelet-probe"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    [ready] = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    return dict(ready)


def age(value: str) -> float:
    return (datetime.now(UTC) - parse_time(value)).total_seconds()


def test_nodes_stay_ready_past_the_node_monitor_grace_period(
    installed: Installed, kubelets: Process
) -> None:
    plane = installed.control_plane
    wait_for(lambda: age_of_youngest(installed) >= PAST_GRACE, timeout=PAST_GRACE + 10,
             interval=1, what=f"every node older than {PAST_GRACE} s")  # fmt: skip
    leases = {
        lease["metadata"]["name"]: lease
        for lease in get_json(plane, "leases", "-n", "kube-node-lease")["items"]
    }
    for node in get_json(plane, "nodes")["items"]:
        name = node["metadata"]["name"]
        if name not in NODES:
            continue
        ready = ready_condition(node)
        assert ready["status"] == "True", (name, ready)
        # Ready since the kubelet first posted it: never Unknown in between.
        created = parse_time(node["metadata"]["creationTimestamp"])
        assert (parse_time(ready["lastTransitionTime"]) - created).total_seconds() < 30, ready
        taints = {t["key"] for t in node["spec"].get("taints", [])}
        assert not taints & set(UNHEALTHY_TAINTS), (name, taints)
        lease = leases[name]["spec"]
        assert lease["holderIdentity"] == name
        assert age(lease["renewTime"]) < lease["leaseDurationSeconds"], lease


def age_of_youngest(installed: Installed) -> float:
    nodes = get_json(installed.control_plane, "nodes")["items"]
    return min(
        age(n["metadata"]["creationTimestamp"]) for n in nodes if n["metadata"]["name"] in NODES
    )


def pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "docker.io/library/busybox:1.36",
                "command": ["sleep", "3600"],
            }
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


@pytest.fixture
def namespace(installed: Installed) -> Iterator[str]:
    plane = installed.control_plane
    kubectl(plane, "create", "namespace", NAMESPACE)
    try:
        yield NAMESPACE
    finally:
        kubectl(plane, "delete", "namespace", NAMESPACE, "--wait=false")


def status_writers(stored: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(subresource, manager) of every managedFields entry that owns part of `status`."""
    return [
        (entry.get("subresource"), entry["manager"])
        for entry in stored["metadata"]["managedFields"]
        if "f:status" in entry.get("fieldsV1", {})
    ]


def test_pod_status_goes_through_the_status_subresource_and_deletion_waits_for_the_kubelet(
    installed: Installed, kubelets: Process, namespace: str
) -> None:
    plane = installed.control_plane
    installed.apply(pod("runs"))
    running = wait_for(
        lambda: (
            found
            if (found := get_json(plane, "pod", "runs", "-n", namespace, "--show-managed-fields"))
            ["status"].get("phase") == "Running"
            else None
        ),
        what="the pod Running",
    )  # fmt: skip
    writers = status_writers(running)
    assert writers and all(subresource == "status" for subresource, _ in writers), writers
    assert running["status"]["containerStatuses"][0]["state"]["running"]

    # A pod bound to a node no kubelet runs stays Terminating: the real server waits for a
    # kubelet to confirm, so the pod that goes away was confirmed by the simulated one.
    kubectl(plane, "apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "no-kubelet"}}))  # fmt: skip
    try:
        installed.apply(pod("orphan", node="no-kubelet"))
        kubectl(plane, "delete", "pod", "orphan", "-n", namespace, "--wait=false")
        kubectl(
            plane, "delete", "pod", "runs", "-n", namespace, "--grace-period=30", "--wait=false"
        )
        wait_for(lambda: kubectl(plane, "get", "pod", "runs", "-n", namespace,
                                 check=False).returncode != 0,
                 timeout=20, what="the deletion confirmed by the kubelet")  # fmt: skip
        orphan = get_json(plane, "pod", "orphan", "-n", namespace)
        assert orphan["metadata"]["deletionTimestamp"]
        assert orphan["metadata"]["deletionGracePeriodSeconds"] == 30
    finally:
        kubectl(plane, "delete", "pod", "orphan", "-n", namespace, "--grace-period=0",
                "--force", "--ignore-not-found")  # fmt: skip
        kubectl(plane, "delete", "node", "no-kubelet", "--ignore-not-found")
