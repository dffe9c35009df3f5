"""Noticing that the cluster undid the webhook's rewrite: a stored pod whose containers the
webhook set to IfNotPresent (it names them in an annotation) says Always, as the
AlwaysPullImages admission plugin leaves it. Said once: the report, a metric, one log line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagesync.cachedimage import format_time
from imagesync.names import ANNOTATION_REWRITTEN
from prefetcher.metrics import Metrics

log = logging.getLogger(__name__)

REWRITTEN_TO = "IfNotPresent"
WHY = (
    "pods the webhook rewrote to imagePullPolicy IfNotPresent are stored with another policy: "
    "an admission plugin after the webhook (AlwaysPullImages) sets it back; images are still "
    "prefetched, and such pods still start without pulling layers (see docs/webhook.md, "
    "Hardened clusters)"
)


@dataclass(frozen=True, slots=True)
class UndoneRewrite:
    """One stored pod whose rewritten containers carry another policy than the webhook set."""

    pod: str  # namespace/name
    policies: Mapping[str, str]  # container name -> the policy it is stored with

    def as_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "policies": dict(self.policies), "why": WHY}


def undone_rewrite(obj: Mapping[str, Any]) -> UndoneRewrite | None:
    """The pod's rewritten containers that do not say IfNotPresent, or None."""
    meta = obj.get("metadata")
    spec = obj.get("spec")
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return None
    annotations = meta.get("annotations")
    marked = annotations.get(ANNOTATION_REWRITTEN) if isinstance(annotations, Mapping) else None
    if not isinstance(marked, str) or not marked:
        return None
    rewritten = set(marked.split(","))
    policies = {
        str(container.get("name")): str(container.get("imagePullPolicy") or "")
        for key in ("initContainers", "containers")
        for container in spec.get(key) or ()
        if isinstance(container, Mapping) and container.get("name") in rewritten
    }
    undone = {name: policy for name, policy in policies.items() if policy != REWRITTEN_TO}
    if not undone:
        return None
    return UndoneRewrite(f"{meta.get('namespace', '')}/{meta.get('name', '')}", undone)


class RewriteWatch:
    """Looks at the workload pods the prefetcher watches anyway; remembers the first pod whose
    rewrite was undone and says so once."""

    def __init__(self, metrics: Metrics, now: Callable[[], float]) -> None:
        self._metrics = metrics
        self._now = now
        self._lock = threading.Lock()
        self.first: UndoneRewrite | None = None
        self.since: datetime | None = None
        metrics.rewrite_undone.set(0)

    def see(self, obj: Mapping[str, Any]) -> None:
        if self.first is not None:
            return
        found = undone_rewrite(obj)
        if found is None:
            return
        with self._lock:
            if self.first is not None:
                return
            self.first, self.since = found, datetime.fromtimestamp(self._now(), UTC)
        self._metrics.rewrite_undone.set(1)
        log.warning(
            "pull policy rewrite undone on %s (%s): %s",
            found.pod,
            ", ".join(f"{name}={policy}" for name, policy in sorted(found.policies.items())),
            WHY,
            extra={"pod": found.pod},
        )

    def as_dict(self) -> dict[str, Any] | None:
        """For the report: the first pod seen and when, or None while none was."""
        if self.first is None or self.since is None:
            return None
        return {**self.first.as_dict(), "since": format_time(self.since)}
