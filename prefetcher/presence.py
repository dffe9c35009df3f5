"""What our pods prove: how each puller's images ended, and which images are on a node.

Presence is known, never guessed: an image is present on a node when a running container
of the node's keeper pod uses it, or when a puller pod for it finished successfully (its
container was created, so the kubelet has the image).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prefetcher.model import ManagedPod
from prefetcher.refusals import REFUSED_KIND, REFUSED_REASON

# Waiting reasons with which the kubelet gives up on (or keeps failing) an image pull.
PULL_FAILURE_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "ImageInspectError",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
DEADLINE_REASON = "DeadlineExceeded"


@dataclass(frozen=True, slots=True)
class PullResult:
    """How a finished puller ended."""

    succeeded: bool
    reason: str = ""
    message: str = ""
    kind: str = ""
    finished_at: datetime | None = None


@functools.lru_cache(maxsize=4096)
def _pulled(finished_at: datetime | None) -> PullResult:
    """A success, one object per second of the clock: twenty thousand finished pullers of
    ten images each share a few thousand."""
    return PullResult(succeeded=True, finished_at=finished_at)


@functools.lru_cache(maxsize=256)
def _image_set(images: tuple[str, ...]) -> frozenset[str]:
    """A puller's images as a set, one per batch of images: a membership test in the tuple
    of a puller of 200 images cost 200 comparisons, for each of its 200 containers (a
    fifth of the first pass's reading of a thousand such pullers)."""
    return frozenset(images)


def failure_kind(reason: str, message: str) -> str:
    """A short class for a pull failure, so the report can group and people can act."""
    text = message.lower()
    if reason == DEADLINE_REASON:
        return "deadline"
    if reason == REFUSED_REASON:
        return REFUSED_KIND
    if reason == "InvalidImageName":
        return "invalid-name"
    if reason == "ErrImageNeverPull":
        return "never-pull"
    if "no matching manifest" in text or "no match for platform" in text:
        return "no-matching-platform"
    if any(
        s in text
        for s in ("unauthorized", "authentication required", "denied", "401", "403", "forbidden")
    ):
        return "unauthorized"
    if any(s in text for s in ("not found", "manifest unknown", "name unknown", "404")):
        return "not-found"
    if any(s in text for s in ("timeout", "deadline", "i/o timeout", "connection refused")):
        return "unreachable"
    return "other"


def _failure(reason: str, message: str, finished_at: datetime | None) -> PullResult:
    message = message or f"the kubelet reported {reason} without a message"
    return PullResult(
        succeeded=False,
        reason=reason,
        message=message,
        kind=failure_kind(reason, message),
        finished_at=finished_at,
    )


def puller_results(pod: ManagedPod) -> dict[str, PullResult]:
    """The outcome of each image of a puller that has one by now; the others are still
    being pulled (or waiting their turn: the kubelet pulls a pod's images one by one).

    Success: the image's container ran (running or terminated, any exit code: it was created
    from the image, so the image is on the node), or the pod Succeeded. Failure: the
    container waits with a pull error (reason + the kubelet's message); or the pod ended
    (ran past its activeDeadlineSeconds, failed, or its init container could not get the
    tools image) before the image's container ran.
    """
    results: dict[str, PullResult] = {}
    wanted = _image_set(pod.images)
    for container in pod.containers:
        if container.init or container.image not in wanted:
            continue
        if container.state in ("running", "terminated"):
            results[container.image] = _pulled(container.finished_at or container.started_at)
        elif container.state == "waiting" and container.reason in PULL_FAILURE_REASONS:
            results[container.image] = _failure(container.reason, container.message, None)
    if len(results) == len(pod.images):
        return results
    ended: PullResult | None = None
    if pod.phase == "Succeeded":
        ended = PullResult(succeeded=True)
    elif pod.reason == DEADLINE_REASON:
        limit = f"{pod.active_deadline} s" if pod.active_deadline else "its deadline"
        ended = _failure(
            DEADLINE_REASON, pod.message or f"the pull did not finish within {limit}", None
        )
    else:
        for container in pod.containers:
            if (
                container.init
                and container.state == "waiting"
                and container.reason in PULL_FAILURE_REASONS
            ):
                message = f"tools image {container.image}: {container.message or container.reason}"
                ended = _failure(container.reason, message, None)
                break
        else:
            if pod.phase == "Failed":
                ended = _failure(pod.reason or "Failed", pod.message, None)
    if ended is not None:
        for image in pod.images:
            results.setdefault(image, ended)
    return results


def keeper_running_images(pod: ManagedPod) -> frozenset[str]:
    """The images a keeper guards: those of its running containers."""
    if pod.role != "keeper" or pod.phase in ("Failed", "Succeeded"):
        return frozenset()
    listed = [c.image for c in pod.containers if not c.init and c.state == "running"]
    return pod.running.union(listed) if listed else pod.running


def keeper_settled(pod: ManagedPod) -> bool:
    """True when a keeper has finished starting: every container runs, or never will
    (its image is gone from the node). For the report and tests; the planner itself
    compares the images running in the old and new keepers.
    """
    main = [c for c in pod.containers if not c.init]  # besides the running ones in `running`
    if pod.deleting or pod.phase != "Running" or len(pod.running) + len(main) < len(pod.images):
        return False
    return all(
        c.state == "running" or (c.state == "waiting" and c.reason in PULL_FAILURE_REASONS)
        for c in main
    )


def present_images(pods: Iterable[ManagedPod]) -> dict[str, frozenset[str]]:
    """Node name → images known to be present there (keepers' running containers + pulled)."""
    present: dict[str, set[str]] = {}
    for pod in pods:
        if pod.role == "keeper":
            images = keeper_running_images(pod)
        else:
            images = frozenset(
                image for image, result in puller_results(pod).items() if result.succeeded
            )
        if images:
            present.setdefault(pod.node, set()).update(images)
    return {node: frozenset(images) for node, images in present.items()}
