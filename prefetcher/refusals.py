"""A puller pod the API server refused to create is a failed pull, with the server's reason.

Without this, a refused creation (a missing PriorityClass, a ResourceQuota, a PodSecurity
level, an admission webhook saying no) left the pull looking "started" in the report for as
long as the cause lasted. Here it becomes a `PullRecord` (so the cell shows `failed`, the
reason, and a hint at what to fix, and the next try waits its backoff) and a `PullOutcome`
(so metrics and Events say so too).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prefetcher.model import PullAction, PullKey, PullOutcome, PullRecord

REFUSED_REASON = "PullerRefused"
REFUSED_KIND = "refused"
# Errors that say "not now" rather than "no": the pass retries them without a failure.
TRANSIENT_STATUSES = frozenset({0, 409, 429, 500, 502, 503, 504})

_HINTS: tuple[tuple[str, str], ...] = (
    (
        "no priorityclass with name",
        "the PriorityClass of image-sync's pods is missing: apply manifests/base "
        "(priorityclass.yaml) or set keeperPriorityClass to an existing class",
    ),
    (
        "exceeded quota",
        "a ResourceQuota in image-sync's pod namespace has no room for puller pods: raise it, "
        "or lower maxConcurrentPulls",
    ),
    (
        "violates podsecurity",
        "the namespace's Pod Security level refuses the puller: label the namespace as "
        "manifests/base does",
    ),
    (
        "cannot create resource",
        "the prefetcher's ServiceAccount may not create pods there: apply the RBAC in "
        "manifests/base",
    ),
    (
        "image-sync pod guard",
        "image-sync's pod guard refused the puller: the prefetcher and the webhook (or the "
        "admission policy) come from different releases; apply one release's manifests",
    ),
    (
        "image-sync-pod-guard",
        "image-sync's admission policy refused the puller: the prefetcher and the policy come "
        "from different releases; apply one release's manifests",
    ),
    (
        "admission webhook",
        "an admission webhook refused the puller: exempt image-sync's namespace from it",
    ),
    (
        'namespaces "',
        "the pod namespace is missing: apply manifests/base (cache-namespace.yaml), or set "
        "podNamespace to an existing namespace",
    ),
    (
        "limitrange",
        "a LimitRange in image-sync's pod namespace refuses the puller's small requests "
        "(1m CPU, 4Mi each container): relax it for that namespace",
    ),
)


def is_refusal(status: int) -> bool:
    """True when the API server's answer to a create is a definite no."""
    return status not in TRANSIENT_STATUSES


def hint(message: str) -> str:
    """What to fix, for the refusals an install commonly runs into; "" when unknown."""
    text = message.lower()
    return next((fix for needle, fix in _HINTS if needle in text), "")


def refused_pull(
    pull: PullAction,
    status: int,
    message: str,
    records: Mapping[PullKey, PullRecord],
    now: datetime,
) -> tuple[list[PullRecord], list[PullOutcome]]:
    """The backoff records and outcomes for every image of a refused puller."""
    fix = hint(message)
    detail = f"HTTP {status}: {message}" + (f" (hint: {fix})" if fix else "")
    marker = f"refused:{pull.pod_name}:{now.isoformat()}"
    new_records: list[PullRecord] = []
    outcomes: list[PullOutcome] = []
    for image in pull.images:
        previous = records.get((pull.node, image))
        attempts = max((previous.attempts if previous else 0) + 1, pull.attempt)
        new_records.append(
            PullRecord(pull.node, image, attempts, now, REFUSED_REASON, detail, marker)
        )
        outcomes.append(
            PullOutcome(
                pull.node,
                image,
                pull.pod_name,
                marker,
                False,
                REFUSED_REASON,
                detail,
                None,
                pull.size,
                REFUSED_KIND,
            )
        )
    return new_records, outcomes
