"""The kubelets in virtual time: each bound pod's containers started one after another, each
waiting for its image per its pull policy (pulls through the node's serialized queue, failures
retried with the kubelet's image pull back-off, `Never` waiting for the image to appear), then
running for the pod's duration; a puller's containers exit at once, a keeper's run on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.virtual.loop import EventLoop
from simulator.virtual.node import PREFETCH, WORKLOAD, PullResult, VirtualNode
from simulator.virtual.pods import ALWAYS, NEVER, Container, Pod

CONTAINER_START_SECONDS = 1.0
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0

PodHook = Callable[[Pod], None]


@dataclass
class Kubelets:
    """Runs pods on their nodes; `on_change(pod)` after every state change a watcher would see."""

    loop: EventLoop
    nodes: dict[str, VirtualNode]
    on_change: PodHook
    _never_waiting: dict[str, dict[str, list[tuple[Pod, Container]]]] = field(default_factory=dict)

    def attach(self, node: VirtualNode) -> None:
        node.on_image_added.append(lambda ref, name=node.name: self._image_added(name, ref))  # type: ignore[misc]

    def start(self, pod: Pod) -> None:
        """The kubelet took in a pod bound to its node."""
        if pod.deadline is not None:
            self.loop.after(pod.deadline, lambda: self._deadline(pod))
        self._advance(pod)

    def delete(self, pod: Pod) -> None:
        """The pod goes: its waits end, its containers stop."""
        if pod.deleted:
            return
        node = self.nodes.get(pod.node)
        pod.deleted = True
        self._release(pod, node)
        pod.finished_at = pod.finished_at if pod.finished_at is not None else self.loop.now
        self._changed(pod)

    # -- containers -------------------------------------------------------------------
    def _advance(self, pod: Pod) -> None:
        """Start the next containers, in order, as far as their images allow."""
        node = self.nodes.get(pod.node)
        if node is None or pod.ended or node.removed:
            return
        while pod.next_container < len(pod.containers):
            container = pod.containers[pod.next_container]
            if container.state != "waiting" or container.retrying:
                pod.next_container += 1
                continue
            if container.job is not None or container.ready_at is not None:
                return  # pulling, or about to start
            if not self._ensure(pod, container, node):
                return
        self._all_started(pod)

    def _ensure(self, pod: Pod, container: Container, node: VirtualNode) -> bool:
        """EnsureImageExists; True to go on with the next container at once."""
        now = self.loop.now
        if container.wanted_at is None:
            container.wanted_at = now
        if container.policy != ALWAYS and node.has(container.image):
            self._present_run(pod, node)
            return False
        if container.policy == NEVER:
            if container.reason != "ErrImageNeverPull":
                container.reason = "ErrImageNeverPull"
                container.message = (
                    f'Container image "{container.image}" is not present with pull policy of Never'
                )
                self._changed(pod)
            self._never_waiting.setdefault(node.name, {}).setdefault(container.image, []).append(
                (pod, container)
            )
            pod.next_container += 1
            return True
        self._request(pod, container, node)
        return False

    def _request(self, pod: Pod, container: Container, node: VirtualNode) -> None:
        kind = WORKLOAD if pod.role == "workload" else PREFETCH

        def done(result: PullResult) -> None:
            self._pulled(pod, container, node, result)

        container.waiter = done
        job = node.pull(container.image, container.policy == ALWAYS, kind, done)
        if container.waiter is done:  # (a pull that failed at once has called back already)
            container.job = job
        if kind == WORKLOAD and job.kind == PREFETCH:
            container.joined_prefetch = True

    def _pulled(
        self, pod: Pod, container: Container, node: VirtualNode, result: PullResult
    ) -> None:
        job = container.job
        container.job = None
        container.waiter = None
        if pod.ended:
            return
        if job is not None and job.behind_prefetch and job.started is not None:
            container.behind_prefetch += job.started - job.queued
        if result.ok:
            self._image_ready(pod, container, node)
            return
        container.failures += 1
        container.failure_kinds.add(result.kind)
        container.backoff = (
            BACKOFF_INITIAL if not container.backoff else min(BACKOFF_MAX, container.backoff * 2)
        )
        container.reason = "ErrImagePull"
        container.message = result.message
        self._changed(pod)
        if not container.retrying:
            container.retrying = True
            pod.next_container += 1
            self._advance(pod)
        self.loop.after(container.backoff, lambda: self._retry(pod, container, node))

    def _retry(self, pod: Pod, container: Container, node: VirtualNode) -> None:
        if pod.ended or node.removed or container.state != "waiting" or container.job is not None:
            return
        if container.reason == "ErrImagePull":
            container.reason = "ImagePullBackOff"
            self._changed(pod)
        if node.has(container.image) and container.policy != ALWAYS:
            self._image_ready(pod, container, node)
            return
        self._request(pod, container, node)

    def _present_run(self, pod: Pod, node: VirtualNode) -> None:
        """The next containers whose images are already here start one a second, as the
        kubelet starts them; one event for the run (a list puller has hundreds)."""
        now = self.loop.now
        run: list[Container] = []
        for container in pod.containers[pod.next_container :]:
            if (
                container.state != "waiting"
                or container.retrying
                or container.job is not None
                or container.policy == ALWAYS
                or not node.has(container.image)
            ):
                break
            if container.wanted_at is None:
                container.wanted_at = now
            container.ready_at = now
            container.image_id = node.image_id(container.image)
            run.append(container)
            if not container.exits:
                break  # a long-running container: the pod's next step waits for it to start
        if len(run) <= 1:
            first = run[0] if run else pod.containers[pod.next_container]
            if not run:
                first.ready_at = now
                first.image_id = node.image_id(first.image)
            self.loop.after(
                CONTAINER_START_SECONDS, lambda: self._container_started(pod, first, node)
            )
            return
        for index, container in enumerate(run):
            container.ready_at = now + index * CONTAINER_START_SECONDS
        self.loop.after(
            len(run) * CONTAINER_START_SECONDS, lambda: self._run_started(pod, run, node)
        )

    def _run_started(self, pod: Pod, run: list[Container], node: VirtualNode) -> None:
        if pod.ended or node.removed:
            return
        for container in run:
            ready = container.ready_at if container.ready_at is not None else self.loop.now
            container.started_at = container.finished_at = ready + CONTAINER_START_SECONDS
            container.state = "terminated"
            container.reason = container.message = ""
            node.exited_images[container.image_id or container.image] += 1
        pod.next_container += len(run)
        self._changed(pod)
        self._advance(pod)

    def _image_ready(self, pod: Pod, container: Container, node: VirtualNode) -> None:
        container.ready_at = self.loop.now
        container.image_id = node.image_id(container.image)
        self.loop.after(
            CONTAINER_START_SECONDS, lambda: self._container_started(pod, container, node)
        )

    def _container_started(self, pod: Pod, container: Container, node: VirtualNode) -> None:
        if pod.ended or node.removed:
            return
        now = self.loop.now
        container.started_at = now
        container.reason = container.message = ""
        image_id = container.image_id or container.image
        if container.exits:
            container.state = "terminated"
            container.finished_at = now
            node.exited_images[image_id] += 1
        else:
            container.state = "running"
            node.running_images[image_id] += 1
        store_image = node.store.images.get(image_id)
        if store_image is not None:
            store_image.last_used = now
        self._changed(pod)
        if container.retrying:
            container.retrying = False
            if pod.next_container >= len(pod.containers):
                self._all_started(pod)
            return
        pod.next_container += 1
        self._advance(pod)

    def _all_started(self, pod: Pod) -> None:
        if pod.ended:
            return
        if pod.role == "keeper":
            # A keeper runs with the containers whose images are here; the others wait.
            if pod.phase == "Pending":
                pod.phase = "Running"
                self._changed(pod)
            return
        if any(c.state == "waiting" for c in pod.containers):
            return
        if pod.role == "puller":
            pod.phase = "Succeeded"
            pod.finished_at = self.loop.now
            self._changed(pod)
            return
        if pod.phase == "Pending":
            pod.phase = "Running"
            pod.running_at = self.loop.now
            self._changed(pod)
            if pod.run_seconds is not None:
                self.loop.after(pod.run_seconds, lambda: self._finish(pod))

    def _finish(self, pod: Pod) -> None:
        if pod.ended:
            return
        pod.phase = "Succeeded"
        pod.finished_at = self.loop.now
        self._release(pod, self.nodes.get(pod.node))
        self._changed(pod)

    def _deadline(self, pod: Pod) -> None:
        if pod.ended:
            return
        pod.phase = "Failed"
        pod.reason = "DeadlineExceeded"
        pod.message = "Pod was active on the node longer than the specified deadline"
        pod.finished_at = self.loop.now
        self._release(pod, self.nodes.get(pod.node))
        self._changed(pod)

    def _release(self, pod: Pod, node: VirtualNode | None) -> None:
        """Stop the pod's containers and withdraw its waits."""
        for container in pod.containers:
            if node is not None and container.job is not None and container.waiter is not None:
                node.withdraw(container.job, container.waiter)
            container.job = None
            container.waiter = None
            image_id = container.image_id or container.image
            if node is not None:
                if container.state == "running":
                    _decrement(node.running_images, image_id)
                elif container.state == "terminated" and container.exits and pod.deleted:
                    _decrement(node.exited_images, image_id)
            if container.state == "running":
                container.state = "terminated"
                container.finished_at = self.loop.now

    def _image_added(self, node_name: str, reference: str) -> None:
        waiting = self._never_waiting.get(node_name, {}).pop(reference, [])
        node = self.nodes[node_name]
        for pod, container in waiting:
            if not pod.ended and container.state == "waiting":
                self._image_ready(pod, container, node)
                container.retrying = True

    def _changed(self, pod: Pod) -> None:
        pod.version += 1
        self.on_change(pod)


def _decrement(counter: dict[str, int], key: str) -> None:
    left = counter.get(key, 0) - 1
    if left > 0:
        counter[key] = left
    else:
        counter.pop(key, None)
