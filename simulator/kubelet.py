"""The simulated kubelets: one loop that drives every Node annotated `sim.image-sync.io/managed`.

Like kwok, it talks to the API server only through the `kubernetes` client, so it can run
against our API server or any other: it watches Nodes and Pods, runs each node's pods in a
pure `NodeRuntime`, and writes back pod statuses, events, final deletions, node status and
the node's Lease heartbeat in `kube-node-lease` (each write in simulator/kubelet_writes.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kubernetes import client

from simulator.clock import Clock
from simulator.imagestore import ImageStore
from simulator.informer import Informers
from simulator.kubelet_writes import JSON, KubeletWriter
from simulator.noderuntime import NodeRuntime, Pod
from simulator.nodes import config_from_node, is_managed, is_marked_not_ready
from simulator.registry import RegistrySet

log = logging.getLogger(__name__)


class KubeletSet:
    """Runs the simulated kubelet of every managed node through one API client."""

    def __init__(
        self,
        api_client: client.ApiClient,
        clock: Clock,
        registries: RegistrySet,
        *,
        informers: Informers | None = None,
        tick: float = 0.1,
        events: bool = True,
        lease_seconds: float = 10.0,
        status_report_seconds: float = 300.0,
        min_wall_heartbeat: float = 1.0,
        node_status_every: float = 0.0,
        pod_status_every: float = 0.0,
        workers: int = 4,
        pod_gc: bool = True,
    ) -> None:
        self.api_client = api_client
        self.clock = clock
        self.registries = registries
        self.informers = informers or Informers(api_client)
        self.tick = tick
        self.events_enabled = events
        self.lease_seconds = lease_seconds
        self.status_report_seconds = status_report_seconds
        self.min_wall_heartbeat = min_wall_heartbeat
        # Simulated seconds between node status writes for a change (an image pulled or
        # removed, a condition): 0 writes each change at once; the kubelet's own cadence is
        # nodeStatusUpdateFrequency (10 s). Spaced out in wall time like the heartbeats.
        self.node_status_every = node_status_every
        # Simulated seconds between two status writes of a pod whose containers are still on
        # their way (one started, the next still pulling): 0 writes each change. A new phase,
        # or the pod's last waiting container starting, is written at once whatever this is.
        self.pod_status_every = pod_status_every
        self._pod_status_written: dict[str, tuple[float, str]] = {}  # uid → (when, phase)
        self.pod_gc = pod_gc
        self.runtimes: dict[str, NodeRuntime] = {}
        self.image_waits: dict[str, float] = {}
        self.counters: dict[str, int] = {
            "pod_status_writes": 0,
            "node_status_writes": 0,
            "lease_writes": 0,
            "events": 0,
            "write_errors": 0,
            "delete_retries": 0,
        }
        self._pod_versions: dict[str, str] = {}
        self._last_status: dict[str, float] = {}
        self._last_lease: dict[str, float] = {}
        self._not_ready: set[str] = set()
        self.writer = KubeletWriter(api_client, self.counters)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kubelet-write")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()
        self.loops = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.informers.start()
        self._thread = threading.Thread(target=self._run, name="kubelets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        self.informers.wait_synced(60)
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("kubelet loop")
            self._stop.wait(self.tick)

    # -- inspection (tests, demo, benchmarks) -----------------------------------------
    def runtime(self, node: str) -> NodeRuntime | None:
        with self.lock:
            return self.runtimes.get(node)

    def image_store(self, node: str) -> ImageStore:
        runtime = self.runtime(node)
        if runtime is None:
            raise KeyError(f"node {node!r} is not run by this kubelet set")
        return runtime.store

    def pod_image_waits(self) -> dict[str, float]:
        """`namespace/name` → seconds the pod waited for its images (pods that got them all)."""
        with self.lock:
            return dict(self.image_waits)

    def summary(self) -> JSON:
        with self.lock:
            waits = sorted(self.image_waits.values())
            pods = sum(len(r.pods) for r in self.runtimes.values())
            pulling = sum(len(r.active) + len(r.queue) for r in self.runtimes.values())
        return {
            "nodes": len(self.runtimes),
            "pods": pods,
            "pulls_in_flight_or_queued": pulling,
            "image_wait_count": len(waits),
            "image_wait_total_seconds": sum(waits),
            "image_wait_max_seconds": waits[-1] if waits else 0.0,
            "image_wait_p50_seconds": waits[len(waits) // 2] if waits else 0.0,
            **self.counters,
        }

    # -- one pass --------------------------------------------------------------------
    def step(self) -> None:
        """Advance every node to now and write back what changed."""
        now = self.clock.now()
        futures: list[Future[None]] = []
        with self.lock:
            self.loops += 1
            nodes = {
                n["metadata"]["name"]: n for n in self.informers.nodes.snapshot() if is_managed(n)
            }
            if nodes and not self.writer.lease_namespace_ready:
                self.writer.ensure_lease_namespace()
            for name, node in nodes.items():
                if name not in self.runtimes:
                    self.runtimes[name] = NodeRuntime(config_from_node(node), self.registries, now)
                    futures.append(self._submit(self.writer.adopt_node, node))
            for name in list(self.runtimes):
                if name not in nodes:
                    self._drop_node(name, futures)

            by_node: dict[str, list[JSON]] = {}
            pods = self.informers.pods.snapshot()
            for pod in pods:
                node_name = (pod.get("spec") or {}).get("nodeName")
                if node_name in self.runtimes:
                    by_node.setdefault(node_name, []).append(pod)
            futures.extend(self._retry_deletes(pods))

            # Space heartbeats out in wall time too, so an accelerated large cluster
            # does not spend the API server on leases (about 50 lease writes per second).
            wall_floor = max(self.min_wall_heartbeat, len(self.runtimes) / 50) * self.clock.speed
            lease_every = max(self.lease_seconds, wall_floor)
            report_every = max(self.status_report_seconds, 10 * wall_floor)
            change_every = (
                max(self.node_status_every, wall_floor) if self.node_status_every else 0.0
            )
            for name, runtime in self.runtimes.items():
                node = nodes[name]
                not_ready = is_marked_not_ready(node)
                if not_ready:
                    if name not in self._not_ready:
                        self._not_ready.add(name)
                        futures.append(self._submit(self.writer.mark_not_ready, name, node, now))
                    continue  # a stopped kubelet neither runs pods nor posts status
                if name in self._not_ready:
                    self._not_ready.discard(name)
                    futures.append(self._submit(self.writer.clear_not_ready, node))
                    runtime.node_dirty = True
                runtime.labels = dict((node.get("metadata") or {}).get("labels") or runtime.labels)
                runtime.taints = tuple((node.get("spec") or {}).get("taints") or ())
                self._sync_pods(runtime, by_node.get(name, []), now)
                runtime.advance(now)
                futures.extend(self._flush(runtime))
                since_status = now - self._last_status.get(name, -1e18)
                if (runtime.node_dirty and since_status >= change_every) or (
                    since_status >= report_every
                ):
                    self._last_status[name] = now
                    futures.append(
                        self._submit(
                            self.writer.write_node_status, name, runtime.node_status(now, now)
                        )
                    )
                pressure = runtime.store.disk_pressure()
                if pressure != self.writer.has_pressure_taint(node):
                    futures.append(self._submit(self.writer.set_pressure_taint, node, pressure))
                if now - self._last_lease.get(name, -1e18) >= lease_every:
                    self._last_lease[name] = now
                    futures.append(self._submit(self.writer.renew_lease, node, now))
        for future in futures:
            try:
                future.result(timeout=60)
            except Exception as exc:
                self.counters["write_errors"] += 1
                log.debug("kubelet write failed: %s", exc)

    def _sync_pods(self, runtime: NodeRuntime, pods: list[JSON], now: float) -> None:
        seen: set[str] = set()
        for pod in pods:
            meta = pod["metadata"]
            uid = str(meta.get("uid") or "")
            seen.add(uid)
            version = str(meta.get("resourceVersion") or "")
            if self._pod_versions.get(uid) == version and uid in runtime.pods:
                continue
            self._pod_versions[uid] = version
            runtime.sync_pod(pod, now)
        for uid in runtime.known_uids() - seen:
            runtime.forget_pod(uid)
            self._pod_versions.pop(uid, None)
            self._pod_status_written.pop(uid, None)

    def _status_due(self, pod: Pod, now: float) -> bool:
        """Whether a changed pod's status is written now or left for a later pass."""
        if not self.pod_status_every:
            return True
        written_at, phase = self._pod_status_written.get(pod.uid, (-1e18, ""))
        settled = pod.deleting or all(c.state != "waiting" for c in pod.all_containers())
        if settled or pod.phase != phase or now - written_at >= self.pod_status_every:
            self._pod_status_written[pod.uid] = (now, pod.phase)
            return True
        return False

    def _flush(self, runtime: NodeRuntime) -> list[Future[None]]:
        futures: list[Future[None]] = []
        for pod in runtime.dirty_pods():
            if not self._status_due(pod, runtime.now):
                continue
            status = runtime.pod_status(pod)
            futures.append(
                self._submit(self.writer.write_pod_status, pod.namespace, pod.name, status)
            )
            if pod.image_wait_done is not None and not pod.image_wait_reported:
                pod.image_wait_reported = True
                self.image_waits[pod.key] = pod.image_wait_done
                futures.append(
                    self._submit(
                        self.writer.annotate_wait, pod.namespace, pod.name, pod.image_wait_done
                    )
                )
        for namespace, name, uid in runtime.take_deletions():
            futures.append(self._submit(self.writer.delete_pod, namespace, name, uid))
        events = runtime.take_events()
        if self.events_enabled and events:
            futures.append(self._submit(self.writer.write_events, runtime.config.name, events))
        return futures

    def _retry_deletes(self, pods: list[JSON]) -> list[Future[None]]:
        """Delete again the pods whose final delete failed, if they are still there."""
        failed = self.writer.take_failed_deletes()
        if not failed:
            return []
        present = {str(p["metadata"].get("uid") or "") for p in pods}
        futures = []
        for namespace, name, uid in failed.values():
            if uid and uid not in present:
                continue  # deleted after all (the answer was lost), or by someone else
            self.counters["delete_retries"] += 1
            futures.append(self._submit(self.writer.delete_pod, namespace, name, uid))
        return futures

    def _submit(self, func: Callable[..., None], *args: Any) -> Future[None]:
        return self._pool.submit(func, *args)

    # -- writes ----------------------------------------------------------------------

    def _drop_node(self, name: str, futures: list[Future[None]]) -> None:
        """The Node object is gone: stop its kubelet and, like the pod GC controller, delete its pods."""
        runtime = self.runtimes.pop(name)
        for job in runtime.active:
            runtime.end_bytes(job)
        self._last_status.pop(name, None)
        self._last_lease.pop(name, None)
        self._not_ready.discard(name)
        if self.pod_gc:
            for pod in runtime.pods.values():
                futures.append(
                    self._submit(self.writer.delete_pod, pod.namespace, pod.name, pod.uid)
                )
            for obj in self.informers.pods.snapshot():
                spec = obj.get("spec") or {}
                meta = obj["metadata"]
                if spec.get("nodeName") == name and meta.get("uid") not in runtime.pods:
                    futures.append(
                        self._submit(
                            self.writer.delete_pod,
                            meta.get("namespace", "default"),
                            meta["name"],
                            meta.get("uid", ""),
                        )
                    )
