"""The two pods the prefetcher creates, built deterministically from (node, image set).

Puller (`isync-pull-<hash(node, images)>`): makes the kubelet pull up to `pullBatchSize`
images on one node with its own credentials. `nodeName` skips the scheduler; an init
container copies a tiny static sleeper from the tools image into an emptyDir, and one
container per image runs that image with the sleeper as its command (`--exit`), so images
with no shell and no `true` (distroless, scratch) work. The kubelet starts a pod's
containers one after another, each waiting for its image, so a puller still pulls one
image at a time, and a workload pod's pull on the node waits for at most the one in
flight. One pod for several images saves the API server most of the pod writes a
thousand-node fleet would otherwise make. `imagePullPolicy: IfNotPresent` makes a present
image a no-op. `activeDeadlineSeconds` grows with the images' size.

Keeper (`isync-keep-<hash(node, sorted images)>`): one long-lived pod per node with one
container per cached image, each running the sleeper, so the kubelet's image GC never
deletes those images (a running container's image is in use). It uses
`imagePullPolicy: Never`: a keeper never pulls; a container whose image vanished waits
with ErrImageNeverPull, which the planner reads as "not present". It carries the pullers'
`imagePullSecrets`: with KEP-2535 (`KubeletEnsureSecretPulledImages`, on by default from
Kubernetes 1.35) the kubelet starts a container from an image pulled with credentials only
for a pod that names the same pull secret. It runs in the lowest
PriorityClass, so under real disk or memory pressure it is the first pod to go.

Tolerations: exactly the node's taints that the images' placement allows there (every image
in a pod is eligible on its node, so its pods tolerate them), the startup taint, and the
NoExecute not-ready / unreachable taints for the same 5 minutes as any pod; never a
node-pressure taint (under memory, disk or pid pressure these pods are the first to go) and
never "everything": a pod bound to a node passes no scheduler, so a toleration is the only
say the node's taints have.

Both: in the pod namespace (`podNamespace`), under its ServiceAccount, which has no
permissions, and without its token; restricted security (non-root 65534, no privilege
escalation, all capabilities dropped, read-only root filesystem, RuntimeDefault seccomp),
tiny requests, ownerReference to the Node (garbage-collected with
it). Names from a hash make creation idempotent: a 409 on create means it is already there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from imagesync.config import Config
from imagesync.names import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_IMAGES,
    ANNOTATION_NODE,
    COMPONENT_KEEPER,
    COMPONENT_PULLER,
    KEEPER_NAME_PREFIX,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NODE,
    MANAGED_BY,
    POD_SERVICE_ACCOUNT,
    PULLER_NAME_PREFIX,
    SLEEPER_COPY,
    SLEEPER_DIR,
    SLEEPER_PATH,
    SLEEPER_VOLUME,
)
from imagesync.podguard import PRESSURE_TAINTS
from prefetcher.eligibility import BLOCKING_EFFECTS, HEALTH_TAINTS
from prefetcher.model import NodeInfo, PodManifest

RUN_AS: Final = 65534
# The sleeper is a static binary of 0.7 MB whose resident set stays under 1 MiB
# (docs/prefetcher.md, "Overhead"); these leave ample room while packing hundreds per node.
SLEEPER_RESOURCES: Final[dict[str, dict[str, str]]] = {
    "requests": {"cpu": "1m", "memory": "4Mi"},
    "limits": {"cpu": "20m", "memory": "16Mi"},
}
INSTALL_RESOURCES: Final[dict[str, dict[str, str]]] = {
    "requests": {"cpu": "1m", "memory": "4Mi"},
    "limits": {"cpu": "100m", "memory": "32Mi"},
}
# A node that stops answering: pods stay this long before the taint evicts them, as the
# API server's DefaultTolerationSeconds gives every pod.
SURVIVED_TAINTS: Final = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
DEFAULT_TOLERATION_SECONDS: Final = 300
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def puller_name(node: str, images: Iterable[str]) -> str:
    """`isync-pull-<12 hex>` from (node, sorted image set)."""
    return f"{PULLER_NAME_PREFIX}{_hash(node, *sorted(set(images)))}"


def keeper_name(node: str, images: Iterable[str]) -> str:
    """`isync-keep-<12 hex>` from (node, sorted image set)."""
    return f"{KEEPER_NAME_PREFIX}{_hash(node, *sorted(set(images)))}"


def keeper_container_name(image: str) -> str:
    """A stable container name for a cached image inside a keeper."""
    return f"keep-{_hash(image)}"


def puller_container_name(image: str) -> str:
    """A stable container name for an image inside a puller."""
    return f"pull-{_hash(image)}"


def node_label_value(node: str) -> str:
    """The node name if it is a valid label value, else `h-<hash>` (names may exceed 63)."""
    if len(node) <= 63 and _LABEL_VALUE.match(node):
        return node
    return f"h-{_hash(node)}"


def pull_deadline(size: int, config: Config) -> int:
    """Seconds one image of `size` bytes may take once its pull can start: a base plus the
    time its bytes take at the slowest expected bandwidth. The planner holds each image of a
    puller to this, counted from when that image could start."""
    return int(config.pull_deadline_base + size / config.pull_deadline_min_bandwidth)


# activeDeadlineSeconds is a backstop for when no prefetcher watches (the kubelet's clock
# runs from pod start and counts queueing behind other pulls): this many times the images'
# own deadlines, so under contention the planner's per-image clock decides, not the kubelet.
BACKSTOP_FACTOR = 4


def puller_backstop(sizes: Sequence[int], config: Config) -> int:
    """activeDeadlineSeconds of a puller pulling images of `sizes` one after another."""
    return BACKSTOP_FACTOR * sum(pull_deadline(size, config) for size in sizes)


# The parts every sleeper container of our pods has alike, one object each for all of them
# (like the resources above), and each image's container one object for every pod: a keeper
# of 200 images is 200 containers, and a pass holds the manifests of the keepers it plans
# (a thousand while a cluster converges: 249 kB each with every part copied, 6 kB now).
# Read-only: nothing edits a manifest once built.
SECURITY: Final[dict[str, Any]] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
}
SLEEPER_MOUNTS: Final[list[dict[str, Any]]] = [
    {"name": SLEEPER_VOLUME, "mountPath": SLEEPER_DIR, "readOnly": True}
]
KEEPER_COMMAND: Final[list[str]] = [SLEEPER_COPY]
PULLER_COMMAND: Final[list[str]] = [SLEEPER_COPY, "--exit"]
# Images whose containers are remembered (more than a cluster prefetches).
SHARED_CONTAINERS = 4096


def _owner_node(node: NodeInfo) -> list[dict[str, Any]]:
    if not node.uid:
        return []
    return [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid}]


def _install_container(config: Config) -> dict[str, Any]:
    return {
        "name": "install-sleeper",
        "image": config.tools_image,
        "imagePullPolicy": "IfNotPresent",
        "command": [SLEEPER_PATH, "--install", SLEEPER_COPY],
        "resources": INSTALL_RESOURCES,
        "securityContext": SECURITY,
        "volumeMounts": [{"name": SLEEPER_VOLUME, "mountPath": SLEEPER_DIR}],
    }


def tolerations(node: NodeInfo, config: Config) -> list[dict[str, Any]]:
    """The node's taints its eligible images' pods tolerate, the startup taint, and the
    not-ready / unreachable NoExecute taints for DEFAULT_TOLERATION_SECONDS."""
    out: list[dict[str, Any]] = []
    for taint in node.taints:
        if (
            taint.key in HEALTH_TAINTS
            or taint.key in PRESSURE_TAINTS
            or taint.effect not in BLOCKING_EFFECTS
            or taint.key == config.startup_taint
        ):
            continue
        toleration: dict[str, Any] = {
            "key": taint.key,
            "operator": "Exists",
            "effect": taint.effect,
        }
        if taint.value:
            toleration.update(operator="Equal", value=taint.value)
        if toleration not in out:
            out.append(toleration)
    if config.startup_taint:
        out.append({"key": config.startup_taint, "operator": "Exists"})
    out += [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
        }
        for key in SURVIVED_TAINTS
    ]
    return out


def _pod_spec(node: NodeInfo, config: Config) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node.name,
        "priorityClassName": config.keeper_priority_class,
        "tolerations": tolerations(node, config),
        "serviceAccountName": POD_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": SLEEPER_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}}],
        "initContainers": [_install_container(config)],
    }
    if config.image_pull_secrets:
        # The keeper names the secrets its images were pulled with: with KEP-2535 the
        # kubelet lets an image pulled with credentials run only for pods that bring them.
        spec["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    return spec


def _labels(node: str, component: str) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
        LABEL_NODE: node_label_value(node),
    }


@functools.lru_cache(maxsize=SHARED_CONTAINERS)
def _puller_container(image: str) -> dict[str, Any]:
    """A puller's container for `image`: the same on every node, so one object for all."""
    return {
        "name": puller_container_name(image),
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": PULLER_COMMAND,
        "resources": SLEEPER_RESOURCES,
        "securityContext": SECURITY,
        "volumeMounts": SLEEPER_MOUNTS,
    }


