"""The prefetcher's only door to the API server: typed reads, idempotent writes, KubeError out.

Everything the prefetcher reads or writes goes through `Kube`, through the real `kubernetes`
client. Objects travel as plain JSON dicts (`_preload_content=False`): the planner wants
dicts, and decoding a thousand Nodes into client models would cost more than planning them.
`ApiException` and transport errors stop here and become `KubeError`; every call is counted
per verb through `on_call`, so metrics and the report see the API traffic and its errors
(`prefetcher.kubecalls`).

Writes are idempotent: a 409 on create means the object already exists (names are
deterministic), a 404 on delete means it is already gone. The CachedImage writes are in
`prefetcher.kubeimages`; what each informer lists and watches is in `prefetcher.watchsources`;
the Events it sends are built in `prefetcher.events`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from imagesync.kubeclient import KubeError
from imagesync.names import (
    CACHED_IMAGE_PLURAL,
    GROUP,
    LABEL_ENABLED,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    MANAGED_POD_SELECTOR,
)
from imagesync.templates import BUILTIN_KINDS
from prefetcher.kubecalls import JSON_PATCH, REQUEST_TIMEOUT, Obj
from prefetcher.kubeimages import CachedImageCalls
from prefetcher.watchsources import WatchSources

# Every API call `Kube` makes (here and in prefetcher/kubeimages.py), as RBAC sees it: (apiGroup, resource, verb, scope), where
# scope is "cluster" (a ClusterRole), "namespace" (a Role in our own namespace: the Lease, and
# deleting pods an older release left there) or "pods" (a Role in the pod namespace: its
# puller and keeper pods and the Events about them). tests/prefetcher/test_rbac.py holds the
# manifests and the calls in those modules to exactly this set.
RBAC_CALLS: frozenset[tuple[str, str, str, str]] = frozenset(
    {
        ("", "nodes", "list", "cluster"),
        ("", "nodes", "watch", "cluster"),
        ("", "pods", "list", "cluster"),  # running pods once at start; starting pods; ours
        ("", "pods", "watch", "cluster"),
        ("", "namespaces", "list", "cluster"),  # namespaces that opted out
        (GROUP, CACHED_IMAGE_PLURAL, "list", "cluster"),
        (GROUP, CACHED_IMAGE_PLURAL, "watch", "cluster"),
        (GROUP, CACHED_IMAGE_PLURAL, "create", "cluster"),  # learned, observed, catalog
        (GROUP, CACHED_IMAGE_PLURAL, "patch", "cluster"),  # template profiles, observed pools
        (GROUP, CACHED_IMAGE_PLURAL, "delete", "cluster"),  # observed / catalog released
        (GROUP, f"{CACHED_IMAGE_PLURAL}/status", "patch", "cluster"),
        ("", "pods", "create", "pods"),
        ("", "pods", "delete", "pods"),
        ("", "events", "create", "pods"),
        ("", "pods", "delete", "namespace"),  # pods an older release ran here (upgrade)
        ("coordination.k8s.io", "leases", "get", "namespace"),
        ("coordination.k8s.io", "leases", "create", "namespace"),
        ("coordination.k8s.io", "leases", "update", "namespace"),
        ("", "secrets", "get", "pods"),  # imagePullSecrets (they live beside the pods)
        # Workload templates: images are known before any pod exists (list + watch only).
        *(
            (kind.group, kind.resource, verb, "cluster")
            for kind in BUILTIN_KINDS
            for verb in ("list", "watch")
        ),
    }
)
# Only with `startupTaint`: patching Nodes, granted by manifests/components/startup-taint.
STARTUP_TAINT_CALLS: frozenset[tuple[str, str, str, str]] = frozenset(
    {("", "nodes", "patch", "cluster")}  # remove the startup taint
)


class Kube(CachedImageCalls, WatchSources):
    """Reads and writes against one API server: our own namespace holds the Lease, the pod
    namespace (`pod_namespace`, the same one unless given) the puller and keeper pods."""

    # --- one-shot reads -------------------------------------------------------------------

    def running_pods(self, page_size: int = 500) -> Iterator[Obj]:
        """Every Running pod cluster-wide but our own, page by page (a fresh install learns
        from them). Our pullers and keepers confirm nothing and are left out by the server:
        a page of 500 of them, 200 containers each at 1,000 nodes x 200 images, took the
        restarted prefetcher to 1.2 GiB to decode."""
        token: str | None = None
        while True:
            kw: dict[str, Any] = {
                "field_selector": "status.phase=Running",
                "label_selector": f"{LABEL_MANAGED_BY}!={MANAGED_BY}",
                "limit": page_size,
            }
            if token:
                kw["_continue"] = token
            try:
                response = self._call(
                    "list", "pods", "list running pods", self.core.list_pod_for_all_namespaces, **kw
                )
            except KubeError as exc:
                if exc.gone and token:
                    token = None  # the continue token expired; the caller dedupes
                    continue
                raise
            body = json.loads(response.data)
            yield from body.get("items") or []
            token = (body.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def legacy_pods(self) -> list[Obj]:
        """Our puller and keeper pods in our own namespace, where releases before the pod
        namespace ran them (none once they are cleared, or when the two are one)."""
        if self.pod_namespace == self.namespace:
            return []
        response = self._call(
            "list",
            "pods",
            f"list pods left in {self.namespace}",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=MANAGED_POD_SELECTOR,
        )
        items: list[Obj] = json.loads(response.data).get("items") or []
        return items

    def excluded_namespaces(self) -> set[str]:
        """Namespaces labelled `image-sync.io/enabled=false` (left out, as by the webhook)."""
        response = self._call(
            "list",
            "namespaces",
            "list excluded namespaces",
            self.core.list_namespace,
            label_selector=f"{LABEL_ENABLED}=false",
        )
        items = json.loads(response.data).get("items") or []
        return {str(ns["metadata"]["name"]) for ns in items}

    # --- the leader-election Lease --------------------------------------------------------

    def read_lease(self, name: str, timeout: float | None = None) -> Obj | None:
        """Our Lease, or None when it does not exist yet; `timeout` bounds the whole call."""
        try:
            response = self._call(
                "get",
                "leases",
                f"get lease {self.namespace}/{name}",
                self.coordination.read_namespaced_lease,
                name,
                self.namespace,
                timeout=timeout or REQUEST_TIMEOUT,
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        lease: Obj = json.loads(response.data)
        return lease

    def write_lease(
        self, lease: Mapping[str, Any], create: bool, timeout: float | None = None
    ) -> bool:
        """Create or replace (with the resourceVersion it carries); False when we lost the race."""
        name = str(lease["metadata"]["name"])
        bound = timeout or REQUEST_TIMEOUT
        try:
            if create:
                self._call(
                    "create",
                    "leases",
                    f"create lease {self.namespace}/{name}",
                    self.coordination.create_namespaced_lease,
                    self.namespace,
                    dict(lease),
                    timeout=bound,
                )
            else:
                self._call(
                    "update",
                    "leases",
                    f"update lease {self.namespace}/{name}",
                    self.coordination.replace_namespaced_lease,
                    name,
                    self.namespace,
                    dict(lease),
                    timeout=bound,
                )
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        return True

    # --- writes ---------------------------------------------------------------------------

    def create_pod(self, manifest: Mapping[str, Any]) -> bool:
        """Create one of our pods; False when it already exists (deterministic names)."""
        name = (manifest.get("metadata") or {}).get("name", "")
        try:
            self._send(
                "create",
                "pods",
                f"create pod {self.pod_namespace}/{name}",
                "POST",
                f"/api/v1/namespaces/{quote(self.pod_namespace)}/pods",
                dict(manifest),
            )
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        return True

    def delete_pod(self, name: str, uid: str = "", namespace: str = "") -> bool:
        """Delete one of our pods (in the pod namespace unless `namespace`), only if it still
        has `uid`; False when already gone."""
        namespace = namespace or self.pod_namespace
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._send(
                "delete",
                "pods",
                f"delete pod {namespace}/{name}",
                "DELETE",
                f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}",
                body,
            )
        except KubeError as exc:
            # 404: gone already. 409: the uid precondition failed, a namesake replaced it.
            if exc.not_found or exc.conflict:
                return False
            raise
        return True

    def read_secret(self, name: str) -> Obj | None:
        """A pull secret (in the pod namespace, where the pullers use it too), to read
        registry catalogs; None when absent."""
        try:
            response = self._call(
                "get",
                "secrets",
                f"get secret {self.pod_namespace}/{name}",
                self.core.read_namespaced_secret,
                name,
                self.pod_namespace,
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return dict(json.loads(response.data))

    def create_event(self, event: Mapping[str, Any]) -> None:
        """Record a core/v1 Event (pull failures); in the pod namespace unless it says otherwise."""
        namespace = (event.get("metadata") or {}).get("namespace") or self.pod_namespace
        self._call(
            "create",
            "events",
            f"create event in {namespace}",
            self.core.create_namespaced_event,
            namespace,
            dict(event),
        )

    def remove_taint(self, node: Mapping[str, Any], key: str) -> bool:
        """Drop taint `key` from `node`; a JSON patch whose `test` fails if the taints changed.

        False when the taint is no longer there (or the node is gone); a changed taint list
        raises a KubeError (422) and the next pass retries with fresh data.
        """
        name = str(node["metadata"]["name"])
        taints = list((node.get("spec") or {}).get("taints") or [])
        kept = [t for t in taints if t.get("key") != key]
        if len(kept) == len(taints):
            return False
        patch: list[Obj] = [{"op": "test", "path": "/spec/taints", "value": taints}]
        patch.append(
            {"op": "replace", "path": "/spec/taints", "value": kept}
            if kept
            else {"op": "remove", "path": "/spec/taints"}
        )
        try:
            self._call(
                "patch",
                "nodes",
                f"remove taint {key} from node {name}",
                self.core.patch_node,
                name,
                patch,
                _content_type=JSON_PATCH,
            )
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True
