"""Where images are learned besides the webhook: running pods, workload templates, sources."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from imagesync.cachedimage import (
    PlacementProfile,
    format_time,
    merge_profiles,
    new_cached_image,
    object_name,
    profile_from_pod,
)
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from imagesync.mutation import decide
from imagesync.names import LABEL_MANAGED_BY, MANAGED_BY
from prefetcher import observe, presence
from prefetcher.confirmation import StoredPodImages, confirmation_patches
from prefetcher.demandwatch import DemandWatch
from prefetcher.executor import PassInfo, Stopped
from prefetcher.informer import Clock, Informer, Obj
from prefetcher.kube import Kube
from prefetcher.learning import learn_writes
from prefetcher.metrics import Metrics
from prefetcher.model import Snapshot
from prefetcher.snapshot import NODES, PODS
from prefetcher.sources.sync import SourceSync

# The controller's logger: admins filter the prefetcher's learning by it.
log = logging.getLogger("prefetcher.controller")

T = TypeVar("T")


class ImageLearners:
    """The Controller's learning writes, each run by a pass: legacy clean-up, sources,
    templates, confirmations and the one scan of running pods."""

    kube: Kube
    config: Config
    clock: Clock
    metrics: Metrics
    nodes: Informer
    images: Informer
    pods: Informer
    demand: DemandWatch
    sources: SourceSync
    stored_pods: StoredPodImages
    _snapshot_lock: threading.Lock
    _memo: dict[str, dict[str, tuple[str, Any]]]
    _confirming: dict[str, set[str]]
    _excluded_loaded: bool
    _scanned_running: bool
    _legacy_cleared: bool

    if TYPE_CHECKING:

        def _guard(self, kind: str) -> None: ...

        def _record_error(self, what: str, error: KubeError) -> None: ...

        def _run_batch(
            self,
            kind: str,
            actions: list[Callable[[], bool]],
            info: PassInfo,
            budget: float | None = None,
        ) -> int: ...

        def _create_image(self, body: Mapping[str, Any]) -> bool: ...

        def _converted(
            self, kind: str, objs: list[Obj], convert: Callable[[Obj], T]
        ) -> list[T]: ...

    # --- an upgrade leaves no pods in the old namespace -----------------------------------

    def _clear_legacy_pods(self, info: PassInfo) -> None:
        """Delete the puller and keeper pods an older release ran in our own namespace.

        Releases before the pod namespace created them next to the prefetcher; nothing else
        would ever delete them (their names are not planned any more, and a Node's deletion
        only collects the pods of that node). Their images stay on the nodes and are found
        present again by the new keepers' and pullers' no-op pulls. Once none is left, never
        looked at again.
        """
        deleted = 0
        try:
            pods = self.kube.legacy_pods()
            for pod in pods:
                meta = pod["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                self._guard("delete legacy pod")
                if self.kube.delete_pod(
                    str(meta["name"]), str(meta.get("uid") or ""), namespace=self.kube.namespace
                ):
                    deleted += 1
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("delete pods left in the old namespace (retried next pass)", exc)
            return
        finally:
            if deleted:
                info.actions["delete legacy pod"] = deleted
                log.info(
                    "deleted %d puller / keeper pod(s) left in %s by an older release",
                    deleted,
                    self.kube.namespace,
                )
        self._legacy_cleared = not pods

    # --- Observed and Catalog sources ----------------------------------------------------

    def _sync_sources(self, info: PassInfo) -> None:
        """Write the Observed and Catalog CachedImages the sources want now; the watch then
        brings them into the snapshot (this pass or the next)."""
        with self._snapshot_lock:
            nodes = self._converted(NODES, self.nodes.items(), observe.node_info)
            pods = (
                self._converted(PODS, self.pods.items(), observe.managed_pod)
                if self.sources.observing
                else []
            )
        # What our own pods hold is not Observed: read only when the Observed source is on
        # (every puller's results, each pass: a tenth of a pass at a thousand nodes).
        ours = presence.present_images(pod for pod in pods if pod is not None)
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        writes = self.sources.writes(nodes, self.images.items(), now, ours)
        self.metrics.observe_sources(self.sources.observed_count, len(self.sources.nodes_at_cap))
        if not writes:
            return
        kube = self.kube
        self._run_batch(
            "create image", [partial(self._create_image, b) for b in writes.creates], info
        )
        self._run_batch(
            "patch image",
            [partial(kube.patch_cached_image_spec, n, p) for n, p in writes.spec_patches],
            info,
        )
        self._run_batch(
            "update status",
            [partial(kube.patch_cached_image_status, n, p) for n, p in writes.status_patches],
            info,
        )
        self._run_batch(
            "delete image",
            [partial(kube.delete_cached_image, n, u) for n, u in writes.deletes],
            info,
        )

    # --- images known before their pods: workload templates --------------------------------

    def _load_excluded(self, info: PassInfo) -> None:
        """The namespaces that opted out (their templates teach nothing); kept on errors."""
        try:
            excluded = self.demand.left_out(self.kube.excluded_namespaces())
            self._excluded_loaded = True
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("list excluded namespaces (retried next pass)", exc)
            return
        if excluded != self.demand.excluded:
            self.demand.excluded = excluded
            for kind in self.demand.templates:  # their conversions depend on the set
                self._memo.pop(kind, None)

    def _learn_templates(self, snapshot: Snapshot, info: PassInfo) -> None:
        """Create or complete the CachedImages of template images (no write once known);
        not before the namespaces that opted out are known."""
        if not self.config.learn_templates or not self._excluded_loaded:
            return
        stamp = format_time(snapshot.now)
        actions: list[Callable[[], bool]] = []
        for write in learn_writes(snapshot.demand.workloads, self.images.items(), stamp):
            if write.body is not None:
                actions.append(partial(self._create_image, write.body))
            else:
                actions.append(
                    partial(
                        self.kube.patch_cached_image_profiles,
                        write.name,
                        list(write.profiles),
                        write.resource_version,
                    )
                )
        self._run_batch("learn image", actions, info)

    # --- learned images: confirmed by stored pods; a fresh install learns from running pods

    def _confirm_learned(self, info: PassInfo) -> None:
        """Write the namespaces where stored pods or stored workload templates (as the last
        snapshot found them) used each Learned image into its status, so the image stays
        confirmed after a rollout drops it (it is then released, not forgotten) and a
        restarted or new leader knows them too."""
        stamp = format_time(datetime.fromtimestamp(self.clock.now(), UTC))
        seen = self._confirming
        patches = confirmation_patches(self.images.items(), seen, stamp) if seen else []
        with contextlib.suppress(Stopped):
            self._run_batch(
                "confirm image",
                [partial(self.kube.patch_cached_image_status, name, p) for name, p in patches],
                info,
            )

    def _scan_running_pods(self, info: PassInfo) -> None:
        """Once: running pods confirm the images they use (an upgrade keeps every image in
        use); with `learnRunningPods`, images without a CachedImage are created as well.

        The webhook learns from pods as they are created; pods that started before image-sync
        was installed would otherwise stay unknown until they are re-created. An image that
        already has a CachedImage is left to the webhook.
        """
        now = self.clock.now()
        try:
            excluded = self.kube.excluded_namespaces()
            sightings: dict[str, list[PlacementProfile]] = {}
            for pod in self.kube.running_pods():
                self.stored_pods.observe(pod, now)
                meta = pod.get("metadata") or {}
                namespace = str(meta.get("namespace") or "")
                labels = meta.get("labels") or {}
                if namespace in excluded or labels.get(LABEL_MANAGED_BY) == MANAGED_BY:
                    continue
                if not self.config.learn_running_pods:
                    continue
                images = decide(pod, self.config).images
                if not images:
                    continue
                profile = profile_from_pod(pod, namespace)
                for image in images:
                    sightings.setdefault(image, []).append(profile)
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("scan running pods (retried next pass)", exc)
            return
        known = {str((obj.get("spec") or {}).get("image") or "") for obj in self.images.items()} | {
            str(obj["metadata"]["name"]) for obj in self.images.items()
        }
        moment = datetime.fromtimestamp(now, UTC)
        stamp = format_time(moment)
        for image, profiles in sorted(sightings.items()):
            if image in known or object_name(image) in known:
                continue
            seen: list[PlacementProfile] = []
            for profile in profiles:
                stamped = profile.copy()
                stamped["lastSeen"] = stamp
                seen.append(stamped)
            body = new_cached_image(image, merge_profiles([], seen))
            try:
                self._guard("learn image")
                version = self.kube.create_cached_image(body)
                if version:
                    info.actions["learn image"] = info.actions.get("learn image", 0) + 1
                    self._seed_usage(image, version, len(profiles), moment)
            except KubeError as exc:
                info.api_errors += 1
                self._record_error(f"learn {image}", exc)
                return
        self._scanned_running = True

    def _seed_usage(self, image: str, version: str, uses: int, now: datetime) -> None:
        """The first counts of an image just created, only onto the version created: if the
        webhook has written counts since, they stand (never overwritten)."""
        stamp = format_time(now)
        try:
            self.kube.patch_cached_image_status(
                object_name(image),
                {
                    "lastSeen": stamp,
                    "useCount": uses,
                    "dailyUses": {now.strftime("%Y-%m-%d"): uses},
                },
                resource_version=version,
            )
        except KubeError as exc:
            if not exc.conflict:
                raise
            log.info("not seeding the counts of %s: the webhook has written them", image)
