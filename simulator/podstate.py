"""The records a simulated kubelet keeps (pods, containers, pulls, events) and what fills them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesync.quantities import parse_duration
from imagesync.reference import InvalidReference, parse_reference
from simulator.clock import rfc3339
from simulator.registry import Resolved
from simulator.scheduling import parse_quantity

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


def container_run_seconds(
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


def default_pull_policy(image: str, reference: str | None) -> str:
    if reference is None:
        return "IfNotPresent"
    try:
        return "Always" if parse_reference(image).implicit_latest else "IfNotPresent"
    except InvalidReference:
        return "IfNotPresent"


def normalized_reference(image: str) -> str | None:
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


def qos_class(spec: Mapping[str, Any]) -> str:
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
    bytes_from: float = 0.0  # the manifest's round trip ends: the first byte can flow
    transferring: bool = False  # counted among the registry's transfers (bytes flowing)
