"""How a simulated kubelet reports: pod and node statuses, events, deletions."""

from __future__ import annotations

import hashlib
import uuid

from simulator.clock import rfc3339
from simulator.imagestore import ImageStore
from simulator.nodes import GPU_RESOURCE, NodeConfig, node_ip
from simulator.podstate import (
    EVENT_BURST,
    EVENT_REFILL_SECONDS,
    JSON,
    KUBELET_VERSION,
    RUNTIME_VERSION,
    Container,
    Event,
    Pod,
    PullJob,
)
from simulator.registry import RegistrySet
from simulator.scheduling import parse_quantity


def node_capacity(config: NodeConfig) -> JSON:
    """`status.capacity` of a simulated node."""
    out: JSON = {
        "cpu": config.cpu,
        "memory": config.memory,
        "pods": str(config.max_pods),
        "ephemeral-storage": str(config.disk),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    if config.gpus:
        out[GPU_RESOURCE] = str(config.gpus)
    return out


def node_allocatable(config: NodeConfig) -> JSON:
    """`status.allocatable`: the capacity less the kubelet's reservations."""
    out = node_capacity(config)
    memory = parse_quantity(config.memory) - 100 * 1024**2
    out["memory"] = f"{max(0, int(memory) // 1024)}Ki"
    out["ephemeral-storage"] = str(int(config.disk * 0.9))
    return out


def node_identity(config: NodeConfig, boot_id: str) -> JSON:
    """The parts of a Node's status that say which machine and kubelet it is (addresses,
    kubelet endpoint, node info), as a kubelet writes them."""
    machine = hashlib.md5(config.name.encode()).hexdigest()
    return {
        "addresses": [
            {"type": "InternalIP", "address": node_ip(config.name)},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": config.arch,
            "bootID": boot_id,
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kernelVersion": "5.15.0-119-generic",
            "kubeProxyVersion": KUBELET_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "machineID": machine,
            "operatingSystem": config.os,
            "osImage": "Ubuntu 22.04.4 LTS",
            "systemUUID": str(uuid.UUID(machine)),
        },
    }


class StatusReporting:
    """The node runtime's state, and what the kubelet adapter reads back from it."""

    # Set by NodeRuntime.__init__; declared here for the parts of the runtime that use them.
    config: NodeConfig
    registries: RegistrySet
    store: ImageStore
    pods: dict[str, Pod]
    queue: list[PullJob]
    active: list[PullJob]
    events: list[Event]
    deletions: list[tuple[str, str, str]]  # (namespace, name, uid)
    now: float
    booted_at: float
    node_dirty: bool
    boot_id: str
    _last_pressure_check: float
    _disk_pressure: bool
    _transitions: dict[str, tuple[bool, float]]

    @staticmethod
    def _container(pod: Pod, name: str) -> Container:
        for container in pod.all_containers():
            if container.name == name:
                return container
        raise KeyError(name)

    # -- output ------------------------------------------------------------------------
    def _event(self, pod: Pod, reason: str, message: str, at: float, type_: str = "Normal") -> None:
        """Record an event about the pod, unless the recorder's spam filter drops it."""
        elapsed = max(0.0, at - pod.event_tokens_at)
        pod.event_tokens_at = max(at, pod.event_tokens_at)
        tokens = min(EVENT_BURST, pod.event_tokens + elapsed / EVENT_REFILL_SECONDS)
        if tokens < 1.0:
            pod.event_tokens = tokens
            return
        pod.event_tokens = tokens - 1.0
        self.events.append(
            Event(pod.namespace, pod.name, pod.uid, "Pod", reason, message, type_, at)
        )

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def take_deletions(self) -> list[tuple[str, str, str]]:
        out, self.deletions = self.deletions, []
        return out

    def dirty_pods(self) -> list[Pod]:
        """Pods whose status changed since the last `mark_clean`."""
        return [p for p in self.pods.values() if p.dirty and not p.deleted]

    def _condition(
        self, pod: Pod, kind: str, ok: bool, reason: str = "", message: str = ""
    ) -> JSON:
        value = "True" if ok else "False"
        previous = pod.transitions.get(kind)
        if previous is None or previous[0] != value:
            pod.transitions[kind] = (value, self.now)
        out: JSON = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(pod.transitions[kind][1]),
        }
        if reason:
            out["reason"] = reason
        if message:
            out["message"] = message
        return out

    def pod_status(self, pod: Pod) -> JSON:
        """The pod's `status` as the kubelet would write it."""
        pod.dirty = False
        if pod.rejected:
            return {
                "phase": "Failed",
                "reason": pod.reason,
                "message": pod.message,
                "qosClass": pod.qos,
            }
        for container in pod.all_containers():
            if container.reason == "ErrImagePull":
                container.error_published = True
        init_done = all(
            c.state == "terminated" and c.exit_code_seen == 0 for c in pod.init_containers
        )
        not_ready = [c.name for c in pod.containers if not c.ready]
        incomplete = [
            c.name
            for c in pod.init_containers
            if not (c.state == "terminated" and c.exit_code_seen == 0)
        ]
        completed = pod.terminal and pod.reason != "DeadlineExceeded"
        conditions = [
            self._condition(pod, "PodReadyToStartContainers", not pod.terminal),
            self._condition(
                pod,
                "Initialized",
                init_done,
                "PodCompleted"
                if completed and pod.init_containers
                else ""
                if init_done
                else "ContainersNotInitialized",
                "" if init_done else f"containers with incomplete status: [{' '.join(incomplete)}]",
            ),
            self._condition(
                pod,
                "Ready",
                not not_ready and not pod.terminal,
                "PodCompleted" if completed else "" if not not_ready else "ContainersNotReady",
                ""
                if not not_ready or completed
                else f"containers with unready status: [{' '.join(not_ready)}]",
            ),
            self._condition(
                pod,
                "ContainersReady",
                not not_ready and not pod.terminal,
                "PodCompleted" if completed else "" if not not_ready else "ContainersNotReady",
                ""
                if not not_ready or completed
                else f"containers with unready status: [{' '.join(not_ready)}]",
            ),
            self._condition(pod, "PodScheduled", True),
        ]
        host_ip = node_ip(self.config.name)
        status: JSON = {
            "phase": pod.phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "startTime": rfc3339(pod.seen_at),
            "qosClass": pod.qos,
            "containerStatuses": [c.status() for c in pod.containers],
        }
        if pod.init_containers:
            status["initContainerStatuses"] = [c.status() for c in pod.init_containers]
        status["reason"] = pod.reason or None
        status["message"] = pod.message or None
        return status

    def image_wait(self, pod: Pod) -> float | None:
        """Seconds the pod waited for its images (init images in turn, the rest in parallel)."""
        return pod.image_wait_done

    # -- node ------------------------------------------------------------------------
    def capacity(self) -> JSON:
        return node_capacity(self.config)

    def allocatable(self) -> JSON:
        return node_allocatable(self.config)

    def node_status(self, now: float, heartbeat: float) -> JSON:
        """The node's `status`: capacity, conditions, addresses, node info, images."""
        self.node_dirty = False
        config = self.config
        since = rfc3339(self.booted_at)

        def cond(
            kind: str, status: str, reason: str, message: str, changed: float | None = None
        ) -> JSON:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": rfc3339(heartbeat),
                "lastTransitionTime": rfc3339(changed) if changed is not None else since,
            }

        pressure = self.store.disk_pressure()
        conditions = [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "True" if pressure else "False",
                "KubeletHasDiskPressure" if pressure else "KubeletHasNoDiskPressure",
                "kubelet has disk pressure" if pressure else "kubelet has no disk pressure",
                self._transition("DiskPressure", pressure, now),
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                self._transition("Ready", True, now),
            ),
        ]
        return {
            "capacity": self.capacity(),
            "allocatable": self.allocatable(),
            "conditions": conditions,
            **node_identity(config, self.boot_id),
            "images": self.store.node_status_images(),
        }

    def _transition(self, kind: str, value: bool, now: float) -> float:
        """When the node condition `kind` last changed to `value`."""
        old = self._transitions.get(kind)
        if old is None or old[0] != value:
            self._transitions[kind] = (value, self.booted_at if old is None else now)
        return self._transitions[kind][1]
