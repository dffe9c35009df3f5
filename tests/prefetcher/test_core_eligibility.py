"""Where an image may run: node health and the placement prediction, each with a reason."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from prefetcher.eligibility import (
    affinity_matches,
    eligibility,
    node_problem,
    placement_problem,
    tolerates,
)
from prefetcher.model import Taint
from tests.prefetcher.test_core_fixtures import APP, PYTORCH, config, image, node, profile

CFG = config(startup_taint="image-sync.io/warming")


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


def test_node_problems_have_reasons() -> None:
    assert node_problem(node("a"), CFG) is None
    assert node_problem(node("a", ready=False), CFG) == "node is not Ready"
    assert node_problem(node("a", unschedulable=True), CFG) == "node is cordoned"
    assert node_problem(node("a", unschedulable=True), config(schedulable_only=False)) is None
    assert node_problem(node("a", disk_pressure=True), CFG) == "node reports DiskPressure"
    assert node_problem(replace(node("w"), os="windows"), CFG) == "node runs windows, not Linux"


def test_gpu_images_only_on_gpu_nodes() -> None:
    gpu_image = image(PYTORCH, gpu=True)
    assert placement_problem(gpu_image, node("g", gpu=1), CFG) is None
    labelled = node("l", labels={"nvidia.com/gpu.present": "true"})
    assert placement_problem(gpu_image, labelled, CFG) is None
    assert (
        placement_problem(gpu_image, node("c"), CFG)
        == "no GPU: pods using this image request nvidia.com/gpu"
    )
    # Used by both GPU and CPU pods: any node.
    mixed = image(PYTORCH, profiles=(profile(gpu=True), profile(gpu=False)))
    assert placement_problem(mixed, node("c"), CFG) is None


GIB = 2.0**30
L4 = {"cpu": 48.0, "memory": 191.9 * GIB, "nvidia.com/gpu": 4.0}
TRAINING = {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}
SERVING = {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"}


def test_a_node_too_small_for_the_pods_is_not_eligible() -> None:
    l4 = node("l4", gpu=4, allocatable=L4)
    training = image(PYTORCH, profiles=(profile(gpu=True, requests=TRAINING),))
    assert placement_problem(training, l4, CFG) == "needs 8 nvidia.com/gpu, node has 4"
    a100 = node("a100", gpu=8, allocatable={"cpu": 96.0, "memory": 1024 * GIB, "nvidia.com/gpu": 8})
    assert placement_problem(training, a100, CFG) is None
    # Allocatable, not what is free: a full node still fits. Devices are named first.
    big_cpu = image(PYTORCH, profiles=(profile(requests={"cpu": "16", "memory": "256Gi"}),))
    assert placement_problem(big_cpu, l4, CFG) == "needs 256Gi memory, node has 191.9Gi"
    assert (
        placement_problem(image(APP, profiles=(profile(requests={"cpu": "49500m"}),)), l4, CFG)
        == "needs 49500m cpu, node has 48"
    )


def test_any_profile_that_fits_makes_the_node_eligible() -> None:
    l4 = node("l4", gpu=4, allocatable=L4)
    both = image(
        PYTORCH,
        profiles=(profile(gpu=True, requests=TRAINING), profile(gpu=True, requests=SERVING)),
    )
    assert placement_problem(both, l4, CFG) is None
    tainted = replace(l4, taints=(Taint("dedicated", "infer", "NoSchedule"),))
    assert placement_problem(both, tainted, CFG) == (
        "no placement of its pods fits: needs 8 nvidia.com/gpu, node has 4; "
        "taint dedicated=infer:NoSchedule not tolerated"
    )


def test_requests_are_held_only_against_what_the_node_reports() -> None:
    training = image(PYTORCH, profiles=(profile(gpu=True, requests=TRAINING),))
    # A GPU node whose device plugin has not registered yet: its GPUs are not judged.
    joining = node("new", labels={"nvidia.com/gpu.present": "true"}, allocatable={"cpu": 96.0})
    assert placement_problem(training, joining, CFG) is None
    # A node that reports no allocatable at all, and a profile from before requests: as before.
    assert placement_problem(training, node("bare", gpu=4), CFG) is None
    older = image(PYTORCH, profiles=(profile(gpu=True),))
    assert placement_problem(older, node("l4", gpu=4, allocatable=L4), CFG) is None
    # A declared image (no profiles) goes anywhere its nodeSelector allows.
    assert placement_problem(image(PYTORCH, profiles=()), node("l4", allocatable=L4), CFG) is None


def test_taints_and_tolerations() -> None:
    tainted = node("t", taints=(Taint("dedicated", "infer", "NoSchedule"),))
    assert (
        placement_problem(image(APP), tainted, CFG)
        == "taint dedicated=infer:NoSchedule not tolerated"
    )
    tolerant = image(
        APP,
        profiles=(
            profile(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "infer"}]),
        ),
    )
    assert placement_problem(tolerant, tainted, CFG) is None
    soft = node("s", taints=(Taint("x", "", "PreferNoSchedule"),))
    assert placement_problem(image(APP), soft, CFG) is None
    health = node(
        "h",
        taints=(
            Taint("node.kubernetes.io/not-ready", "", "NoExecute"),
            Taint("image-sync.io/warming", "", "NoSchedule"),
        ),
    )
    assert placement_problem(image(APP), health, CFG) is None


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"operator": "Exists"}, Taint("a", "b", "NoExecute"), True),
        ({"key": "a", "operator": "Exists"}, Taint("a", "b", "NoSchedule"), True),
        ({"key": "a", "value": "b"}, Taint("a", "b", "NoSchedule"), True),
        ({"key": "a", "value": "c"}, Taint("a", "b", "NoSchedule"), False),
        (
            {"key": "a", "operator": "Exists", "effect": "NoExecute"},
            Taint("a", "", "NoSchedule"),
            False,
        ),
        ({"key": "", "operator": "Equal"}, Taint("a", "", "NoSchedule"), False),
    ],
)
def test_toleration_matching(toleration: Any, taint: Taint, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_node_affinity_operators() -> None:
    n = node("worker-7", labels={"pool": "a", "cores": "64"})
    assert affinity_matches([], n)
    assert affinity_matches([{"matchExpressions": [expr("pool", "In", "a", "b")]}], n)
    assert not affinity_matches([{"matchExpressions": [expr("pool", "NotIn", "a")]}], n)
    assert affinity_matches([{"matchExpressions": [expr("zone", "DoesNotExist")]}], n)
    assert not affinity_matches([{"matchExpressions": [expr("zone", "Exists")]}], n)
    assert affinity_matches([{"matchExpressions": [expr("cores", "Gt", "32")]}], n)
    assert not affinity_matches([{"matchExpressions": [expr("cores", "Lt", "32")]}], n)
    assert affinity_matches([{"matchFields": [expr("metadata.name", "In", "worker-7")]}], n)
    assert not affinity_matches([{}], n)  # an empty term matches nothing
    terms = [
        {"matchExpressions": [expr("pool", "In", "z")]},
        {"matchExpressions": [expr("pool", "In", "a")]},
    ]
    assert affinity_matches(terms, n)  # terms are ORed
    pinned = image(
        APP,
        profiles=(profile(requiredNodeAffinity=[{"matchExpressions": [expr("pool", "In", "b")]}]),),
    )
    assert "required node affinity" in str(placement_problem(pinned, n, CFG))


def test_selectors_architecture_and_reasons() -> None:
    n = node("a", labels={"pool": "x"})
    declared = image(APP, source="Declared", profiles=(), node_selector={"pool": "y"})
    assert (
        placement_problem(declared, n, CFG) == "image's nodeSelector pool=y does not match the node"
    )
    selecting = image(APP, profiles=(profile(nodeSelector={"pool": "y"}),))
    assert placement_problem(selecting, n, CFG) == "nodeSelector pool=y does not match the node"
    arm_only = image(APP, architectures=("arm64",))
    assert placement_problem(arm_only, n, CFG) == "image has no amd64 build (arm64 only)"
    two = image(APP, profiles=(profile(gpu=True), profile(nodeSelector={"pool": "y"})))
    reason = str(placement_problem(two, n, CFG))
    assert reason.startswith("no placement of its pods fits:") and "GPU" in reason
    assert eligibility(image(APP), node("c", unschedulable=True), CFG) == "node is cordoned"


def test_control_plane_nodes_only_where_a_placement_allows_them() -> None:
    role = "node-role.kubernetes.io/control-plane"
    control = node("cp-1", labels={role: ""}, taints=(Taint(role, "", "NoSchedule"),))
    untainted = node("cp-2", labels={role: ""})
    declared = image(APP, source="Declared", profiles=())
    assert placement_problem(declared, node("cpu-1"), CFG) is None
    for cp in (control, untainted):
        reason = placement_problem(declared, cp, CFG)
        assert reason is not None and "control-plane" in reason
    # Pods that select no role and tolerate nothing do not go there, even untainted.
    plain = image(APP, profiles=(profile(),))
    assert "control-plane" in (placement_problem(plain, untainted, CFG) or "")
    # A placement that tolerates the control-plane taint, or selects the role, does.
    tolerant = image(APP, profiles=(profile(tolerations=[{"key": role, "operator": "Exists"}]),))
    assert placement_problem(tolerant, control, CFG) is None
    everything = image(APP, profiles=(profile(tolerations=[{"operator": "Exists"}]),))
    assert placement_problem(everything, control, CFG) is None
    selecting = image(APP, profiles=(profile(nodeSelector={role: ""}),))
    assert placement_problem(selecting, untainted, CFG) is None
    chosen = image(APP, source="Declared", profiles=(), node_selector={role: ""})
    assert placement_problem(chosen, control, CFG) is None
