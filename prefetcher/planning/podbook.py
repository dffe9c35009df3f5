"""What the planner remembers of our pods between passes, sweeps included: what a pod object
alone decides (with its images' sizes) cannot change while the object is the same, and a
converging cluster holds a thousand pullers of 200 images waiting for their keepers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import is_

from prefetcher import presence
from prefetcher.model import KeeperAction, ManagedPod, NodeInfo, PullKey
from prefetcher.planning.images import MergedImage
from prefetcher.planning.memo import EMPTY
from prefetcher.planning.pullers import Finished
from prefetcher.planning.reading import PullerReading, read_puller
from prefetcher.planning.state import KeeperWait, PlanState, ReadFinished

# A pod's (running images if a keeper, results and pulled images if a puller)
PodFacts = tuple[frozenset[str], Mapping[str, presence.PullResult], frozenset[str]]
Median = Callable[[Sequence[tuple[float, ...]]], float]
FinishedKey = tuple[str, str, ReadFinished]  # a pod's name and uid, and what reads it
# (active keepers, desired images, the node's puller-held images, its pull times' mappings)
KeeperWaitInputs = tuple[
    tuple[ManagedPod, ...], list[str], object, tuple[Mapping[PullKey, datetime], ...]
]


class PodBook:
    """Per pod object: its facts, a puller's reading and what it gave, the node's keeper
    action and keeper wait, the registries' median pull rates and the pullers in flight
    counted per image and registry; each kept from one pass to the next while its inputs
    are the same objects (the last pass's and this pass's, so what went is dropped)."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], tuple[ManagedPod, PodFacts]] = {}
        self._seen_pods: dict[tuple[str, str], tuple[ManagedPod, PodFacts]] = {}
        self._readings: dict[tuple[str, str], tuple[ManagedPod, PullerReading]] = {}
        self._seen_readings: dict[tuple[str, str], tuple[ManagedPod, PullerReading]] = {}
        self._finished: dict[FinishedKey, tuple[ManagedPod, Finished | None]] = {}
        self._seen_finished: dict[FinishedKey, tuple[ManagedPod, Finished | None]] = {}
        self._sizes: dict[str, int] = {}  # image → its size, as the last pass planned it
        self._resized: set[str] = set()  # images whose size changed since the last pass
        self._waits: dict[str, tuple[KeeperWaitInputs, KeeperWait]] = {}
        self._seen_waits: dict[str, tuple[KeeperWaitInputs, KeeperWait]] = {}
        self._keepers: dict[str, tuple[NodeInfo, KeeperAction, list[str]]] = {}
        self._seen_keepers: dict[str, tuple[NodeInfo, KeeperAction, list[str]]] = {}
        # (the finished pullers' rates of a registry, their median)
        self._medians: list[tuple[list[tuple[float, ...]], float]] = []
        self._seen_medians: list[tuple[list[tuple[float, ...]], float]] = []
        self._sets: dict[frozenset[str], frozenset[str]] = {}  # shared image sets
        # the pullers in flight counted last (uid → reading), and their counts
        self._flying: dict[str, PullerReading] = {}
        self._flight_counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())

    def new_pass(self, images: list[MergedImage], pods: int) -> None:
        """Start a pass over `pods` pods: note the images whose size changed (or which came
        or went) since the last pass; what a puller gave holds while its images' sizes do."""
        sizes = {i.image: i.size for i in images}
        if sizes != self._sizes:
            known = self._sizes
            self._resized = {r for r in sizes.keys() | known.keys() if sizes.get(r) != known.get(r)}
            self._sizes = sizes
        else:
            self._resized = set()
        if len(self._sets) > 4 * pods + 64:
            self._sets = {}
        self._seen_pods, self._seen_finished, self._seen_keepers, self._seen_medians = (
            {},
            {},
            {},
            [],
        )
        self._seen_readings, self._seen_waits = {}, {}

    def end_pass(self) -> None:
        """Keep what this pass used, for the next one."""
        self._pods, self._finished = self._seen_pods, self._seen_finished
        self._keepers, self._medians = self._seen_keepers, self._seen_medians
        self._readings, self._waits = self._seen_readings, self._seen_waits

    def pod_facts(self, pod: ManagedPod) -> PodFacts:
        """A pod's running images (keeper), results and pulled images (puller)."""
        key = (pod.name, pod.uid)
        hit = self._seen_pods.get(key) or self._pods.get(key)
        if hit is None or hit[0] is not pod:
            if pod.role == "keeper":
                running = presence.keeper_running_images(pod)
                facts: PodFacts = (self._sets.setdefault(running, running), {}, EMPTY)
            else:
                results = presence.puller_results(pod)
                pulled = frozenset(image for image, r in results.items() if r.succeeded)
                facts = (EMPTY, results, self._sets.setdefault(pulled, pulled))
            hit = (pod, facts)
        self._seen_pods[key] = hit
        return hit[1]

    def reading(self, pod: ManagedPod) -> PullerReading:
        """What a puller pod alone says (`reading.read_puller`), while it is the same object."""
        key = (pod.name, pod.uid)
        hit = self._readings.get(key)
        if hit is None or hit[0] is not pod:
            hit = (pod, read_puller(pod, self.pod_facts(pod)[1]))
        self._seen_readings[key] = hit
        return hit[1]

    def finished_puller(
        self, pod: ManagedPod, state: PlanState, read: ReadFinished
    ) -> Finished | None:
        """What `read` makes of a puller (all it pulled, or what it pulled so far), while the
        pod object and its pulled images' sizes are the same (it cannot change otherwise)."""
        if pod.created is None:
            return read(state, pod)  # its pull times would fall back on the pass's time
        key = (pod.name, pod.uid, read)
        hit = self._finished.get(key)
        if (
            hit is None
            or hit[0] is not pod
            or (hit[1] is not None and not hit[1].pulled.isdisjoint(self._resized))
        ):
            hit = (pod, read(state, pod))
        self._seen_finished[key] = hit
        return hit[1]

    def median_rate(self, rates: Sequence[tuple[float, ...]], median: Median) -> float:
        """A registry's median pull rate, the same while the finished pullers' rates are (the
        same tuples: 200,000 samples are not sorted again every pass)."""
        for known, value in self._medians:
            if len(known) == len(rates) and all(map(is_, known, rates)):
                self._seen_medians.append((known, value))
                return value
        value = median(rates)
        self._seen_medians.append((list(rates), value))
        return value

    def flight_counts(
        self, in_flight: Mapping[str, tuple[ManagedPod, PullerReading]]
    ) -> tuple[Counter[str], Counter[str]]:
        """PlanState.flight_counts(), moved from the last counted ones by the pullers that
        came, went or read otherwise (a thousand pullers of 100 images: not counted anew
        each pass)."""
        if not in_flight:
            self._flight_counts = (Counter(), Counter())  # (images gone leave no zeros)
        per_image, per_registry = self._flight_counts
        flying = self._flying if in_flight else {}
        for uid, reading in flying.items():
            now = in_flight.get(uid)
            if now is None or now[1] is not reading:
                per_image.subtract(reading.pending)
                per_registry.subtract(reading.registries)
        for uid, (_, reading) in in_flight.items():
            if flying.get(uid) is not reading:
                per_image.update(reading.pending)
                per_registry.update(reading.registries)
        self._flying = {uid: reading for uid, (_, reading) in in_flight.items()}
        return per_image, per_registry

    def keeper_wait(
        self, state: PlanState, node: str, desired: list[str], active: Sequence[ManagedPod]
    ) -> KeeperWait:
        """PlanState.keeper_wait(), the same while the keepers, the desired list, the images
        the node's pullers hold and their pull times are (the same objects, pass after
        pass: a thousand nodes waiting for their keepers, 100 images each compared and
        looked up once, not once per pass)."""
        inputs = (
            tuple(active),
            desired,
            state.puller_held.get(node),
            tuple(state.pulled_at.parts(node)),
        )
        hit = self._waits.get(node)
        if hit is None or hit[0] != inputs:  # (the same objects: equal at once)
            hit = (inputs, PlanState.keeper_wait(state, node, desired, active))
        self._seen_waits[node] = hit
        return hit[1]

    def keeper_action(
        self,
        state: PlanState,
        node: NodeInfo,
        name: str,
        desired: list[str],
        replaces: tuple[str, ...],
    ) -> KeeperAction:
        """PlanState.keeper_action(), the same action while the node object, its images and
        the keepers it replaces are (a thousand nodes waiting for their keepers: a manifest
        of 200 containers each, built once, not once per pass)."""
        hit = self._keepers.get(node.name)
        if (
            hit is None
            or hit[0] is not node
            or hit[1].pod_name != name
            or hit[1].replaces != replaces
            or hit[2] != desired
        ):
            action = PlanState.keeper_action(state, node, name, desired, replaces)
            hit = (node, action, list(desired))
        self._seen_keepers[node.name] = hit
        return hit[1]
