"""The objects of the memory bench's cluster, written straight into the simulator's store.

No simulated kubelets: the bench writes what a kubelet would (a Node's status, a pod's
container statuses) in the form the simulated kubelets write it, so the prefetcher's
informers decode what they decode in a cluster, at a cost of milliseconds per object.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from imagesync.names import LABEL_COMPONENT, POD_NAMESPACE_DEFAULT
from simulator.apiserver.server import ApiServer
from simulator.nodes import NodeConfig, node_ip, pod_ip
from simulator.nodestatus import node_allocatable, node_capacity, node_identity

Obj = dict[str, Any]
LISTED_IMAGES = 50  # nodeStatusMaxImages: a Node lists its 50 largest images


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def node_config(index: int) -> NodeConfig:
    return NodeConfig(
        name=f"cpu-{index:04d}",
        cpu="64",
        memory="256Gi",
        disk=2 * 2**40,
        max_pods=500,
        zone=("zone-a", "zone-b", "zone-c")[index % 3],
        pool="cpu",
    )


def node_status(config: NodeConfig, images: Sequence[tuple[str, int]], now: float) -> Obj:
    """A Ready node's status as a kubelet writes it, listing the largest of `images`
    (reference, bytes on disk) with a tag and a digest name each."""

    def condition(kind: str, status: str, reason: str) -> Obj:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": f"kubelet reports {reason}",
            "lastHeartbeatTime": stamp(now),
            "lastTransitionTime": stamp(now - 60),
        }

    largest = sorted(images, key=lambda item: -item[1])[:LISTED_IMAGES]
    return {
        "capacity": node_capacity(config),
        "allocatable": node_allocatable(config),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            condition("Ready", "True", "KubeletReady"),
        ],
        **node_identity(config, hashlib.md5(config.name.encode()).hexdigest()),
        "images": [
            {"names": [f"{ref.rsplit(':', 1)[0]}@{_digest(ref)}", ref], "sizeBytes": size}
            for ref, size in largest
        ],
    }


def running_status(pod: Obj, now: float) -> Obj:
    """A pod whose init containers ran and whose every container runs (a puller: every
    image pulled; a keeper: every image held), as a kubelet reports it."""
    spec, meta = pod["spec"], pod["metadata"]
    node = str(spec.get("nodeName", ""))
    started = stamp(now)

    def status(container: Obj, state: Obj) -> Obj:
        image = str(container["image"])
        return {
            "name": container["name"],
            "image": image,
            "imageID": f"{image.rsplit(':', 1)[0]}@{_digest(image)}",
            "containerID": "containerd://" + _digest(f"{meta['name']}/{container['name']}")[7:],
            "ready": "running" in state,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
            "lastState": {},
        }

    finished = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": started,
            "finishedAt": started,
        }
    }
    running = {"running": {"startedAt": started}}
    return {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": started}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ],
        "hostIP": node_ip(node),
        "hostIPs": [{"ip": node_ip(node)}],
        "podIP": pod_ip(node, 1),
        "podIPs": [{"ip": pod_ip(node, 1)}],
        "startTime": started,
        "qosClass": "Burstable",
        "initContainerStatuses": [status(c, finished) for c in spec.get("initContainers") or []],
        "containerStatuses": [status(c, running) for c in spec["containers"]],
    }


class Store:
    """Writes into the simulator's API server, in process (as its REST handlers do)."""

    def __init__(self, server: ApiServer) -> None:
        self.core = server.core
        self.nodes = self.core.resource("", "v1", "nodes")
        self.pods = self.core.resource("", "v1", "pods")

    def create_node(self, config: NodeConfig, status: Obj) -> None:
        self.core.create(self.nodes, "", config.manifest())
        self.set_node_status(config.name, status)

    def set_node_status(self, name: str, status: Obj) -> None:
        self.core.update(
            self.nodes,
            "",
            name,
            {"metadata": {"name": name}, "status": status},
            subresource="status",
        )

    def pods_in(self, namespace: str) -> list[Obj]:
        return list(self.core.store.objects(self.pods.key, namespace))

    def set_pod_status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        self.core.update(
            self.pods,
            meta["namespace"],
            meta["name"],
            {"metadata": {"name": meta["name"]}, "status": status},
            subresource="status",
        )

    def remove_pod(self, pod: Obj) -> None:
        """A pod the kubelet has stopped: gone, no grace left."""
        meta = pod["metadata"]
        self.core.delete(self.pods, meta["namespace"], meta["name"], {"gracePeriodSeconds": 0})


class BenchKubelet:
    """What the kubelets do between the bench's steps: let go of every pod being deleted,
    and once `running` (step 4 on) run every pod that has no container status yet (a keeper
    holds its images, a puller has pulled them)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-kubelet", daemon=True)
        self.running = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for pod in self.store.pods_in(POD_NAMESPACE_DEFAULT):
                if pod["metadata"].get("deletionTimestamp"):
                    self.store.remove_pod(pod)
                elif self.running and not (pod.get("status") or {}).get("containerStatuses"):
                    self.store.set_pod_status(pod, running_status(pod, time.time()))


def role(pod: Obj) -> str:
    return str((pod["metadata"].get("labels") or {}).get(LABEL_COMPONENT, ""))


def half_way(pod: Obj, now: float) -> Obj:
    """A puller's status half way: its first half of containers running, the rest waiting."""
    status = running_status(pod, now)
    containers = status["containerStatuses"]
    for entry in containers[len(containers) // 2 :]:
        entry.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
    status["conditions"] = [c for c in status["conditions"] if c["type"] != "Ready"]
    return status
