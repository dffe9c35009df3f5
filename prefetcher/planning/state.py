"""The working state of one planning step, filled stage by stage and never shared."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import chain, repeat
from typing import TYPE_CHECKING, NamedTuple, cast, overload

from imagesync.config import Config
from prefetcher import pods, presence
from prefetcher.model import (
    BudgetExclusion,
    CellState,
    ImageSummary,
    KeeperAction,
    ManagedPod,
    NodeInfo,
    PodDeletion,
    PullAction,
    PullKey,
    PullOutcome,
    PullRecord,
    Snapshot,
    StartingPod,
    StatusUpdate,
    TaintRemoval,
)
from prefetcher.planning.demand import DemandIndex
from prefetcher.planning.images import MergedImage
from prefetcher.planning.reading import PullerReading, read_puller
from prefetcher.planning.targets import NodeTarget
from prefetcher.planning.timing import in_quiet_hours

if TYPE_CHECKING:
    from prefetcher.planning.pullers import Finished

ReadFinished = Callable[["PlanState", ManagedPod], "Finished | None"]
ImageStatus = tuple[tuple[StatusUpdate, ...], ImageSummary]
MakeImageStatus = Callable[[MergedImage, tuple[int, ...], str], ImageStatus]


class KeeperWait(NamedTuple):
    """Whether a node's new keeper may wait for its node's pulls (it only adds images its
    pullers hold), and the earliest pull time of the images it adds."""

    deferrable: bool
    earliest: datetime | None  # among the added images with a pull time
    untimed: bool  # some added image has no pull time (it counts as pulled now)


NO_WAIT = KeeperWait(False, None, False)


class PulledTimes:
    """When each (node, image) was pulled, as the pullers said it, the last one read winning:
    kept as each puller's own mapping, so a finished puller's (remembered between passes)
    is not copied pair by pair every pass."""

    def __init__(self) -> None:
        self._by_node: dict[str, list[Mapping[PullKey, datetime]]] = {}

    def add(self, node: str, times: Mapping[PullKey, datetime]) -> None:
        """Note `times`, all of `node`'s pairs (kept as they are: not to be changed)."""
        self._by_node.setdefault(node, []).append(times)

    def earliest_known(self, node: str, images: Iterable[str]) -> tuple[datetime | None, bool]:
        """The earliest pull time of `images` on `node` among those that have one (None when
        none has), and whether any has none."""
        parts = self._by_node.get(node, ())
        if len(parts) == 1:
            found = list(map(parts[0].get, zip(repeat(node), images)))
        else:
            found = [self.get((node, image), None) for image in images]
        known = [moment for moment in found if moment is not None]
        return min(known, default=None), len(known) < len(found)

    def parts(self, node: str) -> Sequence[Mapping[PullKey, datetime]]:
        """The mappings `node`'s pull times come from (each puller's own, unchanged)."""
        return self._by_node.get(node, ())

    @overload
    def get(self, key: PullKey, default: datetime) -> datetime: ...
    @overload
    def get(self, key: PullKey, default: None) -> datetime | None: ...

    def get(self, key: PullKey, default: datetime | None) -> datetime | None:
        for times in reversed(self._by_node.get(key[0], ())):
            found = times.get(key)
            if found is not None:
                return found
        return default


class PullingPairs:
    """The (node, image) pairs the pullers in flight pull, kept per node as its puller's own
    set of pending images (a thousand pullers of 100 images each: not copied pair by pair
    every pass, and a node whose puller is the same object keeps the same set)."""

    def __init__(self) -> None:
        self.by_node: dict[str, frozenset[str]] = {}

    def add(self, node: str, images: frozenset[str]) -> None:
        have = self.by_node.get(node)
        self.by_node[node] = images if have is None else have | images

    def on(self, node: str) -> frozenset[str]:
        """The images pulled on `node` now."""
        return self.by_node.get(node, _NONE)

    def __contains__(self, key: object) -> bool:
        node, image = cast(PullKey, key)
        images = self.by_node.get(node)
        return images is not None and image in images


_NONE: frozenset[str] = frozenset()