@functools.lru_cache(maxsize=SHARED_CONTAINERS)
def _keeper_container(image: str) -> dict[str, Any]:
    """A keeper's container for `image`: the same on every node, so one object for all (a
    thousand keepers of 200 images: 200 containers, not 200,000)."""
    return {
        "name": keeper_container_name(image),
        "image": image,
        "imagePullPolicy": "Never",
        "command": KEEPER_COMMAND,
        "resources": SLEEPER_RESOURCES,
        "securityContext": SECURITY,
        "volumeMounts": SLEEPER_MOUNTS,
    }


def build_puller(
    node: NodeInfo,
    images: Sequence[str],
    config: Config,
    *,
    deadline_seconds: int,
    attempt: int = 1,
) -> PodManifest:
    """The puller pod that pulls `images` (in this order) on `node`."""
    ordered = list(dict.fromkeys(images))
    metadata: dict[str, Any] = {
        "name": puller_name(node.name, ordered),
        "namespace": config.pod_namespace,
        "labels": _labels(node.name, COMPONENT_PULLER),
        "annotations": {
            ANNOTATION_NODE: node.name,
            ANNOTATION_IMAGES: json.dumps(ordered, separators=(",", ":")),
            ANNOTATION_ATTEMPT: str(attempt),
        },
    }
    owners = _owner_node(node)
    if owners:
        metadata["ownerReferences"] = owners
    spec = _pod_spec(node, config)
    spec["restartPolicy"] = "Never"
    spec["activeDeadlineSeconds"] = max(1, int(deadline_seconds))
    spec["containers"] = [_puller_container(image) for image in ordered]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def build_keeper(node: NodeInfo, images: Iterable[str], config: Config) -> PodManifest:
    """The keeper pod holding `images` on `node` (one sleeping container per image)."""
    ordered = sorted(set(images))
    metadata: dict[str, Any] = {
        "name": keeper_name(node.name, ordered),
        "namespace": config.pod_namespace,
        "labels": _labels(node.name, COMPONENT_KEEPER),
        "annotations": {
            ANNOTATION_NODE: node.name,
            ANNOTATION_IMAGES: json.dumps(ordered, separators=(",", ":")),
        },
    }
    owners = _owner_node(node)
    if owners:
        metadata["ownerReferences"] = owners
    spec = _pod_spec(node, config)
    spec["restartPolicy"] = "Always"
    spec["containers"] = [_keeper_container(image) for image in ordered]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
