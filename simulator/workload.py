"""Replays a scenario's workload and node events through the API, on simulated time.

Deployments and Jobs are created as the bare Pods their controllers would create (the
simulated API server runs no controllers), labelled `app=<name>`. GPU pods get the toleration
the ExtendedResourceToleration admission plugin would add.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.clock import Clock
from simulator.noderuntime import RUN_SECONDS
from simulator.nodes import GPU_RESOURCE, NOT_READY, NodeConfig
from simulator.rawapi import MERGE, call
from simulator.scenario import NodeEvent, Scenario, WorkloadItem

JSON = dict[str, Any]

log = logging.getLogger(__name__)


def pod_manifests(item: WorkloadItem) -> list[JSON]:
    """The pods one workload item stands for."""
    restart = "Always" if item.kind == "Deployment" else "Never"
    requests: JSON = {"cpu": item.cpu, "memory": item.memory}
    limits: JSON = {}
    if item.gpus:
        requests[GPU_RESOURCE] = str(item.gpus)
        limits[GPU_RESOURCE] = str(item.gpus)
    tolerations = [dict(t) for t in item.tolerations]
    if item.gpus:
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    annotations = dict(item.annotations)
    if item.run_seconds is not None:
        annotations[RUN_SECONDS] = str(item.run_seconds)
    pods = []
    for index in range(1, item.replicas + 1):
        containers = []
        for number, image in enumerate(item.images):
            container: JSON = {
                "name": "main" if number == 0 else f"side-{number}",
                "image": image,
                "resources": {"requests": requests, **({"limits": limits} if limits else {})},
            }
            if item.pull_policy:
                container["imagePullPolicy"] = item.pull_policy
            containers.append(container)
        spec: JSON = {"containers": containers, "restartPolicy": restart}
        if item.node_selector:
            spec["nodeSelector"] = dict(item.node_selector)
        if tolerations:
            spec["tolerations"] = tolerations
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{item.name}-{index}",
                    "namespace": item.namespace,
                    "labels": {"app": item.name, **item.labels},
                    "annotations": annotations,
                },
                "spec": spec,
            }
        )
    return pods


class ClusterOps:
    """Node and pod changes through the API, shared by the workload player, SimCluster and the CLI."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)

    def ensure_namespace(self, name: str) -> None:
        try:
            call(self.core.create_namespace, {"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def create_node(self, config: NodeConfig) -> None:
        try:
            call(self.core.create_node, config.manifest())
        except ApiException as exc:
            if exc.status != 409:
                raise

    def remove_node(self, name: str) -> None:
        try:
            call(self.core.delete_node, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        body = {"spec": {"unschedulable": True if unschedulable else None}}
        call(self.core.patch_node, name, body, _content_type=MERGE)

    def set_not_ready(self, name: str, not_ready: bool = True) -> None:
        body = {"metadata": {"annotations": {NOT_READY: "true" if not_ready else None}}}
        call(self.core.patch_node, name, body, _content_type=MERGE)

    def create_pod(self, pod: JSON) -> None:
        try:
            call(self.core.create_namespaced_pod, pod["metadata"].get("namespace", "default"), pod)
        except ApiException as exc:
            if exc.status != 409:
                raise


class WorkloadPlayer:
    """Creates the scenario's pods and applies its node events when their time comes."""

    def __init__(
        self,
        api_client: client.ApiClient,
        clock: Clock,
        scenario: Scenario,
        *,
        start: float | None = None,
        join: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self.ops = ClusterOps(api_client)
        self.clock = clock
        self.scenario = scenario
        self.start_time = clock.now() if start is None else start
        self._join = join
        self.created = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="workload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _steps(self) -> list[tuple[float, Callable[[], None]]]:
        steps: list[tuple[float, Callable[[], None]]] = []
        namespaces = {w.namespace for w in self.scenario.workload}
        for ns in sorted(namespaces):
            steps.append((-1.0, lambda ns=ns: self.ops.ensure_namespace(ns)))  # type: ignore[misc]
        for item in self.scenario.workload:
            for index, pod in enumerate(pod_manifests(item)):
                steps.append((item.at + index * item.interval, lambda pod=pod: self._create(pod)))  # type: ignore[misc]
        for event in self.scenario.events:
            steps.append((event.at, lambda event=event: self.apply(event)))  # type: ignore[misc]
        steps.sort(key=lambda s: s[0])
        return steps

    def _create(self, pod: JSON) -> None:
        self.ops.create_pod(pod)
        self.created += 1

    def apply(self, event: NodeEvent) -> None:
        """Carry out one node lifecycle event."""
        if event.action == "join":
            if self._join is None:
                raise RuntimeError("this player cannot add nodes")
            self._join(event.pool, event.count)
        elif event.action == "remove":
            self.ops.remove_node(event.node)
        elif event.action in ("cordon", "uncordon"):
            self.ops.cordon(event.node, event.action == "cordon")
        else:
            self.ops.set_not_ready(event.node, event.action == "notready")

    def run(self) -> None:
        for at, action in self._steps():
            while not self._stop.is_set():
                left = self.start_time + at - self.clock.now()
                if left <= 0:
                    break
                self._stop.wait(min(1.0, self.clock.wall_seconds(left)))
            if self._stop.is_set():
                return
            try:
                action()
            except Exception:
                log.exception("workload step at %ss failed", at)
        self.done.set()