class PlanState:
    """Inputs sorted for determinism, the earlier stages' results, and the decisions so far."""

    def __init__(
        self,
        snapshot: Snapshot,
        config: Config,
        *,
        nodes: list[NodeInfo],
        images: list[MergedImage],
        targets: dict[str, NodeTarget],
        pods: list[ManagedPod],
        present: Mapping[str, frozenset[str]],
        demand: DemandIndex,
    ) -> None:
        self.config = config
        self.demand = demand
        self.now = snapshot.now
        self.snapshot = snapshot
        self.nodes = nodes
        self.node_names = {n.name for n in nodes}
        self.images = images
        self.by_image = {i.image: i for i in images}
        self.wanted = [i for i in images if i.wanted]
        self.wanted_refs = {i.image for i in self.wanted}
        self.pullers = [p for p in pods if p.role == "puller"]
        self.keepers = [p for p in pods if p.role == "keeper"]
        self.keepers_on: dict[str, list[ManagedPod]] = {}
        for keeper in self.keepers:
            self.keepers_on.setdefault(keeper.node, []).append(keeper)
        self.targets = targets
        self.present = present
        self.records: dict[PullKey, PullRecord] = dict(snapshot.pull_records)
        self.throughput: dict[str, float] = dict(snapshot.pull_throughput)
        # registry → the rates each finished puller seen this pass measured
        self.throughput_samples: dict[str, list[tuple[float, ...]]] = {}
        self.deletions: list[PodDeletion] = []
        self.deleted: set[str] = set()
        # each puller's outcomes as one tuple (a finished puller's: the same one every pass)
        self.outcomes: list[tuple[PullOutcome, ...]] = []
        self._guarded: dict[str, set[str]] = {}  # node → images running keepers hold
        # node → images live pullers pulled (one puller's own set while it is the only one)
        self.puller_held: dict[str, set[str] | frozenset[str]] = {}
        self.pulled_at = PulledTimes()
        # uid → the puller in flight, and its reading (the images it still pulls)
        self.in_flight: dict[str, tuple[ManagedPod, PullerReading]] = {}
        self.pulling = PullingPairs()  # (node, image) of in_flight, once pullers are read
        self._starting_on: dict[str, list[StartingPod]] | None = None
        self.wake_at: datetime | None = None
        self.pulls: list[PullAction] = []
        self.waiting: dict[PullKey, str] = {}
        self.holding: set[str] = set()  # starting pods this plan waits for (Plan.holding)
        self.unguarded: dict[str, list[frozenset[str]]] = {}  # node → finished pullers' images
        self.guard_waits: dict[tuple[str, frozenset[str]], None] = {}  # Plan.guard_waits
        self.keeper_actions: list[KeeperAction] = []
        self.taint_removals: list[TaintRemoval] = []
        self.cells: Sequence[CellState] = ()
        self.left_out: Sequence[BudgetExclusion] = ()
        self.counts: Counter[tuple[str, str]] = Counter()  # (image, state), wanted pairs
        self.node_counts: dict[str, Mapping[str, int]] = {}  # node → cells by state
        self.totals: Mapping[str, int] | None = None  # cells by state, when already summed
        self.quiet = in_quiet_hours(self.now, config.quiet_hours)

    # --- what pods say; the incremental planner remembers these between passes -----------

    def running_images(self, pod: ManagedPod) -> frozenset[str]:
        """The images a keeper's running containers hold."""
        return presence.keeper_running_images(pod)

    def puller_results(self, pod: ManagedPod) -> Mapping[str, presence.PullResult]:
        """The outcome of each image of a puller that has one."""
        return presence.puller_results(pod)

    def puller_reading(self, pod: ManagedPod) -> PullerReading:
        """What the puller pod alone says: its results, the images it still pulls."""
        return read_puller(pod, self.puller_results(pod))

    def finished_puller(self, pod: ManagedPod, read: ReadFinished) -> Finished | None:
        """What a puller whose every image was pulled gives each pass; None for any other
        (`read` reads it)."""
        return read(self, pod)

    def image_status(
        self, image: MergedImage, states: tuple[int, ...], last_error: str, make: MakeImageStatus
    ) -> ImageStatus:
        """An image's status patches and summary (`make` makes them)."""
        return make(image, states, last_error)

    def keeper_for(self, entry: NodeTarget) -> tuple[list[str], str]:
        """The images the node's keeper should run (sorted: present target images) and that
        keeper's name ("" when there are none)."""
        desired = sorted(entry.fitted_set & self.present.get(entry.node.name, frozenset()))
        return desired, pods.keeper_name(entry.node.name, desired) if desired else ""

    def median_rate(self, rates: Sequence[tuple[float, ...]]) -> float:
        """The median of every puller's `rates`."""
        return statistics.median(chain.from_iterable(rates))

    def flight_counts(self) -> tuple[Counter[str], Counter[str]]:
        """The pullers in flight by image they still pull, and by registry they pull from
        (read-only: copy before counting more)."""
        flying = self.in_flight.values()
        # (counted in C: a thousand pullers of 100 images)
        per_image = Counter(chain.from_iterable(reading.pending for _, reading in flying))
        per_registry = Counter(chain.from_iterable(reading.registries for _, reading in flying))
        return per_image, per_registry

    def keeper_wait(
        self, node: str, desired: list[str], active: Sequence[ManagedPod]
    ) -> KeeperWait:
        """Whether a new keeper of `desired` (sorted) on `node` in place of the `active` ones
        only adds images the node's pullers hold (it may then wait for the node's pulls),
        and when those images were pulled."""
        held: set[str] = set()
        for keeper in active:
            held |= self.running_images(keeper)
        wanted = set(desired)
        if not held <= wanted:
            return NO_WAIT
        added = wanted - held
        if not added <= self.puller_held.get(node, set()):
            return NO_WAIT
        if not added:
            return KeeperWait(True, None, False)
        return KeeperWait(True, *self.pulled_at.earliest_known(node, added))

    def keeper_action(
        self, node: NodeInfo, name: str, desired: list[str], replaces: tuple[str, ...]
    ) -> KeeperAction:
        """Create keeper `name` holding `desired` (sorted) on `node`, replacing `replaces`."""
        pod = pods.build_keeper(node, desired, self.config)
        return KeeperAction(node.name, name, tuple(desired), replaces, pod)

    def missing(self, entry: NodeTarget) -> list[str]:
        """The node's target images not present there, in rank order."""
        present = self.present.get(entry.node.name, frozenset())
        return [ref for ref in entry.fitted if ref not in present]

    def guarded(self, node: str) -> set[str]:
        """The images the node's running keepers (not being deleted) hold."""
        held = self._guarded.get(node)
        if held is None:
            held = self._guarded[node] = set()
            for keeper in self.keepers_on.get(node, ()):
                if not keeper.deleting:
                    held |= self.running_images(keeper)
        return held

    def fits(self, node: str) -> frozenset[str]:
        """The images `node` should hold (empty for a node that is gone)."""
        target = self.targets.get(node)
        return target.fitted_set if target is not None else frozenset()

    def starting_on(self, node: str) -> Sequence[StartingPod]:
        """The workload pods starting on `node` (as the snapshot lists them)."""
        if self._starting_on is None:
            self._starting_on = {}
            for pod in self.snapshot.starting:
                self._starting_on.setdefault(pod.node, []).append(pod)
        return self._starting_on.get(node, ())

    def wake(self, moment: datetime) -> None:
        """Note a future moment at which this plan would change by itself."""
        if moment > self.now and (self.wake_at is None or moment < self.wake_at):
            self.wake_at = moment

    def is_present(self, node: str, image: str) -> bool:
        return image in self.present.get(node, ())

    def delete(self, pod: ManagedPod, why: str, *, yielded_to: str = "") -> None:
        if pod.deleting or pod.uid in self.deleted:
            return
        self.deleted.add(pod.uid)
        self.deletions.append(PodDeletion(pod.name, pod.uid, pod.node, pod.role, why, yielded_to))

    def size_of(self, image: str) -> int:
        known = self.by_image.get(image)
        return known.size if known else self.config.default_image_size
