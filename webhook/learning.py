"""What one admitted pod teaches: its managed images and where pods like it can be scheduled.

Pure. The recorder buffers these sightings and writes them to CachedImage objects later, so
the request path only builds a small immutable value.

At admission time a pod made by a Deployment carries the ownerReference of its ReplicaSet
(the Deployment itself creates no pods), a Job's pod that of its Job, a bare pod none; the
owner kind recorded is that of the controller reference, as `profile_from_pod` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from imagesync.cachedimage import PlacementProfile, profile_from_pod
from imagesync.mutation import PodDecision
from webhook.review import AdmissionRequest


class Sighting(NamedTuple):
    """Managed images seen together in one pod, with the pod's placement profile.

    The recorder keeps `profile` as it is (never modified) until it writes it.
    """

    images: tuple[str, ...]
    profile: PlacementProfile


def pod_namespace(request: AdmissionRequest, pod: Mapping[str, Any]) -> str:
    """`request.namespace` is authoritative: a pod being created may omit its own namespace."""
    if request.namespace:
        return request.namespace
    metadata = pod.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) else ""


def sighting_for(
    request: AdmissionRequest, pod: Mapping[str, Any], decision: PodDecision
) -> Sighting | None:
    """The sighting to record, or None: opted-out pods, pods without managed images, dry runs.

    A dry run must have no side effects (the webhook declares `sideEffects: NoneOnDryRun`),
    so it is mutated like any other request but teaches nothing.
    """
    images = decision.images
    if request.dry_run or not images:
        return None
    try:
        profile = profile_from_pod(pod, pod_namespace(request, pod))
    except (AttributeError, TypeError, ValueError):
        # A malformed spec (say, tolerations that are not objects): learn the images anyway.
        profile = PlacementProfile(
            nodeSelector={},
            requiredNodeAffinity=[],
            tolerations=[],
            gpu=False,
            namespace=pod_namespace(request, pod),
            ownerKind="",
        )
    return Sighting(images, profile)
