"""A minimal kube-scheduler: binds pending pods of `default-scheduler` through pods/binding.

The decisions come from the pure `simulator.scheduling`; this module only watches, keeps
track of what it has just bound (so it does not double-book a node before the watch catches
up), binds, and reports unschedulable pods with a PodScheduled=False condition and a
FailedScheduling event, as the real scheduler does.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.clock import Clock, rfc3339
from simulator.informer import Informers
from simulator.rawapi import MERGE, call
from simulator.scheduling import pod_requests, schedule
from simulator.scoring import DEFAULT_SCORING, ScoringStrategy

JSON = dict[str, Any]
SCHEDULER_NAME = "default-scheduler"

log = logging.getLogger(__name__)


def _key(pod: JSON) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def _pending(pod: JSON) -> bool:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and not meta.get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


class Scheduler:
    """Binds pending pods to nodes; `retry_seconds` (wall) is how often unschedulable pods retry."""

    def __init__(
        self,
        api_client: client.ApiClient,
        clock: Clock,
        *,
        informers: Informers | None = None,
        tick: float = 0.1,
        retry_seconds: float = 2.0,
        events: bool = True,
        scoring: ScoringStrategy = DEFAULT_SCORING,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.scoring = scoring
        self.clock = clock
        self.informers = informers or Informers(api_client)
        self.tick = tick
        self.retry_seconds = retry_seconds
        self.events = events
        self.bound = 0
        self._assumed: dict[str, str] = {}  # pod key -> node, until the watch shows the binding
        self._reported: dict[str, str] = {}  # pod key -> last unschedulable message
        self._request_cache: dict[str, dict[str, float]] = {}  # pod uid -> its requests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.informers.start()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        self.informers.wait_synced(60)
        idle = 0.0
        while not self._stop.is_set():
            changed = self.informers.pods.changed.is_set() or self.informers.nodes.changed.is_set()
            if changed or idle >= self.retry_seconds:
                self.informers.pods.changed.clear()
                self.informers.nodes.changed.clear()
                idle = 0.0
                try:
                    self.step()
                except Exception:
                    log.exception("scheduler pass")
            self._stop.wait(self.tick)
            idle += self.tick

    def step(self) -> int:
        """One scheduling pass over every pending pod; returns how many were bound."""
        pods = self.informers.pods.snapshot()
        if self._assumed or self._reported:
            present = {_key(pod) for pod in pods}
            for key in list(self._assumed):
                if key not in present:
                    del self._assumed[key]
            for key in list(self._reported):
                if key not in present:
                    del self._reported[key]
        # Most pods are bound (pullers and keepers name their node): the check for a
        # nodeName comes first, and no key is built for a bound pod.
        pending = [pod for pod in pods if _pending(pod) and _key(pod) not in self._assumed]
        if not pending:
            return 0  # nothing to place: skip tallying every bound pod's requests
        nodes = self.informers.nodes.snapshot()
        used: dict[str, dict[str, float]] = {}
        cache, self._request_cache = self._request_cache, {}
        for pod in pods:
            key = _key(pod)
            node = (pod.get("spec") or {}).get("nodeName") or self._assumed.get(key)
            if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            uid = str(pod["metadata"].get("uid") or key)
            requests = cache.get(uid) or pod_requests(pod)  # a pod's requests do not change
            self._request_cache[uid] = requests
            totals = used.setdefault(node, {})
            for name, value in requests.items():
                totals[name] = totals.get(name, 0.0) + value
            if (pod.get("spec") or {}).get("nodeName"):
                self._assumed.pop(key, None)
        pending.sort(
            key=lambda p: (
                -int((p.get("spec") or {}).get("priority") or 0),
                (p.get("metadata") or {}).get("creationTimestamp") or "",
                _key(p),
            )
        )
        bound = 0
        for pod in pending:
            if self._stop.is_set():
                break
            decision = schedule(pod, nodes, used, self.scoring)
            key = _key(pod)
            if decision.node is None:
                if self._reported.get(key) != decision.message:
                    self._reported[key] = decision.message
                    self._report_unschedulable(pod, decision.message)
                continue
            if self._bind(pod, decision.node):
                bound += 1
                self._assumed[key] = decision.node
                self._reported.pop(key, None)
                totals = used.setdefault(decision.node, {})
                for name, value in pod_requests(pod).items():
                    totals[name] = totals.get(name, 0.0) + value
        self.bound += bound
        return bound

    def _bind(self, pod: JSON, node: str) -> bool:
        meta = pod["metadata"]
        namespace = meta.get("namespace", "default")
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": namespace, "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            call(self.core.create_namespaced_pod_binding, meta["name"], namespace, body)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        self._event(
            pod,
            "Scheduled",
            f"Successfully assigned {namespace}/{meta['name']} to {node}",
            "Normal",
        )
        return True

    def _report_unschedulable(self, pod: JSON, message: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(self.clock.now()),
        }
        try:
            call(
                self.core.patch_namespaced_pod_status,
                meta["name"],
                meta.get("namespace", "default"),
                {"status": {"conditions": [condition]}},
                _content_type=MERGE,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        self._event(pod, "FailedScheduling", message, "Warning")

    def _event(self, pod: JSON, reason: str, message: str, type_: str) -> None:
        if not self.events:
            return
        meta = pod["metadata"]
        namespace = meta.get("namespace", "default")
        now = rfc3339(self.clock.now())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": namespace,
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": SCHEDULER_NAME},
            "reportingComponent": SCHEDULER_NAME,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            call(self.core.create_namespaced_event, namespace, body)
        except ApiException as exc:
            log.debug("event not recorded: %s", exc)
