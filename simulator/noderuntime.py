"""What one simulated kubelet does with its pods, as a pure state machine over simulated time.

`NodeRuntime.sync_pod` feeds it the Pod objects bound to the node, `advance(now)` moves pulls,
containers and image GC forward, and the kubelet adapter writes back what changed: pod
statuses, image-wait annotations, events, deletions, the node status. The states, reasons and
messages are the ones the real kubelet (with containerd) reports, because image-sync reads
them: a failed prefetch is reported with the reason the kubelet gave.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesync.config import parse_duration
from imagesync.reference import InvalidReference, parse_reference
from simulator.clock import rfc3339
from simulator.imagestore import ImageStore, StoredImage
from simulator.nodes import GPU_RESOURCE, NodeConfig, node_ip, pod_ip
from simulator.registry import (
    PullError,
    PullErrorKind,
    RegistrySet,
    Resolved,
    catalog_image,
)
from simulator.scheduling import node_affinity_matches, parse_quantity, pod_requests, tolerates

JSON = dict[str, Any]

RUN_SECONDS = "sim.image-sync.io/run-seconds"
INIT_RUN_SECONDS = "sim.image-sync.io/init-run-seconds"
EXIT_CODE = "sim.image-sync.io/exit-code"
IMAGE_WAIT = "sim.image-sync.io/image-wait-seconds"

DEFAULT_JOB_SECONDS = 30.0
DEFAULT_INIT_SECONDS = 1.0
CONTAINER_START_SECONDS = 1.0
ERR_IMAGE_PULL_SECONDS = 2.0
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
NEVER_PULL_RECHECK = 10.0
DISK_PRESSURE_CHECK = 10.0
# client-go's event recorder lets a source send 25 events about one object, then one more every
# 5 minutes (EventSourceObjectSpamFilter): a pod of many containers does not flood the server.
EVENT_BURST = 25
EVENT_REFILL_SECONDS = 300.0
KUBELET_VERSION = "v1.32.3"
RUNTIME_VERSION = "containerd://1.7.22"

_SLEEP_RE = re.compile(r"^(?:\d+(?:\.\d+)?[smhd]?)+$")


@dataclass(slots=True)
class Event:
    """A core/v1 Event to record (the kubelet's Pulling, Pulled, Failed, BackOff, ...)."""

    namespace: str
    name: str
    uid: str
    kind: str
    reason: str
    message: str
    type: str = "Normal"
    at: float = 0.0


@dataclass(slots=True)
class Container:
    """One container of a pod as the runtime sees it."""

    name: str
    image: str
    init: bool
    pull_policy: str
    reference: str | None  # normalized, None when the name does not parse
    run_seconds: float | None
    exit_code: int
    state: str = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    image_id: str = ""
    container_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    last_exit: JSON | None = None
    restart_count: int = 0
    exit_code_seen: int = 0
    start_at: float | None = None  # image ready; running from this time
    restart_at: float | None = None
    crash_backoff: float = 0.0
    pull_wanted_at: float | None = None  # first asked for the image (kept across failed pulls)
    pull_requested_at: float | None = None  # this pull asked for (its "including waiting")
    pull_pending: bool = False
    backoff: float = 0.0
    backoff_until: float = 0.0
    failed_at: float | None = None
    last_error: str = ""
    image_wait: float = 0.0
    image_ready: bool = False
    never_checked_at: float = -1e18
    removed: bool = False  # exited and removed by container GC
    error_published: bool = False

    @property
    def ready(self) -> bool:
        return self.state == "running"

    def status(self) -> JSON:
        state: JSON
        if self.state == "running":
            state = {"running": {"startedAt": rfc3339(self.started_at or 0.0)}}
        elif self.state == "terminated":
            state = {"terminated": self._terminated()}
        else:
            waiting: JSON = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        started = self.state == "running"
        status: JSON = {
            "name": self.name,
            "state": state,
            "lastState": {"terminated": self.last_exit} if self.last_exit else {},
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.reference if self.image_id and self.reference else self.image,
            "imageID": self.image_id if self.container_id else "",
            "started": started,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    def _terminated(self) -> JSON:
        out: JSON = {
            "exitCode": self.exit_code_seen,
            "reason": "Completed" if self.exit_code_seen == 0 else "Error",
            "startedAt": rfc3339(self.started_at or 0.0),
            "finishedAt": rfc3339(self.finished_at or 0.0),
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def _run_seconds(
    annotations: Mapping[str, str], container: Mapping[str, Any], restart_policy: str
) -> float | None:
    """How long a container runs (None: until deleted).

    The annotation decides; else a sleeper command (`sleep N`, `sleep infinity`, or any
    program named like `*sleep*` or `pause`, e.g. image-sync's keeper) runs N seconds or
    forever; else `restartPolicy: Always` containers run forever and job-like ones 30 s.
    """
    value = annotations.get(RUN_SECONDS)
    if value not in (None, ""):
        text = str(value).strip().lower()
        if text in ("forever", "infinity", "-1"):
            return None
        return max(0.0, float(text))
    argv = (container.get("command") or []) + (container.get("args") or [])
    words = " ".join(str(w) for w in argv).replace(";", " ").split()  # also `sh -c "sleep 5"`
    for i, word in enumerate(words):
        program = word.rsplit("/", 1)[-1]
        if "sleep" in program or program == "pause":
            arg = words[i + 1] if i + 1 < len(words) else ""
            return parse_duration(arg) if _SLEEP_RE.match(arg) else None
    if restart_policy == "Always":
        return None
    return DEFAULT_JOB_SECONDS


def _default_policy(image: str, reference: str | None) -> str:
    if reference is None:
        return "IfNotPresent"
    try:
        return "Always" if parse_reference(image).implicit_latest else "IfNotPresent"
    except InvalidReference:
        return "IfNotPresent"


def _normalized(image: str) -> str | None:
    try:
        return parse_reference(image).normalized()
    except InvalidReference:
        return None


@dataclass(slots=True)
class Pod:
    """A pod bound to the node and everything the kubelet tracks about it."""

    uid: str
    namespace: str
    name: str
    restart_policy: str
    init_containers: list[Container]
    containers: list[Container]
    seen_at: float
    ip: str
    qos: str
    deadline: float | None
    priority: int = 0
    pull_secrets: tuple[str, ...] = ()
    requests: dict[str, float] = field(default_factory=dict)
    rejected: bool = False
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    deleting: bool = False
    deleted: bool = False
    dirty: bool = True
    image_wait_done: float | None = None
    image_wait_reported: bool = False
    # Regular containers' images come one after another: their wait is the span from the
    # first pull asked for to the last image ready.
    regular_wait_from: float | None = None
    regular_wait_until: float | None = None
    stepped: bool = False
    steady: bool = False
    event_tokens: float = EVENT_BURST
    event_tokens_at: float = 0.0
    transitions: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers


def _qos_class(spec: Mapping[str, Any]) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            any_set = True
        for r in ("cpu", "memory"):
            limit = limits.get(r)
            request = requests.get(r, limit)
            if limit is None or parse_quantity(request) != parse_quantity(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


@dataclass(slots=True)
class PullJob:
    """One image pull, shared by every container waiting for the same reference."""

    reference: str
    always: bool
    queued_at: float
    secrets: tuple[str, ...] = ()
    waiters: list[tuple[str, str]] = field(default_factory=list)  # (pod uid, container name)
    resolved: Resolved | None = None
    started_at: float | None = None
    total: int = 0
    done: float = 0.0
    host: str = ""
    cached: bool = False
    local_until: float = 0.0


class NodeRuntime:
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
            resolved = Resolved(_normalized(reference) or reference, image, platform)
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
            reference = _normalized(image)
            if init:
                value = ann.get(INIT_RUN_SECONDS)
                run: float | None = (
                    float(value) if value not in (None, "") else DEFAULT_INIT_SECONDS
                )
            else:
                run = _run_seconds(ann, c, restart)
            return Container(
                name=str(c.get("name") or ""),
                image=image,
                init=init,
                pull_policy=str(c.get("imagePullPolicy") or _default_policy(image, reference)),
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
            qos=str(status.get("qosClass") or _qos_class(spec)),
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

    # -- pulls -----------------------------------------------------------------------
    def _request_pull(self, pod: Pod, container: Container, now: float) -> None:
        assert container.reference is not None
        container.pull_pending = True
        container.pull_requested_at = now
        if container.pull_wanted_at is None:
            container.pull_wanted_at = now
        if not container.init and pod.regular_wait_from is None:
            pod.regular_wait_from = now
        for job in self.queue + self.active:
            if (
                job.reference == container.reference
                and job.secrets == pod.pull_secrets
                and (job.always or container.pull_policy != "Always")
            ):
                job.waiters.append((pod.uid, container.name))
                return
        job = PullJob(
            reference=container.reference,
            always=container.pull_policy == "Always",
            queued_at=now,
            secrets=pod.pull_secrets,
            waiters=[(pod.uid, container.name)],
        )
        # Like a priority pull queue: higher-priority pods first, otherwise in arrival order.
        index = len(self.queue)
        while index > 0 and self._job_priority(self.queue[index - 1]) < pod.priority:
            index -= 1
        self.queue.insert(index, job)

    def _job_priority(self, job: PullJob) -> int:
        return max((self.pods[u].priority for u, _ in job.waiters if u in self.pods), default=0)

    def _max_parallel(self) -> int:
        return 1 if self.config.serialize_image_pulls else 1_000_000

    def _run_pulls(self, now: float) -> None:
        cursor = self.now
        while True:
            for job in list(self.active):
                if not job.cached and self.registries.is_down(job.host, cursor):
                    # The connection drops when the registry goes away mid-download.
                    self._fail_pull(job, self.registries.unavailable_error(job.reference), cursor)
            while self.queue and len(self.active) < self._max_parallel():
                job = self.queue.pop(0)
                if not job.waiters:
                    continue
                self._start_pull(job, cursor)
            if not self.active:
                return
            # Find the next pull to finish within (cursor, now].
            finish_at, first = None, None
            for job in self.active:
                t = self._finish_time(job, cursor)
                if t is not None and (finish_at is None or t < finish_at):
                    finish_at, first = t, job
            if finish_at is None or first is None or finish_at > now:
                for job in list(self.active):
                    self._progress(job, cursor, now)
                    if not job.cached and self.registries.is_down(job.host, now):
                        self._fail_pull(job, self.registries.unavailable_error(job.reference), now)
                return
            for job in self.active:
                self._progress(job, cursor, finish_at)
            cursor = finish_at
            self._complete_pull(first, cursor)

    def _rate(self, job: PullJob) -> float:
        return max(1.0, min(self.config.bandwidth, self.registries.share(job.host)))

    def _finish_time(self, job: PullJob, cursor: float) -> float | None:
        if job.cached:
            return max(cursor, job.local_until)
        remaining = job.total - job.done
        return cursor + max(0.0, remaining) / self._rate(job)

    def _progress(self, job: PullJob, start: float, end: float) -> None:
        if job.cached or end <= start:
            return
        if self.registries.is_down(job.host, end):
            return  # stalls; failed at the next check
        job.done = min(job.total, job.done + (end - start) * self._rate(job))

    def _start_pull(self, job: PullJob, now: float) -> None:
        job.started_at = now
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is not None:
                self._event(
                    pod, "Pulling", f'Pulling image "{self._container(pod, name).image}"', now
                )
        resolved = self.registries.resolve(
            job.reference, self.config.arch, now, self.config.os, secrets=job.secrets
        )
        if isinstance(resolved, PullError):
            self._fail_pull(job, resolved, now)
            return
        job.resolved = resolved
        job.host = parse_reference(resolved.reference).domain
        registry = self.registries.registries.get(job.host)
        latency = registry.latency if registry else 0.3
        stored = self.store.find(resolved.image_id)
        if stored is not None:
            job.cached = True  # Always: manifest checked, layers already here
            job.local_until = now + latency
            self.active.append(job)
            return
        size = resolved.platform.disk_size
        if not self.store.fits(size):
            self._collect(now, need_bytes=size)
        if not self.store.fits(size):
            self._fail_pull(
                job,
                PullError(
                    PullErrorKind.NO_SPACE,
                    f'rpc error: code = Unknown desc = failed to pull and unpack image "{resolved.reference}": '
                    f"failed to extract layer {resolved.platform.digest}: write /var/lib/containerd/"
                    "io.containerd.snapshotter.v1.overlayfs/snapshots: no space left on device",
                ),
                now,
            )
            return
        job.total = resolved.platform.compressed_size
        job.done = -latency * self._rate(job)  # the manifest round trip before the first byte
        self.registries.begin_transfer(job.host)
        self.active.append(job)

    def _complete_pull(self, job: PullJob, now: float) -> None:
        self.active.remove(job)
        if not job.cached:
            self.registries.end_transfer(job.host)
        assert job.resolved is not None
        if not job.cached and self.registries.is_down(job.host, now):
            self._fail_pull(
                job, self.registries.unavailable_error(job.reference), now, queued=False
            )
            return
        if not job.cached and not self.store.fits(job.resolved.platform.disk_size):
            self._collect(now, need_bytes=job.resolved.platform.disk_size)
        stored = self.store.add(job.resolved, now)
        self._record_credentials(stored, job)
        self.node_dirty = True
        started = job.started_at if job.started_at is not None else now
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is None:
                continue
            container = self._container(pod, name)
            asked = container.pull_requested_at
            waited = now - (asked if asked is not None else started)
            self._event(
                pod,
                "Pulled",
                f'Successfully pulled image "{container.image}" in {now - started:.3f}s '
                f"({waited:.3f}s including waiting). Image size: {job.total or stored.size} bytes.",
                now,
            )
            self._image_ready(pod, container, stored.image_id, now)
        self._resume(job, now)

    def _record_credentials(self, stored: StoredImage, job: PullJob) -> None:
        """What the kubelet records of a successful pull (KEP-2535): an image that needed no
        credentials is every pod's; else the waiters' pull secrets, by namespace and name."""
        if not self.registries.needs_credentials(job.reference):
            stored.node_accessible = True
            return
        for uid, _ in job.waiters:
            pod = self.pods.get(uid)
            if pod is not None:
                stored.pulled_with.update((pod.namespace, s) for s in pod.pull_secrets)

    def credentials_verified(self, pod: Pod, stored: StoredImage) -> bool:
        """May `pod` use the present `stored` image without pulling? Always, unless the
        KubeletEnsureSecretPulledImages gate is on: then only an image every pod may use, or
        one pulled with a pull secret (same namespace and name) the pod names too."""
        if not self.config.ensure_secret_pulled_images or stored.node_accessible:
            return True
        return bool({(pod.namespace, s) for s in pod.pull_secrets} & stored.pulled_with)

    def _resume(self, job: PullJob, now: float) -> None:
        """The waiters' EnsureImageExists returned: their pods' syncs go on at once (the next
        container's pull is asked for now, not at the next tick)."""
        for uid in dict.fromkeys(uid for uid, _ in job.waiters):
            pod = self.pods.get(uid)
            if pod is not None:
                self._step_pod(pod, now)

    def _fail_pull(self, job: PullJob, error: PullError, now: float, queued: bool = True) -> None:
        if job in self.active:
            self.active.remove(job)
            if queued and not job.cached and job.resolved is not None:
                self.registries.end_transfer(job.host)
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is None:
                continue
            container = self._container(pod, name)
            container.pull_pending = False
            container.failed_at = now
            container.last_error = error.message
            container.backoff = (
                BACKOFF_INITIAL
                if not container.backoff
                else min(BACKOFF_MAX, container.backoff * 2)
            )
            container.backoff_until = now + container.backoff
            container.reason = "ErrImagePull"
            container.message = error.message
            container.error_published = False
            pod.dirty = True
            self._event(
                pod,
                "Failed",
                f'Failed to pull image "{container.image}": {error.message}',
                now,
                "Warning",
            )
            self._event(pod, "Failed", "Error: ErrImagePull", now, "Warning")
        self._resume(job, now)

    def _image_ready(self, pod: Pod, container: Container, image_id: str, now: float) -> None:
        container.pull_pending = False
        container.image_ready = True
        container.image_id = image_id
        container.backoff = 0.0
        container.last_error = ""
        if container.pull_wanted_at is not None:
            container.image_wait += now - container.pull_wanted_at
            if not container.init:
                until = pod.regular_wait_until
                pod.regular_wait_until = now if until is None else max(until, now)
        container.pull_wanted_at = None
        container.pull_requested_at = None
        container.start_at = now + CONTAINER_START_SECONDS
        pod.dirty = True

    def pulls_in_flight(self) -> list[str]:
        return [job.reference for job in self.active]

    # -- containers --------------------------------------------------------------------
    @staticmethod
    def _container(pod: Pod, name: str) -> Container:
        for container in pod.all_containers():
            if container.name == name:
                return container
        raise KeyError(name)

    def _ensure_image(self, pod: Pod, container: Container, now: float) -> None:
        """EnsureImageExists: decide, per pull policy, whether the container can be created."""
        if container.image_ready or container.pull_pending:
            return
        if (
            container.reason == "ErrImageNeverPull"
            and now - container.never_checked_at < NEVER_PULL_RECHECK
        ):
            return  # the pod's sync failed; the kubelet looks again after its back-off
        if container.reference is None:
            message = (
                f'Failed to apply default image tag "{container.image}": couldn\'t parse image name '
                f'"{container.image}": invalid reference format'
            )
            if container.reason != "InvalidImageName":
                self._event(pod, "InspectFailed", message, now, "Warning")
                self._event(pod, "Failed", "Error: InvalidImageName", now, "Warning")
            self._waiting(pod, container, "InvalidImageName", message)
            return
        stored = self.store.find(container.reference)
        policy = container.pull_policy
        verified = stored is not None and self.credentials_verified(pod, stored)
        if policy != "Always" and stored is not None and verified:
            if container.pull_wanted_at is None:
                self._event(
                    pod,
                    "Pulled",
                    f'Container image "{container.image}" already present on machine',
                    now,
                )
            self._image_ready(pod, container, stored.image_id, now)
            container.start_at = now + CONTAINER_START_SECONDS
            return
        if policy == "Never":
            if (
                now - container.never_checked_at >= NEVER_PULL_RECHECK
                or container.reason != "ErrImageNeverPull"
            ):
                message = (
                    f'Container image "{container.image}" is not present with pull policy of Never'
                    if stored is None
                    else f'Container image "{container.image}" was pulled with credentials the '
                    "pod does not have, and its pull policy is Never"
                )
                if container.reason != "ErrImageNeverPull":
                    self._event(pod, "ErrImageNeverPull", message, now, "Warning")
                    self._event(pod, "Failed", "Error: ErrImageNeverPull", now, "Warning")
                container.never_checked_at = now
                self._waiting(pod, container, "ErrImageNeverPull", message)
            return
        if container.failed_at is not None:
            shown = (
                container.error_published and now >= container.failed_at + ERR_IMAGE_PULL_SECONDS
            )
            if container.reason == "ErrImagePull" and not shown and now < container.backoff_until:
                return  # ErrImagePull is shown (written at least once) before the back-off
            if now < container.backoff_until:
                message = f'Back-off pulling image "{container.image}": ErrImagePull: {container.last_error}'
                if container.reason != "ImagePullBackOff":
                    self._event(pod, "BackOff", f'Back-off pulling image "{container.image}"', now)
                self._waiting(pod, container, "ImagePullBackOff", message)
                return
        self._request_pull(pod, container, now)

    def _waiting(self, pod: Pod, container: Container, reason: str, message: str = "") -> None:
        if (
            container.state != "waiting"
            or container.reason != reason
            or container.message != message
        ):
            container.state = "waiting"
            container.reason = reason
            container.message = message
            pod.dirty = True

    def _start(self, pod: Pod, container: Container, at: float) -> None:
        container.state = "running"
        container.reason = ""
        container.message = ""
        container.started_at = at
        container.finished_at = None
        container.restart_at = None
        container.container_id = (
            "containerd://"
            + hashlib.sha256(
                f"{pod.uid}/{container.name}/{container.restart_count}".encode()
            ).hexdigest()
        )
        self._event(pod, "Created", f"Created container {container.name}", at)
        self._event(pod, "Started", f"Started container {container.name}", at)
        pod.dirty = True

    def _terminate(self, pod: Pod, container: Container, at: float, exit_code: int) -> None:
        container.state = "terminated"
        container.finished_at = at
        container.exit_code_seen = exit_code
        container.reason = "Completed" if exit_code == 0 else "Error"
        pod.dirty = True

    def _step_container_run(
        self, pod: Pod, container: Container, now: float, blocked: bool = False
    ) -> None:
        """Created → running → exited, including restarts by restartPolicy.

        `blocked`: the pod's sync is waiting for an image pull, so a container due to
        restart is not restarted yet.
        """
        if container.state == "waiting" and container.image_ready and container.restart_at is None:
            start = container.start_at if container.start_at is not None else now
            if start <= now:
                self._start(pod, container, start)
        if container.state == "running" and container.run_seconds is not None:
            assert container.started_at is not None
            end = container.started_at + container.run_seconds
            if end <= now:
                self._terminate(pod, container, end, container.exit_code)
        if container.state == "terminated" and not container.init and not pod.deleting:
            failed = container.exit_code_seen != 0
            restart = pod.restart_policy == "Always" or (
                pod.restart_policy == "OnFailure" and failed
            )
            if not restart:
                return
            assert container.finished_at is not None
            container.last_exit = container._terminated()
            container.crash_backoff = (
                0.0
                if container.restart_count == 0
                else min(BACKOFF_MAX, max(BACKOFF_INITIAL, container.crash_backoff * 2))
            )
            container.restart_at = container.finished_at + container.crash_backoff
            container.restart_count += 1
            container.state = "waiting"
            container.reason = "CrashLoopBackOff"
            container.message = (
                f"back-off {int(container.crash_backoff)}s restarting failed container={container.name} "
                f"pod={pod.name}_{pod.namespace}({pod.uid})"
            )
            pod.dirty = True
        if (
            not blocked
            and container.state == "waiting"
            and container.restart_at is not None
            and container.restart_at <= now
        ):
            restart_at = container.restart_at
            container.restart_at = None
            container.image_ready = False  # re-checked per pull policy, like a real restart
            container.start_at = None
            self._ensure_image(pod, container, restart_at)  # started on the next step

    def _step_pod(self, pod: Pod, now: float) -> None:
        pod.stepped = True
        if pod.deleted or pod.terminal or pod.deleting or pod.steady:
            return
        if pod.deadline is not None and now - pod.seen_at >= pod.deadline:
            self._kill(pod, "deadline", now)
            pod.phase = "Failed"
            pod.reason = "DeadlineExceeded"
            pod.message = "Pod was active on the node longer than the specified deadline"
            self._event(pod, "DeadlineExceeded", pod.message, now, "Normal")
            pod.dirty = True
            return
        # Init containers, one after the other.
        for container in pod.init_containers:
            if container.state == "terminated" and container.exit_code_seen == 0:
                continue
            if container.state == "terminated":
                if pod.restart_policy == "Never":
                    self._finish(pod, "Failed")
                    return
                container.state = "waiting"
                container.image_ready = False
            self._ensure_image(pod, container, now)
            self._step_container_run(pod, container, now)
            if not (container.state == "terminated" and container.exit_code_seen == 0):
                self._refresh_phase(pod, now)
                return
        # The kubelet's SyncPod starts the containers one after another, and each start
        # waits in EnsureImageExists until its image is pulled or the pull failed: at most
        # one pull of the pod is queued or in flight, and nothing else of the pod starts
        # meanwhile. A failed pull does not stop the loop (its back-off is for later syncs).
        blocked = any(c.pull_pending for c in pod.containers)
        for container in pod.containers:
            if not blocked and container.state == "waiting" and container.restart_at is None:
                self._ensure_image(pod, container, now)
                blocked = container.pull_pending
            self._step_container_run(pod, container, now, blocked)
        if pod.image_wait_done is None and all(
            c.image_ready or c.state != "waiting" for c in pod.all_containers()
        ):
            regular = (
                pod.regular_wait_until - pod.regular_wait_from
                if pod.regular_wait_from is not None and pod.regular_wait_until is not None
                else 0.0
            )
            pod.image_wait_done = sum(c.image_wait for c in pod.init_containers) + regular
        self._refresh_phase(pod, now)
        # Nothing changes for a pod whose containers all run until deleted: skip it from now on.
        pod.steady = (
            pod.deadline is None
            and bool(pod.containers)
            and all(c.state == "running" and c.run_seconds is None for c in pod.containers)
        )

    def _kill(self, pod: Pod, why: str, at: float) -> None:
        for job in self.queue + self.active:
            job.waiters = [w for w in job.waiters if w[0] != pod.uid]
        for container in pod.all_containers():
            if container.state == "running":
                self._event(pod, "Killing", f"Stopping container {container.name}", at)
                self._terminate(pod, container, at, 137)
            elif container.state == "waiting":
                container.restart_at = None
        if why == "deleted":
            self.deletions.append((pod.namespace, pod.name, pod.uid))
            pod.deleted = True
        pod.dirty = True

    def _finish(self, pod: Pod, phase: str) -> None:
        pod.phase = phase
        pod.dirty = True

    def _refresh_phase(self, pod: Pod, now: float) -> None:
        del now
        if any(
            not (c.state == "terminated" and c.exit_code_seen == 0) for c in pod.init_containers
        ):
            phase = "Pending"
        else:
            running = waiting = stopped = succeeded = failed = 0
            for c in pod.containers:
                if c.state == "running":
                    running += 1
                elif c.state == "terminated":
                    stopped += 1
                    if c.exit_code_seen == 0:
                        succeeded += 1
                    else:
                        failed += 1
                elif c.last_exit is not None:
                    stopped += 1
                else:
                    waiting += 1
            if waiting > 0:
                phase = "Pending"
            elif running > 0:
                phase = "Running"
            elif stopped > 0:
                if pod.restart_policy == "Always":
                    phase = "Running"
                elif pod.restart_policy == "OnFailure":
                    phase = (
                        "Succeeded"
                        if stopped == succeeded
                        and all(c.state == "terminated" for c in pod.containers)
                        else "Running"
                    )
                else:
                    phase = "Failed" if failed else "Succeeded"
            else:
                phase = "Pending"
        if phase != pod.phase:
            pod.phase = phase
            pod.dirty = True

    # -- image GC ----------------------------------------------------------------------
    def images_in_use(self) -> tuple[set[str], set[str]]:
        """Image ids of running containers, and of exited containers not yet removed."""
        running: set[str] = set()
        exited: set[str] = set()
        for pod in self.pods.values():
            for c in pod.all_containers():
                if not c.image_id:
                    continue
                if c.state == "running" or (c.image_ready and c.state == "waiting"):
                    running.add(c.image_id)
                elif (c.state == "terminated" or c.last_exit) and not c.removed:
                    exited.add(c.image_id)
        for job in self.active:
            if job.resolved is not None:
                running.add(job.resolved.image_id)
        return running, exited - running

    def _collect(self, now: float, need_bytes: int = 0) -> None:
        running, exited = self.images_in_use()
        report = self.store.collect(now, running, exited, need_bytes=need_bytes)
        if report.exited_containers_removed:
            for pod in self.pods.values():
                for c in pod.all_containers():
                    if c.state == "terminated" or c.last_exit:
                        c.removed = True
        if report.removed:
            self.node_dirty = True
        if report.shortfall:
            self.events.append(
                Event(
                    "default",
                    self.config.name,
                    self.config.name,
                    "Node",
                    "FreeDiskSpaceFailed",
                    report.message,
                    "Warning",
                    now,
                )
            )

    def _image_gc(self, now: float) -> None:
        pressure = self.store.disk_pressure()
        if pressure != self._disk_pressure:
            self._disk_pressure = pressure
            self.node_dirty = True
        if self.store.gc_due(now) or (
            pressure and now - self._last_pressure_check >= DISK_PRESSURE_CHECK
        ):
            self._last_pressure_check = now
            self._collect(now)
            pressure = self.store.disk_pressure()
            if pressure != self._disk_pressure:
                self._disk_pressure = pressure
                self.node_dirty = True

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
        config = self.config
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

    def allocatable(self) -> JSON:
        out = self.capacity()
        memory = parse_quantity(self.config.memory) - 100 * 1024**2
        out["memory"] = f"{max(0, int(memory) // 1024)}Ki"
        out["ephemeral-storage"] = str(int(self.config.disk * 0.9))
        return out

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
        machine = hashlib.md5(config.name.encode()).hexdigest()
        return {
            "capacity": self.capacity(),
            "allocatable": self.allocatable(),
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": node_ip(config.name)},
                {"type": "Hostname", "address": config.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": config.arch,
                "bootID": self.boot_id,
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kernelVersion": "5.15.0-119-generic",
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": machine,
                "operatingSystem": config.os,
                "osImage": "Ubuntu 22.04.4 LTS",
                "systemUUID": str(uuid.UUID(machine)),
            },
            "images": self.store.node_status_images(),
        }

    def _transition(self, kind: str, value: bool, now: float) -> float:
        """When the node condition `kind` last changed to `value`."""
        old = self._transitions.get(kind)
        if old is None or old[0] != value:
            self._transitions[kind] = (value, self.booted_at if old is None else now)
        return self._transitions[kind][1]
