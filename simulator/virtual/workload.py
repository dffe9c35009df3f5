"""The workload of a virtual run: the pods a scenario's items stand for, as `PodSpec`s.

A scenario item expands as `simulator/workload.py` expands it for the wall-clock simulator:
`replicas` pods `interval` seconds apart, GPU pods with the toleration the
ExtendedResourceToleration admission plugin adds, Deployment pods running until the end and
Job pods for `runSeconds` (30 s by default).
"""

from __future__ import annotations

from imagesync.reference import InvalidReference, normalize
from simulator.noderuntime import DEFAULT_JOB_SECONDS
from simulator.nodes import GPU_RESOURCE
from simulator.scenario import Scenario, WorkloadItem
from simulator.scheduling import parse_quantity
from simulator.virtual.pods import PodSpec

OWNER_KINDS = {"Deployment": "ReplicaSet", "Job": "Job", "Pod": ""}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def normalized(image: str) -> str:
    """The normalized reference, or the text as written when it does not parse."""
    try:
        return normalize(image)
    except InvalidReference:
        return image


def item_pods(item: WorkloadItem) -> list[PodSpec]:
    """The pods one scenario workload item creates."""
    tolerations = tuple(dict(t) for t in item.tolerations)
    if item.gpus:
        tolerations += (dict(GPU_TOLERATION),)
    if item.run_seconds is not None:
        duration: float | None = item.run_seconds
    else:
        duration = None if item.kind == "Deployment" else DEFAULT_JOB_SECONDS
    return [
        PodSpec(
            at=item.at + (index - 1) * item.interval,
            namespace=item.namespace,
            name=f"{item.name}-{index}",
            images=tuple(normalized(i) for i in item.images),
            owner_kind=OWNER_KINDS.get(item.kind, ""),
            owner=item.name,
            node_selector=dict(item.node_selector),
            tolerations=tolerations,
            gpus=item.gpus,
            cpu=parse_quantity(item.cpu),
            memory=parse_quantity(item.memory),
            duration=duration,
            pull_policy=item.pull_policy,
            annotations=dict(item.annotations),
        )
        for index in range(1, item.replicas + 1)
    ]


def scenario_pods(scenario: Scenario) -> list[PodSpec]:
    """Every pod of a scenario's workload, in creation order."""
    pods = [pod for item in scenario.workload for pod in item_pods(item)]
    return sorted(pods, key=lambda p: p.at)
