"""The oracle: a cache policy that knows every future pod from time 0 — the physical upper
bound for any prefetcher.

Each node pulls, one image at a time through its kubelet queue, the images its node pool will
need in the next 6 hours, earliest next need first, as far as the same disk budget as
image-sync's allows
(`diskBudget` of the image filesystem, below the GC high threshold, less the images of the
workload pods bound to the node: an image they use counts once), within the same caps
(pulls per registry), and keeps what it pulled safe from image GC until no future pod of the
pool needs it. It pays the same bandwidth as everyone: what it cannot pull before the need
still misses. Pods get the webhook's pull-policy rewrite, as with image-sync.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imagesync.config import Config
from imagesync.mutation import ImageMatcher
from simulator.registry import Resolved
from simulator.scenario import NodePool
from simulator.scheduling import tolerates
from simulator.virtual.learner import admitted
from simulator.virtual.node import registry_host
from simulator.virtual.pods import IF_NOT_PRESENT, Container, Pod, PodSpec
from simulator.virtual.policy import Policy

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster
    from simulator.virtual.node import VirtualNode

RETRY_SECONDS = 60.0
# It prefetches only what is needed within this horizon: further ahead, a swap would evict
# something needed sooner (on a small disk it would pull the same images over and over).
HORIZON_SECONDS = 6 * 3600.0


def fits_pool(spec: PodSpec, pool: NodePool) -> bool:
    """Whether the pod could ever run on a node of the pool."""
    template = pool.template
    labels = template.all_labels()
    if any(labels.get(k) != v for k, v in spec.node_selector.items()):
        return False
    if spec.gpus > template.gpus:
        return False
    return all(
        tolerates(spec.tolerations, taint)
        for taint in template.taints
        if taint.get("effect") in ("NoSchedule", "NoExecute")
    )


class Oracle(Policy):
    """Pre-pulls each pool's future images, earliest need first, within the budget."""

    name = "oracle"

    def __init__(self, pods: Sequence[PodSpec], config: Config) -> None:
        self.pods = list(pods)
        self.config = config
        self.matcher = ImageMatcher(config)
        self.cluster: VirtualCluster | None = None
        self.needs: dict[str, dict[str, list[float]]] = {}  # pool → image → need times
        self.sizes: dict[str, int] = {}
        self.busy: dict[str, Pod] = {}  # node → its oracle puller
        self.failed_until: dict[tuple[str, str], float] = {}
        self.pinned: dict[str, set[str]] = {}  # node → image ids it keeps
        self.bound: dict[str, dict[str, tuple[str, ...]]] = {}  # node → workload pod → images
        self.targets: dict[str, list[str]] = {}
        self.budget_out: dict[str, set[str]] = {}
        self.per_registry: Counter[str] = Counter()
        self._serial = 0
        # The pool's upcoming needs at one moment (every idle node of a pool decides at once).
        self._upcoming: dict[str, tuple[float, list[tuple[float, str]]]] = {}
        self._pinned_from: dict[str, tuple[list[str], int]] = {}  # node → (targets, store version)
        self._budgets: dict[str, tuple[int, set[str]]] = {}  # node → _budget() while its pods stay
        # node → (upcoming, budget, pods) and the targets and left-out images chosen from them
        self._chosen: dict[
            str, tuple[list[tuple[float, str]], int, set[str], list[str], set[str]]
        ] = {}

    def attach(self, cluster: VirtualCluster) -> None:
        self.cluster = cluster
        for spec in self.pods:
            for pool in cluster.scenario.pools:
                if fits_pool(spec, pool):
                    for image in spec.images:
                        self.needs.setdefault(pool.name, {}).setdefault(image, []).append(spec.at)
        for images in self.needs.values():
            for times in images.values():
                times.sort()
        self._wake_all()

    def admit(self, spec: PodSpec) -> PodSpec:
        return admitted(spec, self.config, self.matcher)[0]

    def pod_created(self, pod: Pod) -> None:
        # A need was met (or missed): targets move on.
        self._wake_all()

    def pod_changed(self, pod: Pod) -> None:
        if pod.role == "workload":
            self._workload_changed(pod)
            return
        if self.busy.get(pod.node) is not pod:
            return
        if pod.ended or any(c.reason == "ErrImagePull" for c in pod.containers):
            self._pull_ended(pod)

    def node_added(self, node: VirtualNode) -> None:
        self._decide(node)

    def node_changed(self, node: VirtualNode, reason: str) -> None:
        self._decide(node)

    def targeted(self, node: str, image: str) -> bool:
        return image in self.targets.get(node, ())

    def left_out(self, node: str, image: str) -> bool:
        return image in self.budget_out.get(node, ())

    # -- choosing -------------------------------------------------------------------------
    def _size(self, node: VirtualNode, image: str) -> int | None:
        size = self.sizes.get(image)
        if size is None:
            assert self.cluster is not None
            now = self.cluster.loop.now
            resolved = node.registries.resolve(image, node.config.arch, now, node.config.os)
            if not isinstance(resolved, Resolved):
                return None  # not pushed yet (or not there): asked again at the next decision
            size = resolved.platform.disk_size
            self.sizes[image] = size
        return size or None

    def _workload_changed(self, pod: Pod) -> None:
        """A workload pod bound to a node or gone from it: the node's budget gives way to
        the images of those bound there."""
        assert self.cluster is not None
        if not pod.node:
            return
        on_node = self.bound.setdefault(pod.node, {})
        if pod.ended:
            if on_node.pop(pod.key, None) is None:
                return
        elif pod.key in on_node or pod.spec is None:
            return
        else:
            on_node[pod.key] = pod.spec.images
        self._budgets.pop(pod.node, None)
        node = self.cluster.nodes.get(pod.node)
        if node is not None:
            self._decide(node)

    def _budget(self, node: VirtualNode) -> tuple[int, set[str]]:
        """What the node's prefetched images may take beside its pods' images, and those
        (the same set object until a pod is bound there or leaves)."""
        kept = self._budgets.get(node.name)
        if kept is not None:
            return kept
        disk = node.config.disk
        high = node.config.gc.high_threshold / 100.0 * disk - node.config.system_disk_used
        pods = {image for images in self.bound.get(node.name, {}).values() for image in images}
        sizes = [self._size(node, image) for image in pods]
        taken = sum(size or 0 for size in sizes)
        budget = max(0, int(min(self.config.disk_budget * disk, high)) - taken), pods
        if None not in sizes:  # (an image not pushed yet may be by the next call)
            self._budgets[node.name] = budget
        return budget

    def _wake_all(self) -> None:
        assert self.cluster is not None
        for node in self.cluster.live_nodes():
            if node.name not in self.busy:
                self._decide(node)

    def _decide(self, node: VirtualNode) -> None:
        """Set the node's targets and pins; start its next pull if it is idle."""
        assert self.cluster is not None
        if node.removed or not node.ready:
            return
        now = self.cluster.loop.now
        upcoming = self._upcoming_needs(node.pool, now)
        budget, pods = self._budget(node)
        kept = self._chosen.get(node.name)
        if kept is not None and kept[0] is upcoming and kept[1] == budget and kept[2] is pods:
            targets, out = kept[3], kept[4]
        else:
            targets, out, all_sized = self._choose(node, upcoming, budget, pods)
            if all_sized:  # (an image not pushed yet may be by the next decision)
                self._chosen[node.name] = (upcoming, budget, pods, targets, out)
        self.targets[node.name] = targets
        self.budget_out[node.name] = out
        self._pin(node, targets)
        if node.name in self.busy:
            return
        for image in targets:
            if node.has(image) or self.failed_until.get((node.name, image), 0.0) > now:
                continue
            host = registry_host(image)
            if self.per_registry[host] >= self.config.max_pulls_per_registry:
                return
            self._start(node, image, host)
            return

    def _choose(
        self, node: VirtualNode, upcoming: list[tuple[float, str]], budget: int, pods: set[str]
    ) -> tuple[list[str], set[str], bool]:
        """The node's targets in order, the images its budget leaves out, and whether every
        upcoming image's size was known."""
        used = 0
        targets: list[str] = []
        out: set[str] = set()
        all_sized = True
        for _, image in upcoming:
            size = self._size(node, image)
            if size is None:
                all_sized = False
                continue
            if image in pods:  # on the disk for its pods: counted already
                targets.append(image)
                continue
            if used + size > budget:
                out.add(image)
                continue
            used += size
            targets.append(image)
        return targets, out, all_sized

    def _upcoming_needs(self, pool: str, now: float) -> list[tuple[float, str]]:
        """The pool's images needed within the horizon, by their next need after `now` (the
        same list object while it stays the same)."""
        kept = self._upcoming.get(pool)
        if kept is not None and kept[0] == now:
            return kept[1]
        upcoming = []
        for image, times in self.needs.get(pool, {}).items():
            index = bisect.bisect_right(times, now)
            if index < len(times) and times[index] <= now + HORIZON_SECONDS:
                upcoming.append((times[index], image))
        upcoming.sort()
        if kept is not None and kept[1] == upcoming:
            upcoming = kept[1]
        self._upcoming[pool] = (now, upcoming)
        return upcoming

    def _pin(self, node: VirtualNode, targets: list[str]) -> None:
        """Keep the targets present on the node safe from image GC, and only those (nothing
        to do while the targets and the node's images are those of the last call)."""
        version = node.store.version
        if self._pinned_from.get(node.name) == (targets, version):
            return
        self._pinned_from[node.name] = (targets, version)
        wanted = {i for i in (node.image_id(image) for image in targets) if i is not None}
        pinned = self.pinned.setdefault(node.name, set())
        for image_id in pinned - wanted:
            left = node.running_images.get(image_id, 0) - 1
            if left > 0:
                node.running_images[image_id] = left
            else:
                node.running_images.pop(image_id, None)
        for image_id in wanted - pinned:
            node.running_images[image_id] += 1
        self.pinned[node.name] = wanted

    def _start(self, node: VirtualNode, image: str, host: str) -> None:
        assert self.cluster is not None
        self._serial += 1
        containers = [Container(image, IF_NOT_PRESENT, exits=True)]
        self.per_registry[host] += 1
        self.busy[node.name] = self.cluster.own_pod(
            node.name, "puller", f"oracle-{self._serial}", containers, images=(image,)
        )

    def _pull_ended(self, pod: Pod) -> None:
        assert self.cluster is not None
        del self.busy[pod.node]
        image = pod.images[0]
        self.per_registry[registry_host(image)] -= 1
        self.cluster.delete_pod(pod)
        node = self.cluster.nodes[pod.node]
        if not node.has(image):
            self.failed_until[(node.name, image)] = self.cluster.loop.now + RETRY_SECONDS
            self.cluster.loop.after(RETRY_SECONDS, lambda: self._decide(node))
        self._wake_all()
