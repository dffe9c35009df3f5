"""What each of the prefetcher's informers lists and watches: the selectors that keep its caches small.

`Kube` carries these as methods (`kube.node_source()`); each returns the client's list call
with its fixed arguments bound, which the informer calls with its paging and watch
arguments. Kept apart from the adapter's reads and writes: these decide what the
prefetcher holds in memory, not how a call is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from imagesync.names import (
    CACHED_IMAGE_PLURAL,
    GROUP,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    MANAGED_POD_SELECTOR,
    VERSION,
)
from imagesync.templates import TemplateKind


class WatchSources:
    """The list calls of the informers, over the adapter's clients and pod namespace."""

    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    pod_namespace: str

    def node_source(self) -> Callable[..., Any]:
        return self.core.list_node

    def cached_image_source(self) -> Callable[..., Any]:
        def call(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(GROUP, VERSION, CACHED_IMAGE_PLURAL, **kw)

        return call

    def own_pod_source(self) -> Callable[..., Any]:
        def call(**kw: Any) -> Any:
            return self.core.list_namespaced_pod(
                self.pod_namespace, label_selector=MANAGED_POD_SELECTOR, **kw
            )

        return call

    def starting_pod_source(self) -> Callable[..., Any]:
        """Pods bound to a node but not running yet, cluster-wide: few at any moment, and
        while one starts its own pulls go first on that node."""

        def call(**kw: Any) -> Any:
            return self.core.list_pod_for_all_namespaces(
                field_selector="status.phase=Pending,spec.nodeName!=",
                label_selector=f"{LABEL_MANAGED_BY}!={MANAGED_BY}",
                **kw,
            )

        return call

    def template_source(self, kind: TemplateKind) -> Callable[..., Any]:
        """Objects of a kind with pod templates (apps/v1, batch/v1 or a custom group)."""

        def call(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.resource, **kw
            )

        return call

    def running_pod_source(self) -> Callable[..., Any]:
        """Workload pods running, cluster-wide: where each workload and image is needed."""

        def call(**kw: Any) -> Any:
            return self.core.list_pod_for_all_namespaces(
                field_selector="status.phase=Running",
                label_selector=f"{LABEL_MANAGED_BY}!={MANAGED_BY}",
                **kw,
            )

        return call

    def unscheduled_pod_source(self) -> Callable[..., Any]:
        """Pods not bound to a node yet: those the scheduler cannot place wait for capacity."""

        def call(**kw: Any) -> Any:
            return self.core.list_pod_for_all_namespaces(
                field_selector="status.phase=Pending,spec.nodeName=", **kw
            )

        return call
