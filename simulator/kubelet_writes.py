"""The simulated kubelets' writes to the API server, apart from the loop that decides them.

Pod status, final deletes, events, node status and taints, the node's Lease: each one request
through the `kubernetes` client, a 404 (the object is gone) taken as done.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.clock import rfc3339, rfc3339_micro
from simulator.noderuntime import IMAGE_WAIT, Event
from simulator.nodes import config_from_node
from simulator.rawapi import MERGE, send

JSON = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"

log = logging.getLogger(__name__)


class KubeletWriter:
    """Every write of the simulated kubelets, counted in the kubelet set's `counters`."""

    def __init__(self, api_client: client.ApiClient, counters: dict[str, int]) -> None:
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.counters = counters
        self.lease_namespace_ready = False
        # Final deletes that failed (429, 5xx, a dropped connection): tried again on the next
        # pass while the pod is still there, as the kubelet's status manager does.
        self._failed_deletes: dict[str, tuple[str, str, str]] = {}
        self._failed_lock = threading.Lock()

    def take_failed_deletes(self) -> dict[str, tuple[str, str, str]]:
        """The final deletes that failed since the last call, to be tried again."""
        with self._failed_lock:
            failed, self._failed_deletes = self._failed_deletes, {}
        return failed

    def write_pod_status(self, namespace: str, name: str, status: JSON) -> None:
        try:
            send(
                self.core.patch_namespaced_pod_status,
                name,
                namespace,
                {"status": status},
                _content_type=MERGE,
            )
            self.counters["pod_status_writes"] += 1
        except ApiException as exc:
            if exc.status != 404:
                raise

    def annotate_wait(self, namespace: str, name: str, seconds: float) -> None:
        body = {"metadata": {"annotations": {IMAGE_WAIT: f"{seconds:.1f}"}}}
        try:
            send(self.core.patch_namespaced_pod, name, namespace, body, _content_type=MERGE)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        body = (
            {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
            if uid
            else {"gracePeriodSeconds": 0}
        )
        try:
            send(
                self.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0, body=body
            )
        except ApiException as exc:
            if exc.status == 404:
                return  # already gone
            # Anything else (429, 5xx, a 409 Conflict) is tried again while a pod with that
            # uid is there: not after a failed uid precondition (the name is another pod's).
            self._delete_failed(namespace, name, uid)
            raise
        except Exception:
            self._delete_failed(namespace, name, uid)  # e.g. the connection dropped
            raise

    def _delete_failed(self, namespace: str, name: str, uid: str) -> None:
        with self._failed_lock:
            self._failed_deletes[uid or f"{namespace}/{name}"] = (namespace, name, uid)

    def write_events(self, node: str, events: list[Event]) -> None:
        for event in events:
            now = rfc3339(event.at)
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{event.name}.{uuid.uuid4().hex[:16]}",
                    "namespace": event.namespace,
                },
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": event.kind,
                    "name": event.name,
                    "namespace": event.namespace if event.kind == "Pod" else "",
                    "uid": event.uid,
                },
                "reason": event.reason,
                "message": event.message,
                "type": event.type,
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet",
                "reportingInstance": node,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            try:
                send(self.core.create_namespaced_event, event.namespace, body)
                self.counters["events"] += 1
            except ApiException as exc:
                if exc.status not in (404, 409, 403):
                    raise

    def write_node_status(self, name: str, status: JSON) -> None:
        try:
            send(self.core.patch_node_status, name, {"status": status}, _content_type=MERGE)
            self.counters["node_status_writes"] += 1
        except ApiException as exc:
            if exc.status != 404:
                raise

    def ensure_lease_namespace(self) -> None:
        try:
            send(self.core.create_namespace, {"metadata": {"name": LEASE_NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                log.debug("cannot create %s: %s", LEASE_NAMESPACE, exc)
                return
        self.lease_namespace_ready = True

    def renew_lease(self, node: JSON, now: float) -> None:
        name = node["metadata"]["name"]
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": rfc3339_micro(now)}
        try:
            send(
                self.coordination.patch_namespaced_lease,
                name,
                LEASE_NAMESPACE,
                {"spec": spec},
                _content_type=MERGE,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": name,
                            "uid": node["metadata"].get("uid", ""),
                        }
                    ],
                },
                "spec": spec,
            }
            try:
                send(self.coordination.create_namespaced_lease, LEASE_NAMESPACE, body)
            except ApiException as again:
                if again.status != 409:
                    raise
        self.counters["lease_writes"] += 1

    def adopt_node(self, node: JSON) -> None:
        """Add the labels a kubelet registers with, if whoever created the Node left them out."""
        config = config_from_node(node)
        labels = (node.get("metadata") or {}).get("labels") or {}
        missing = {k: v for k, v in config.all_labels().items() if k not in labels}
        if missing:
            try:
                send(
                    self.core.patch_node,
                    config.name,
                    {"metadata": {"labels": missing}},
                    _content_type=MERGE,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def mark_not_ready(self, name: str, node: JSON, now: float) -> None:
        """What the node lifecycle controller does when a kubelet stops posting status."""
        status = {
            "conditions": [
                {
                    "type": kind,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastHeartbeatTime": rfc3339(now),
                    "lastTransitionTime": rfc3339(now),
                }
                for kind in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
            ]
        }
        self.write_node_status(name, status)
        taints = [
            t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNREACHABLE
        ]
        taints += [
            {"key": UNREACHABLE, "effect": "NoSchedule"},
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(now)},
        ]
        send(self.core.patch_node, name, {"spec": {"taints": taints}}, _content_type=MERGE)

    def clear_not_ready(self, node: JSON) -> None:
        taints = [
            t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNREACHABLE
        ]
        send(
            self.core.patch_node,
            node["metadata"]["name"],
            {"spec": {"taints": taints or None}},
            _content_type=MERGE,
        )

    @staticmethod
    def has_pressure_taint(node: JSON) -> bool:
        taints = (node.get("spec") or {}).get("taints") or []
        return any(t.get("key") == DISK_PRESSURE for t in taints)

    def set_pressure_taint(self, node: JSON, pressure: bool) -> None:
        """Taint or untaint the node as TaintNodesByCondition does for DiskPressure."""
        taints = [
            t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != DISK_PRESSURE
        ]
        if pressure:
            taints.append({"key": DISK_PRESSURE, "effect": "NoSchedule"})
        try:
            send(
                self.core.patch_node,
                node["metadata"]["name"],
                {"spec": {"taints": taints or None}},
                _content_type=MERGE,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
