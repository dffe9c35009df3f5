"""What a cache policy sees of a virtual run and may do in it: the hooks the cluster calls,
and the questions the miss classification asks it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.virtual.pods import PodSpec

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster
    from simulator.virtual.node import VirtualNode
    from simulator.virtual.pods import Pod


class Policy:
    """No cache policy: the kubelet pulls on demand. Subclasses override the hooks they need."""

    name = "none"

    def attach(self, cluster: VirtualCluster) -> None:
        """Called once, at time 0, with the nodes present."""

    def admit(self, spec: PodSpec) -> PodSpec:
        """The pod as stored after admission (image-sync's webhook rewrites pull policies)."""
        return spec

    def pod_created(self, pod: Pod) -> None:
        """A workload pod was created (before it is scheduled)."""

    def pod_changed(self, pod: Pod) -> None:
        """Any pod changed state (bound, a container changed, ended, deleted)."""

    def node_added(self, node: VirtualNode) -> None:
        """A node joined after the start."""

    def node_changed(self, node: VirtualNode, reason: str) -> None:
        """A node turned Ready / NotReady, or was cordoned / uncordoned."""

    def node_removed(self, node: VirtualNode) -> None:
        """A node left."""

    def targeted(self, node: str, image: str) -> bool:
        """Whether the policy had started or planned a prefetch of `image` to `node`."""
        return False

    def left_out(self, node: str, image: str) -> bool:
        """Whether the policy's disk budget left `image` out on `node`."""
        return False

    def known_at(self, image: str) -> float | None:
        """When the policy first knew of `image` (learned from a pod, or declared); None
        when it never did, or learns nothing."""
        return None

    def stats(self) -> dict[str, float]:
        """Counters for the table (e.g. planning passes)."""
        return {}
