"""Core/v1 Events about our puller pods, as `kubectl describe pod` and `get events` show them.

Pure manifests; the adapter (`Kube.create_event`) sends them.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

EVENT_SOURCE = "image-sync-prefetcher"


def pull_failure_event(
    *,
    namespace: str,
    pod: str,
    pod_uid: str,
    node: str,
    image: str,
    reason: str,
    message: str,
    now: str,
) -> Obj:
    """A core/v1 Event on the failed puller pod, as `kubectl describe` and `get events` show it."""
    text = f"pull of {image} on node {node} failed: {reason}" + (f": {message}" if message else "")
    return puller_event(
        namespace=namespace,
        pod=pod,
        pod_uid=pod_uid,
        node=node,
        reason="PrefetchFailed",
        message=text,
        now=now,
        warning=True,
    )


def puller_event(
    *,
    namespace: str,
    pod: str,
    pod_uid: str,
    node: str,
    reason: str,
    message: str,
    now: str,
    warning: bool = False,
) -> Obj:
    """A core/v1 Event on one of our puller pods (`kubectl describe pod`, `get events`)."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod,
            "namespace": namespace,
            "uid": pod_uid,
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": EVENT_SOURCE, "host": node},
        "reportingComponent": EVENT_SOURCE,
        "reportingInstance": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
