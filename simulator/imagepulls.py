"""A simulated node's image pulls: queue, transfers, failures, KEP-2535 credentials, image GC."""

from __future__ import annotations

from imagesync.reference import parse_reference
from simulator.imagestore import StoredImage
from simulator.nodestatus import StatusReporting
from simulator.podstate import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONTAINER_START_SECONDS,
    DISK_PRESSURE_CHECK,
    Container,
    Event,
    Pod,
    PullJob,
)
from simulator.registry import PullError, PullErrorKind


class ImagePulls(StatusReporting):
    """Pulls images for the node's containers and frees disk when it runs short."""

    def _step_pod(self, pod: Pod, now: float) -> None:
        """Moves a pod on once its pull is done; the container lifecycle defines it."""
        raise NotImplementedError

    # -- pulls -----------------------------------------------------------------------
    def _request_pull(self, pod: Pod, container: Container, now: float) -> None:
        assert container.reference is not None
        container.pull_pending = True
        container.pull_requested_at = now
        if container.pull_wanted_at is None:
            container.pull_wanted_at = now
        if not container.init and pod.regular_wait_from is None:
            pod.regular_wait_from = now
        for job in self.queue + self.active:
            if (
                job.reference == container.reference
                and job.secrets == pod.pull_secrets
                and (job.always or container.pull_policy != "Always")
            ):
                job.waiters.append((pod.uid, container.name))
                return
        job = PullJob(
            reference=container.reference,
            always=container.pull_policy == "Always",
            queued_at=now,
            secrets=pod.pull_secrets,
            waiters=[(pod.uid, container.name)],
        )
        # Like a priority pull queue: higher-priority pods first, otherwise in arrival order.
        index = len(self.queue)
        while index > 0 and self._job_priority(self.queue[index - 1]) < pod.priority:
            index -= 1
        self.queue.insert(index, job)

    def _cancel_abandoned_pulls(self) -> None:
        """A pull in flight that no container waits for any more (its pods were deleted) stops
        at once when the kubelet cancels pulls on deletion (`cancel_pull_on_delete`): the node's
        queue and the registry are free, the bytes fetched are lost. Otherwise it runs on, as
        a real kubelet's does."""
        if not self.config.cancel_pull_on_delete:
            return
        for job in [j for j in self.active if not j.waiters]:
            self.active.remove(job)
            self.end_bytes(job)

    def _job_priority(self, job: PullJob) -> int:
        return max((self.pods[u].priority for u, _ in job.waiters if u in self.pods), default=0)

    def _max_parallel(self) -> int:
        return self.config.parallel_pulls()

    def _run_pulls(self, now: float) -> None:
        cursor = self.now
        while True:
            for job in list(self.active):
                if not job.cached and self.registries.is_down(job.host, cursor):
                    # The connection drops when the registry goes away mid-download.
                    self._fail_pull(job, self.registries.unavailable_error(job.reference), cursor)
            while self.queue and len(self.active) < self._max_parallel():
                job = self.queue.pop(0)
                if not job.waiters:
                    continue
                self._start_pull(job, cursor)
            if not self.active:
                return
            # The next moment within (cursor, now] a pull's bytes begin or a pull finishes.
            next_at, first = None, None
            for job in self.active:
                t = self._next_moment(job, cursor)
                if next_at is None or t < next_at:
                    next_at, first = t, job
            if next_at is None or first is None or next_at > now:
                for job in list(self.active):
                    self._progress(job, cursor, now)
                    if not job.cached and self.registries.is_down(job.host, now):
                        self._fail_pull(job, self.registries.unavailable_error(job.reference), now)
                return
            for job in self.active:
                self._progress(job, cursor, next_at)
            cursor = next_at
            if first.cached or first.transferring:
                self._complete_pull(first, cursor)
            else:
                self._begin_bytes(first)

    def _rate(self, job: PullJob) -> float:
        """The registry's share, within the node's bandwidth split among its downloads (pulls
        whose bytes flow: a pull waiting for its manifest's round trip takes no bandwidth)."""
        downloads = sum(1 for j in self.active if j.transferring) or 1
        link = self.config.bandwidth / downloads
        return max(1.0, min(link, self.registries.share(job.host)))

    def _next_moment(self, job: PullJob, cursor: float) -> float:
        """When `job` next changes: its local check ends, its bytes begin, or its bytes end."""
        if job.cached:
            return max(cursor, job.local_until)
        if not job.transferring:
            return max(cursor, job.bytes_from)
        return cursor + max(0.0, job.total - job.done) / self._rate(job)

    def _progress(self, job: PullJob, start: float, end: float) -> None:
        if not job.transferring or end <= start:
            return
        if self.registries.is_down(job.host, end):
            return  # stalls; failed at the next check
        job.done = min(job.total, job.done + (end - start) * self._rate(job))

    def _begin_bytes(self, job: PullJob) -> None:
        """The manifest is in: the layers' bytes flow, sharing the registry's bandwidth."""
        job.transferring = True
        self.registries.begin_transfer(job.host)

    def end_bytes(self, job: PullJob) -> None:
        """The pull no longer takes a share of its registry (done, failed or cancelled)."""
        if job.transferring:
            job.transferring = False
            self.registries.end_transfer(job.host)

    def _start_pull(self, job: PullJob, now: float) -> None:
        job.started_at = now
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is not None:
                self._event(
                    pod, "Pulling", f'Pulling image "{self._container(pod, name).image}"', now
                )
        resolved = self.registries.resolve(
            job.reference, self.config.arch, now, self.config.os, secrets=job.secrets
        )
        if isinstance(resolved, PullError):
            self._fail_pull(job, resolved, now)
            return
        job.resolved = resolved
        job.host = parse_reference(resolved.reference).domain
        registry = self.registries.registries.get(job.host)
        latency = registry.latency if registry else 0.3
        stored = self.store.find(resolved.image_id)
        if stored is not None:
            job.cached = True  # Always: manifest checked, layers already here
            job.local_until = now + latency
            self.active.append(job)
            return
        size = resolved.platform.disk_size
        if not self.store.fits(size):
            self._collect(now, need_bytes=size)
        if not self.store.fits(size):
            self._fail_pull(
                job,
                PullError(
                    PullErrorKind.NO_SPACE,
                    f'rpc error: code = Unknown desc = failed to pull and unpack image "{resolved.reference}": '
                    f"failed to extract layer {resolved.platform.digest}: write /var/lib/containerd/"
                    "io.containerd.snapshotter.v1.overlayfs/snapshots: no space left on device",
                ),
                now,
            )
            return
        job.total = resolved.platform.compressed_size
        # The registry answers (token, manifests, config) before the first layer byte: a wait
        # of `latency` that uses none of the registry's or the node's bandwidth.
        job.bytes_from = now + latency
        self.active.append(job)

    def _complete_pull(self, job: PullJob, now: float) -> None:
        self.active.remove(job)
        self.end_bytes(job)
        assert job.resolved is not None
        if not job.cached and self.registries.is_down(job.host, now):
            self._fail_pull(job, self.registries.unavailable_error(job.reference), now)
            return
        if not job.cached and not self.store.fits(job.resolved.platform.disk_size):
            self._collect(now, need_bytes=job.resolved.platform.disk_size)
        stored = self.store.add(job.resolved, now)
        self._record_credentials(stored, job)
        self.node_dirty = True
        started = job.started_at if job.started_at is not None else now
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is None:
                continue
            container = self._container(pod, name)
            asked = container.pull_requested_at
            waited = now - (asked if asked is not None else started)
            self._event(
                pod,
                "Pulled",
                f'Successfully pulled image "{container.image}" in {now - started:.3f}s '
                f"({waited:.3f}s including waiting). Image size: {job.total or stored.size} bytes.",
                now,
            )
            self._image_ready(pod, container, stored.image_id, now)
        self._resume(job, now)

    def _record_credentials(self, stored: StoredImage, job: PullJob) -> None:
        """What the kubelet records of a successful pull (KEP-2535): an image that needed no
        credentials is every pod's; else the waiters' pull secrets, by namespace and name."""
        if not self.registries.needs_credentials(job.reference):
            stored.node_accessible = True
            return
        for uid, _ in job.waiters:
            pod = self.pods.get(uid)
            if pod is not None:
                stored.pulled_with.update((pod.namespace, s) for s in pod.pull_secrets)

    def credentials_verified(self, pod: Pod, stored: StoredImage) -> bool:
        """May `pod` use the present `stored` image without pulling? Always, unless the
        KubeletEnsureSecretPulledImages gate is on: then only an image every pod may use, or
        one pulled with a pull secret (same namespace and name) the pod names too."""
        if not self.config.ensure_secret_pulled_images or stored.node_accessible:
            return True
        return bool({(pod.namespace, s) for s in pod.pull_secrets} & stored.pulled_with)

    def _resume(self, job: PullJob, now: float) -> None:
        """The waiters' EnsureImageExists returned: their pods' syncs go on at once (the next
        container's pull is asked for now, not at the next tick)."""
        for uid in dict.fromkeys(uid for uid, _ in job.waiters):
            pod = self.pods.get(uid)
            if pod is not None:
                self._step_pod(pod, now)

    def _fail_pull(self, job: PullJob, error: PullError, now: float) -> None:
        if job in self.active:
            self.active.remove(job)
        self.end_bytes(job)
        for uid, name in job.waiters:
            pod = self.pods.get(uid)
            if pod is None:
                continue
            container = self._container(pod, name)
            container.pull_pending = False
            container.failed_at = now
            container.last_error = error.message
            container.backoff = (
                BACKOFF_INITIAL
                if not container.backoff
                else min(BACKOFF_MAX, container.backoff * 2)
            )
            container.backoff_until = now + container.backoff
            container.reason = "ErrImagePull"
            container.message = error.message
            container.error_published = False
            pod.dirty = True
            self._event(
                pod,
                "Failed",
                f'Failed to pull image "{container.image}": {error.message}',
                now,
                "Warning",
            )
            self._event(pod, "Failed", "Error: ErrImagePull", now, "Warning")
        self._resume(job, now)

    def _image_ready(self, pod: Pod, container: Container, image_id: str, now: float) -> None:
        container.pull_pending = False
        container.image_ready = True
        container.image_id = image_id
        container.backoff = 0.0
        container.last_error = ""
        if container.pull_wanted_at is not None:
            container.image_wait += now - container.pull_wanted_at
            if not container.init:
                until = pod.regular_wait_until
                pod.regular_wait_until = now if until is None else max(until, now)
        container.pull_wanted_at = None
        container.pull_requested_at = None
        container.start_at = now + CONTAINER_START_SECONDS
        pod.dirty = True

    def pulls_in_flight(self) -> list[str]:
        return [job.reference for job in self.active]

    # -- image GC ----------------------------------------------------------------------
    def images_in_use(self) -> tuple[set[str], set[str]]:
        """Image ids of running containers, and of exited containers not yet removed."""
        running: set[str] = set()
        exited: set[str] = set()
        for pod in self.pods.values():
            for c in pod.all_containers():
                if not c.image_id:
                    continue
                if c.state == "running" or (c.image_ready and c.state == "waiting"):
                    running.add(c.image_id)
                elif (c.state == "terminated" or c.last_exit) and not c.removed:
                    exited.add(c.image_id)
        for job in self.active:
            if job.resolved is not None:
                running.add(job.resolved.image_id)
        return running, exited - running

    def _collect(self, now: float, need_bytes: int = 0) -> None:
        running, exited = self.images_in_use()
        report = self.store.collect(now, running, exited, need_bytes=need_bytes)
        if report.exited_containers_removed:
            for pod in self.pods.values():
                for c in pod.all_containers():
                    if c.state == "terminated" or c.last_exit:
                        c.removed = True
        if report.removed:
            self.node_dirty = True
        if report.shortfall:
            self.events.append(
                Event(
                    "default",
                    self.config.name,
                    self.config.name,
                    "Node",
                    "FreeDiskSpaceFailed",
                    report.message,
                    "Warning",
                    now,
                )
            )

    def _image_gc(self, now: float) -> None:
        pressure = self.store.disk_pressure()
        if pressure != self._disk_pressure:
            self._disk_pressure = pressure
            self.node_dirty = True
        if self.store.gc_due(now) or (
            pressure and now - self._last_pressure_check >= DISK_PRESSURE_CHECK
        ):
            self._last_pressure_check = now
            self._collect(now)
            pressure = self.store.disk_pressure()
            if pressure != self._disk_pressure:
                self._disk_pressure = pressure
                self.node_dirty = True
