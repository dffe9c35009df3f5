"""A simulated node's containers: image check per pull policy, start, exit, restart, pod phase."""

from __future__ import annotations

import hashlib

from simulator.imagepulls import ImagePulls
from simulator.podstate import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONTAINER_START_SECONDS,
    ERR_IMAGE_PULL_SECONDS,
    NEVER_PULL_RECHECK,
    Container,
    Pod,
)


class ContainerLifecycle(ImagePulls):
    """Steps each pod's containers through the states the real kubelet reports."""

    def _ensure_image(self, pod: Pod, container: Container, now: float) -> None:
        """EnsureImageExists: decide, per pull policy, whether the container can be created."""
        if container.image_ready or container.pull_pending:
            return
        if (
            container.reason == "ErrImageNeverPull"
            and now - container.never_checked_at < NEVER_PULL_RECHECK
        ):
            return  # the pod's sync failed; the kubelet looks again after its back-off
        if container.reference is None:
            message = (
                f'Failed to apply default image tag "{container.image}": couldn\'t parse image name '
                f'"{container.image}": invalid reference format'
            )
            if container.reason != "InvalidImageName":
                self._event(pod, "InspectFailed", message, now, "Warning")
                self._event(pod, "Failed", "Error: InvalidImageName", now, "Warning")
            self._waiting(pod, container, "InvalidImageName", message)
            return
        stored = self.store.find(container.reference)
        policy = container.pull_policy
        verified = stored is not None and self.credentials_verified(pod, stored)
        if policy != "Always" and stored is not None and verified:
            if container.pull_wanted_at is None:
                self._event(
                    pod,
                    "Pulled",
                    f'Container image "{container.image}" already present on machine',
                    now,
                )
            self._image_ready(pod, container, stored.image_id, now)
            container.start_at = now + CONTAINER_START_SECONDS
            return
        if policy == "Never":
            if (
                now - container.never_checked_at >= NEVER_PULL_RECHECK
                or container.reason != "ErrImageNeverPull"
            ):
                message = (
                    f'Container image "{container.image}" is not present with pull policy of Never'
                    if stored is None
                    else f'Container image "{container.image}" was pulled with credentials the '
                    "pod does not have, and its pull policy is Never"
                )
                if container.reason != "ErrImageNeverPull":
                    self._event(pod, "ErrImageNeverPull", message, now, "Warning")
                    self._event(pod, "Failed", "Error: ErrImageNeverPull", now, "Warning")
                container.never_checked_at = now
                self._waiting(pod, container, "ErrImageNeverPull", message)
            return
        if container.failed_at is not None:
            shown = (
                container.error_published and now >= container.failed_at + ERR_IMAGE_PULL_SECONDS
            )
            if container.reason == "ErrImagePull" and not shown and now < container.backoff_until:
                return  # ErrImagePull is shown (written at least once) before the back-off
            if now < container.backoff_until:
                message = f'Back-off pulling image "{container.image}": ErrImagePull: {container.last_error}'
                if container.reason != "ImagePullBackOff":
                    self._event(pod, "BackOff", f'Back-off pulling image "{container.image}"', now)
                self._waiting(pod, container, "ImagePullBackOff", message)
                return
        self._request_pull(pod, container, now)

    def _waiting(self, pod: Pod, container: Container, reason: str, message: str = "") -> None:
        if (
            container.state != "waiting"
            or container.reason != reason
            or container.message != message
        ):
            container.state = "waiting"
            container.reason = reason
            container.message = message
            pod.dirty = True

    def _start(self, pod: Pod, container: Container, at: float) -> None:
        container.state = "running"
        container.reason = ""
        container.message = ""
        container.started_at = at
        container.finished_at = None
        container.restart_at = None
        container.container_id = (
            "containerd://"
            + hashlib.sha256(
                f"{pod.uid}/{container.name}/{container.restart_count}".encode()
            ).hexdigest()
        )
        self._event(pod, "Created", f"Created container {container.name}", at)
        self._event(pod, "Started", f"Started container {container.name}", at)
        pod.dirty = True

    def _terminate(self, pod: Pod, container: Container, at: float, exit_code: int) -> None:
        container.state = "terminated"
        container.finished_at = at
        container.exit_code_seen = exit_code
        container.reason = "Completed" if exit_code == 0 else "Error"
        pod.dirty = True

    def _step_container_run(
        self, pod: Pod, container: Container, now: float, blocked: bool = False
    ) -> None:
        """Created → running → exited, including restarts by restartPolicy.

        `blocked`: the pod's sync is waiting for an image pull, so a container due to
        restart is not restarted yet.
        """
        if container.state == "waiting" and container.image_ready and container.restart_at is None:
            start = container.start_at if container.start_at is not None else now
            if start <= now:
                self._start(pod, container, start)
        if container.state == "running" and container.run_seconds is not None:
            assert container.started_at is not None
            end = container.started_at + container.run_seconds
            if end <= now:
                self._terminate(pod, container, end, container.exit_code)
        if container.state == "terminated" and not container.init and not pod.deleting:
            failed = container.exit_code_seen != 0
            restart = pod.restart_policy == "Always" or (
                pod.restart_policy == "OnFailure" and failed
            )
            if not restart:
                return
            assert container.finished_at is not None
            container.last_exit = container._terminated()
            container.crash_backoff = (
                0.0
                if container.restart_count == 0
                else min(BACKOFF_MAX, max(BACKOFF_INITIAL, container.crash_backoff * 2))
            )
            container.restart_at = container.finished_at + container.crash_backoff
            container.restart_count += 1
            container.state = "waiting"
            container.reason = "CrashLoopBackOff"
            container.message = (
                f"back-off {int(container.crash_backoff)}s restarting failed container={container.name} "
                f"pod={pod.name}_{pod.namespace}({pod.uid})"
            )
            pod.dirty = True
        if (
            not blocked
            and container.state == "waiting"
            and container.restart_at is not None
            and container.restart_at <= now
        ):
            restart_at = container.restart_at
            container.restart_at = None
            container.image_ready = False  # re-checked per pull policy, like a real restart
            container.start_at = None
            self._ensure_image(pod, container, restart_at)  # started on the next step

    def _step_pod(self, pod: Pod, now: float) -> None:
        pod.stepped = True
        if pod.deleted or pod.terminal or pod.deleting or pod.steady:
            return
        if pod.deadline is not None and now - pod.seen_at >= pod.deadline:
            self._kill(pod, "deadline", now)
            pod.phase = "Failed"
            pod.reason = "DeadlineExceeded"
            pod.message = "Pod was active on the node longer than the specified deadline"
            self._event(pod, "DeadlineExceeded", pod.message, now, "Normal")
            pod.dirty = True
            return
        # Init containers, one after the other.
        for container in pod.init_containers:
            if container.state == "terminated" and container.exit_code_seen == 0:
                continue
            if container.state == "terminated":
                if pod.restart_policy == "Never":
                    self._finish(pod, "Failed")
                    return
                container.state = "waiting"
                container.image_ready = False
            self._ensure_image(pod, container, now)
            self._step_container_run(pod, container, now)
            if not (container.state == "terminated" and container.exit_code_seen == 0):
                self._refresh_phase(pod, now)
                return
        # The kubelet's SyncPod starts the containers one after another, and each start
        # waits in EnsureImageExists until its image is pulled or the pull failed: at most
        # one pull of the pod is queued or in flight, and nothing else of the pod starts
        # meanwhile. A failed pull does not stop the loop (its back-off is for later syncs).
        blocked = any(c.pull_pending for c in pod.containers)
        for container in pod.containers:
            if not blocked and container.state == "waiting" and container.restart_at is None:
                self._ensure_image(pod, container, now)
                blocked = container.pull_pending
            self._step_container_run(pod, container, now, blocked)
        if pod.image_wait_done is None and all(
            c.image_ready or c.state != "waiting" for c in pod.all_containers()
        ):
            regular = (
                pod.regular_wait_until - pod.regular_wait_from
                if pod.regular_wait_from is not None and pod.regular_wait_until is not None
                else 0.0
            )
            pod.image_wait_done = sum(c.image_wait for c in pod.init_containers) + regular
        self._refresh_phase(pod, now)
        # Nothing changes for a pod whose containers all run until deleted: skip it from now on.
        pod.steady = (
            pod.deadline is None
            and bool(pod.containers)
            and all(c.state == "running" and c.run_seconds is None for c in pod.containers)
        )

    def _kill(self, pod: Pod, why: str, at: float) -> None:
        for job in self.queue + self.active:
            job.waiters = [w for w in job.waiters if w[0] != pod.uid]
        self._cancel_abandoned_pulls()
        for container in pod.all_containers():
            if container.state == "running":
                self._event(pod, "Killing", f"Stopping container {container.name}", at)
                self._terminate(pod, container, at, 137)
            elif container.state == "waiting":
                container.restart_at = None
        if why == "deleted":
            self.deletions.append((pod.namespace, pod.name, pod.uid))
            pod.deleted = True
        pod.dirty = True

    def _finish(self, pod: Pod, phase: str) -> None:
        pod.phase = phase
        pod.dirty = True

    def _refresh_phase(self, pod: Pod, now: float) -> None:
        del now
        if any(
            not (c.state == "terminated" and c.exit_code_seen == 0) for c in pod.init_containers
        ):
            phase = "Pending"
        else:
            running = waiting = stopped = succeeded = failed = 0
            for c in pod.containers:
                if c.state == "running":
                    running += 1
                elif c.state == "terminated":
                    stopped += 1
                    if c.exit_code_seen == 0:
                        succeeded += 1
                    else:
                        failed += 1
                elif c.last_exit is not None:
                    stopped += 1
                else:
                    waiting += 1
            if waiting > 0:
                phase = "Pending"
            elif running > 0:
                phase = "Running"
            elif stopped > 0:
                if pod.restart_policy == "Always":
                    phase = "Running"
                elif pod.restart_policy == "OnFailure":
                    phase = (
                        "Succeeded"
                        if stopped == succeeded
                        and all(c.state == "terminated" for c in pod.containers)
                        else "Running"
                    )
                else:
                    phase = "Failed" if failed else "Succeeded"
            else:
                phase = "Pending"
        if phase != pod.phase:
            pod.phase = phase
            pod.dirty = True
