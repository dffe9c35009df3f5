"""The caches behind the planner's `Demand` input: workload templates and workload pods.

Watches (list + watch, read-only) the kinds with pod templates (Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs, CronJobs, and the configured `templateKinds`), the workload
pods running, and the pods not bound yet; remembers template image changes (rollouts) for
`rolloutGrace`, the pools each image's pods ran in (`poolhistory`) and the images each node's
pods used lately (`budgethold`); and turns all of it
into a `Demand` for each pass. The controller owns the loop; this module owns what the
caches mean.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from imagesync.config import Config
from imagesync.templates import BUILTIN_KINDS, TemplateKind
from prefetcher import workloads
from prefetcher.budgethold import BudgetHold
from prefetcher.informer import Change, Informer, Obj
from prefetcher.kube import Kube
from prefetcher.model import Demand, NodeInfo, Rollout, Workload
from prefetcher.poolhistory import PoolHistory

log = logging.getLogger(__name__)

RUNNING, UNSCHEDULED = "RunningPod", "UnscheduledPod"
# Namespaces the webhook's namespaceSelector always leaves out (with image-sync's own).
ALWAYS_LEFT_OUT = frozenset({"kube-system"})
# (informer kind, list call, resource for metrics, transform) → an informer wired to the
# controller's callbacks.
InformerFactory = Callable[[str, Any, str, Callable[[Obj], Obj] | None], Informer]
T = TypeVar("T")


class Converter(Protocol):
    """The controller's `_converted`: converts a cache's objects, memoized by
    resourceVersion, skipping (and reporting) any object that cannot be read."""

    def __call__(self, kind: str, objs: list[Obj], convert: Callable[[Obj], T]) -> list[T]: ...


def informer_kind(kind: TemplateKind) -> str:
    """Informer name of a template kind (the group tells custom kinds apart)."""
    return f"{kind.kind}.{kind.group}"


class DemandWatch:
    """Template and workload-pod informers, the rollouts seen, and the Demand they make."""

    def __init__(self, kube: Kube, config: Config, make_informer: InformerFactory) -> None:
        self.config = config
        kinds = (*BUILTIN_KINDS, *config.template_kinds) if config.learn_templates else ()
        self.kinds = {informer_kind(k): k for k in kinds}
        self.templates = {
            name: make_informer(name, kube.template_source(kind), kind.resource, None)
            for name, kind in self.kinds.items()
        }
        self.running = make_informer(RUNNING, kube.running_pod_source(), "pods", workloads.slim_pod)
        self.unscheduled = make_informer(
            UNSCHEDULED, kube.unscheduled_pod_source(), "pods", workloads.slim_pod
        )
        self.excluded = self.left_out(())
        self.rollouts: dict[str, Rollout] = {}  # noted by informer threads: under _lock
        self.history = PoolHistory(
            config.node_pool_labels, timedelta(seconds=config.image_retention)
        )
        self.hold = BudgetHold(timedelta(seconds=config.budget_hold))
        self._lock = threading.Lock()

    def left_out(self, labelled: Iterable[str]) -> frozenset[str]:
        """Namespaces whose templates teach nothing: those labelled out, kube-system and
        image-sync's own, as for the webhook."""
        return frozenset({*labelled, *ALWAYS_LEFT_OUT, self.config.namespace})

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (*self.templates.values(), self.running, self.unscheduled)

    @property
    def required(self) -> tuple[Informer, ...]:
        """Those a pass waits for: a custom kind whose CRD is not installed never syncs."""
        builtin = {informer_kind(k) for k in BUILTIN_KINDS}
        return tuple(i for name, i in self.templates.items() if name in builtin)

    def workload_of(self, kind: str, obj: Obj | None) -> Workload | None:
        if obj is None:
            return None
        try:
            return workloads.workload(obj, self.kinds[kind], self.config, self.excluded)
        except Exception:  # unreadable: the pass's conversion reports it
            return None

    def _read(self, kind: TemplateKind, obj: Obj) -> tuple[Workload | None, tuple[str, str] | None]:
        return (
            workloads.workload(obj, kind, self.config, self.excluded),
            workloads.parent_link(obj, kind.kind),
        )

    def on_change(self, change: Change, now: float) -> str | None:
        """Why a change needs a pass now (a template's images changed), or None; notes
        rollouts. Pod changes feed the next pass without asking for one."""
        seen = change.new if change.new is not None else change.old
        if change.kind == RUNNING and seen is not None:
            moment = datetime.fromtimestamp(now, UTC)
            pod = workloads.running_pod(seen)
            if pod is not None:
                with self._lock:  # (a pod gone: its images' room is held from now on)
                    if change.new is not None:
                        self.history.saw_on(pod, moment)
                    self.hold.saw(pod.node, pod.images, moment)
        if change.kind not in self.kinds:
            return None
        old = self.workload_of(change.kind, change.old)
        new = self.workload_of(change.kind, change.new)
        if (old.images if old else ()) == (new.images if new else ()):
            return None
        if old is not None and new is not None and not change.initial:
            rollout = Rollout(new.key, old.images, new.images, datetime.fromtimestamp(now, UTC))
            with self._lock:
                self.rollouts[new.key] = rollout
            log.info(
                "rollout of %s: %s -> %s",
                new.key,
                ", ".join(old.images),
                ", ".join(new.images),
                extra={"workload": new.key},
            )
            return "rollout"
        return "workload template"

    def demand(self, now: datetime, convert: Converter, nodes: Iterable[NodeInfo] = ()) -> Demand:
        """The Demand of the caches now; forgets rollouts past their grace and urgency, and
        remembers the pools (of `nodes`) where the running pods are."""
        keep = timedelta(seconds=max(self.config.rollout_grace, self.config.urgent_window))
        with self._lock:
            self.rollouts = {k: r for k, r in self.rollouts.items() if now - r.at <= keep}
            rollouts = sorted(self.rollouts.values(), key=lambda r: r.workload)
        found: list[Workload] = []
        parents: dict[str, str] = {}
        for name, informer in self.templates.items():
            read = partial(self._read, self.kinds[name])
            for workload, link in convert(name, informer.items(), read):
                if link is not None:
                    parents[link[0]] = link[1]
                if workload is not None:
                    found.append(workload)
        running = [p for p in convert(RUNNING, self.running.items(), workloads.running_pod) if p]
        waiting = convert(UNSCHEDULED, self.unscheduled.items(), workloads.unschedulable_pod)
        with self._lock:
            for pod in running:
                self.history.saw_on(pod, now)
                self.hold.saw(pod.node, pod.images, now)
            self.history.place({n.name: n.labels for n in nodes})
            ran_in = self.history.pools(now)
            pods_used = self.hold.used(now)
        return Demand(
            workloads=tuple(sorted(found, key=lambda w: w.key)),
            running=tuple(sorted(running, key=lambda p: (p.node, p.workload, p.images))),
            unschedulable=tuple(sorted((p for p in waiting if p is not None), key=lambda p: p.pod)),
            rollouts=tuple(rollouts),
            parents=dict(sorted(parents.items())),
            ran_in=ran_in,
            pods_used=pods_used,
        )
