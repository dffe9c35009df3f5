"""What one simulated kubelet does with its pods, as a pure state machine over simulated time.

`NodeRuntime.sync_pod` feeds it the Pod objects bound to the node, `advance(now)` moves pulls,
containers and image GC forward, and the kubelet adapter writes back what changed: pod
statuses, image-wait annotations, events, deletions, the node status. The states, reasons and
messages are the ones the real kubelet (with containerd) reports, because image-sync reads
them: a failed prefetch is reported with the reason the kubelet gave.

The records live in `podstate`; the class is assembled from `nodestatus` (reporting),
`imagepulls` (pulls, credentials, image GC) and `containerlifecycle` (container states).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from simulator.containerlifecycle import ContainerLifecycle
from simulator.imagestore import ImageStore
from simulator.nodes import NodeConfig, pod_ip
from simulator.podstate import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONTAINER_START_SECONDS,
    DEFAULT_INIT_SECONDS,
    DEFAULT_JOB_SECONDS,
    DISK_PRESSURE_CHECK,
    ERR_IMAGE_PULL_SECONDS,
    EVENT_BURST,
    EVENT_REFILL_SECONDS,
    EXIT_CODE,
    IMAGE_WAIT,
    INIT_RUN_SECONDS,
    JSON,
    KUBELET_VERSION,
    NEVER_PULL_RECHECK,
    RUN_SECONDS,
    RUNTIME_VERSION,
    Container,
    Event,
    Pod,
    PullJob,
    container_run_seconds,
    default_pull_policy,
    normalized_reference,
    qos_class,
)
from simulator.registry import PullError, RegistrySet, Resolved, catalog_image
from simulator.scheduling import node_affinity_matches, parse_quantity, pod_requests, tolerates

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "CONTAINER_START_SECONDS",
    "DEFAULT_INIT_SECONDS",
    "DEFAULT_JOB_SECONDS",
    "DISK_PRESSURE_CHECK",
    "ERR_IMAGE_PULL_SECONDS",
    "EVENT_BURST",
    "EVENT_REFILL_SECONDS",
    "EXIT_CODE",
    "IMAGE_WAIT",
    "INIT_RUN_SECONDS",
    "KUBELET_VERSION",
    "NEVER_PULL_RECHECK",
    "RUNTIME_VERSION",
    "RUN_SECONDS",
    "Container",
    "Event",
    "NodeRuntime",
    "Pod",
    "PullJob",
]


class NodeRuntime(ContainerLifecycle):
    """The pods, image store and pull queue of one simulated node."""

    def __init__(self, config: NodeConfig, registries: RegistrySet, now: float) -> None:
        self.config = config
        self.registries = registries
        self.store = ImageStore(config.disk, system_bytes=config.system_disk_used, policy=config.gc)
        self.pods: dict[str, Pod] = {}
        self.queue: list[PullJob] = []
        self.active: list[PullJob] = []
        self.events: list[Event] = []
        self.deletions: list[tuple[str, str, str]] = []  # (namespace, name, uid)
        self.now = now
        self.booted_at = now
        self.ready = True
        self.node_dirty = True
        self._ip_index = 0
        self._last_pressure_check = -1e18
        self._disk_pressure = False
        self._transitions: dict[str, tuple[bool, float]] = {}
        self.labels: dict[str, str] = config.all_labels()
        self.taints: tuple[Mapping[str, Any], ...] = tuple(config.taints)
        self.boot_id = str(uuid.UUID(hashlib.md5(f"{config.name}{now}".encode()).hexdigest()))
        for reference in config.preloaded_images:
            self._preload(reference)

    def _preload(self, reference: str) -> None:
        resolved = self.registries.resolve(reference, self.config.arch, self.now, self.config.os)
        if isinstance(resolved, PullError):
            # Images baked into the node image (e.g. the pause image) need no registry entry.
            image = catalog_image(
                reference, compressed="1Mi", disk="1Mi", archs=(self.config.arch,)
            )
            platform = image.platforms[0]
            resolved = Resolved(normalized_reference(reference) or reference, image, platform)
        self.store.add(resolved, self.now - self.config.gc.min_age).node_accessible = True

    # -- pods in ---------------------------------------------------------------------
    def sync_pod(self, pod: Mapping[str, Any], now: float | None = None) -> None:
        """Take in a Pod object bound to this node (new, updated, or being deleted).

        `now`: when the kubelet sees it (default: the time of the last `advance`). A pod seen
        after the last `advance` starts then, not earlier: its pulls are asked for from `now`.
        """
        at = self.now if now is None else max(self.now, now)
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
        known = self.pods.get(uid)
        if known is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and meta.get(
                "deletionTimestamp"
            ) is None:
                return  # finished before this kubelet started: nothing to run
            known = self._admit(uid, pod, at)
            self.pods[uid] = known
            rejection = self._admission_failure(pod, known)
            if rejection is not None:
                known.phase = "Failed"
                known.rejected = True
                known.reason, message = rejection
                known.message = f"Pod was rejected: {message}"
                self._event(known, known.reason, known.message, at, "Warning")
        if meta.get("deletionTimestamp") and not known.deleting:
            if at > self.now:
                self._step_pod(known, at)  # what its containers did until the kubelet saw it
            known.deleting = True
            self._kill(known, "deleted", at)

    def node_object(self) -> JSON:
        """The node as the scheduling predicates see it (labels and taints)."""
        return {
            "metadata": {"name": self.config.name, "labels": self.labels},
            "spec": {"taints": list(self.taints)},
        }

    def _admission_failure(self, pod: Mapping[str, Any], admitted: Pod) -> tuple[str, str] | None:
        """Why the kubelet's admission rejects the pod (reason, message), like its predicates."""
        node = self.node_object()
        if not node_affinity_matches(pod, node):
            return (
                "NodeAffinity",
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector",
            )
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        for taint in self.taints:
            if taint.get("effect") == "NoExecute" and not tolerates(tolerations, taint):
                return (
                    "TaintToleration",
                    "Predicate TaintToleration failed: node(s) had untolerated taint "
                    f"{{{taint.get('key', '')}: {taint.get('value', '')}}}",
                )
        capacity = {k: parse_quantity(v) for k, v in self.allocatable().items()}
        used: dict[str, float] = {}
        for other in self.pods.values():
            if other is admitted or other.terminal or other.deleted:
                continue
            for name, value in other.requests.items():
                used[name] = used.get(name, 0.0) + value
        for name, value in sorted(admitted.requests.items()):
            if value <= 0 or value <= capacity.get(name, 0.0) - used.get(name, 0.0) + 1e-9:
                continue
            scale = 1000 if name == "cpu" else 1
            return (
                f"OutOf{name}",
                f"Node didn't have enough resource: {name}, requested: {int(value * scale)}, "
                f"used: {int(used.get(name, 0.0) * scale)}, capacity: {int(capacity.get(name, 0.0) * scale)}",
            )
        return None

    def forget_pod(self, uid: str) -> None:
        """The pod is gone from the API: drop it (its containers go with it)."""
        pod = self.pods.pop(uid, None)
        if pod is None:
            return
        for job in self.queue + self.active:
            job.waiters = [w for w in job.waiters if w[0] != uid]
        self._cancel_abandoned_pulls()

    def known_uids(self) -> set[str]:
        return set(self.pods)

    def _admit(self, uid: str, pod: Mapping[str, Any], at: float) -> Pod:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ann = meta.get("annotations") or {}
        restart = spec.get("restartPolicy") or "Always"
        exit_code = int(ann.get(EXIT_CODE) or 0)

        def build(c: Mapping[str, Any], init: bool) -> Container:
            image = str(c.get("image") or "")
            reference = normalized_reference(image)
            if init:
                value = ann.get(INIT_RUN_SECONDS)
                run: float | None = (
                    float(value) if value not in (None, "") else DEFAULT_INIT_SECONDS
                )
            else:
                run = container_run_seconds(ann, c, restart)
            return Container(
                name=str(c.get("name") or ""),
                image=image,
                init=init,
                pull_policy=str(c.get("imagePullPolicy") or default_pull_policy(image, reference)),
                reference=reference,
                run_seconds=run,
                exit_code=0 if init else exit_code,
                reason="PodInitializing" if spec.get("initContainers") else "ContainerCreating",
            )

        self._ip_index += 1
        deadline = spec.get("activeDeadlineSeconds")
        status = pod.get("status") or {}
        return Pod(
            uid=uid,
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            restart_policy=restart,
            init_containers=[build(c, True) for c in spec.get("initContainers") or []],
            containers=[build(c, False) for c in spec.get("containers") or []],
            seen_at=at,
            ip=pod_ip(self.config.name, self._ip_index),
            qos=str(status.get("qosClass") or qos_class(spec)),
            deadline=float(deadline) if deadline is not None else None,
            priority=int(spec.get("priority") or 0),
            requests=pod_requests(pod),
            pull_secrets=tuple(
                sorted(str(s.get("name", "")) for s in spec.get("imagePullSecrets") or [])
            ),
        )

    # -- time ------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Move everything forward to `now` (simulated seconds)."""
        if now < self.now:
            now = self.now
        for pod in list(self.pods.values()):
            if not pod.stepped and pod.seen_at <= self.now:
                self._step_pod(pod, self.now)
        self._run_pulls(now)
        self.now = now
        for pod in list(self.pods.values()):
            self._step_pod(pod, now)
        self._image_gc(now)
