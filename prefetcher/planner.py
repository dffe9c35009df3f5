"""One planning step: from what is observed (Snapshot) to what to do (Plan), as a pure function.

    plan(snapshot, config) -> Plan

1. Wanted: every CachedImage not released (`scoring.is_wanted`); objects naming the same
   image are merged (declared wins, highest score).
2. Target: for each node, the wanted images whose placement fits (`eligibility`), taken
   in rank order while they fit the node's disk budget (`budget`). Only nodes without a
   node problem (not Ready, cordoned, DiskPressure, not Linux) get pulls.
3. Present: keepers' running containers + puller containers that ran (`observe`).
4. Pulls: target - present - pulling - in backoff, ordered urgent first (a node that
   joined or turned Ready within `urgent_window`; an image first seen that recently and
   in use), then by score, then node and image. A puller takes up to `pull_batch_size`
   first-try images of one registry (a retry goes alone); each start must fit every cap
   (per node, per registry, per image, cluster-wide), counting pullers already running.
   In quiet hours only urgent pulls start; on a node where a workload pod is starting
   none do. A failed (node, image) waits
   min(pull_backoff_base * 2**(attempts-1), pull_backoff_max) before the next try.
5. Keepers: per node, the keeper for present & target (same set, same name). A changed
   set creates the new keeper first, once the node is done pulling (or KEEPER_BATCH_WAIT
   after the first image it adds was pulled); an old keeper is deleted only when every
   target image it guards is running in the new one (make-before-break).
6. Clean-up: finished pullers once keepers run every image they pulled (or those left
   the target), pods on nodes that no longer exist, pullers of images no longer wanted,
   ended keepers.
7. Startup taint: removed when the node's top `startup_taint_images` target images are
   present (or it has none).
8. CachedImage status (score, nodesWanted, nodesPresent, lastError): only fields that
   changed, so a converged cluster sees no writes.

The runtime calls it with a fresh Snapshot after watch events, on every sweep and at
`Plan.wake_at`, carries out the Plan, and keeps `Plan.pull_records` for the next call. The same Snapshot always
gives the same Plan.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from imagesync.cachedimage import profile_key
from imagesync.config import Config
from imagesync.reference import InvalidReference, parse_reference
from prefetcher import budget as budgets
from prefetcher import eligibility, observe, pods, scoring
from prefetcher.model import (
    BudgetExclusion,
    CellState,
    ImageSummary,
    KeeperAction,
    ManagedPod,
    NodeInfo,
    NodeSummary,
    Plan,
    PodDeletion,
    PullAction,
    PullKey,
    PullOutcome,
    PullRecord,
    Snapshot,
    StatusUpdate,
    Summary,
    TaintRemoval,
    WantedImage,
)

STUCK_GRACE = 300.0  # seconds past a puller's deadline before it counts as stuck
# Longest a pulled image waits for the keeper while its node's puller pulls the rest.
KEEPER_BATCH_WAIT = 300.0
# A workload pod starting on a node holds back new pulls there for at most this long.
HOLD_BACK_MAX = 1200.0
LAST_ERROR_MAX = 512


@dataclass
class _Image:
    """The CachedImage objects that name one image, merged for planning."""

    image: str
    objects: list[WantedImage]
    score: float
    declared: bool
    wanted: bool
    size: int
    registry: str
    invalid: str | None
    new_in_use: bool
    placement_key: str  # images with equal keys fit the same nodes

    @property
    def primary(self) -> WantedImage:
        return self.objects[0]

    @property
    def rank(self) -> tuple[int, float, str]:
        return scoring.rank_key(self.image, self.declared, self.score)


@dataclass
class _NodePlan:
    """Per-node working state."""

    node: NodeInfo
    problem: str | None
    urgent_recent: bool
    budget: int | None = None
    budget_used: int = 0
    fitted: list[str] = field(default_factory=list)  # rank order
    not_placed: dict[str, str] = field(default_factory=dict)  # image -> why
    left_out: dict[str, str] = field(default_factory=dict)  # image -> why (budget)


def in_quiet_hours(now: datetime, window: str) -> bool:
    """True when `now` (UTC) falls in `HH:MM-HH:MM` (which may wrap past midnight)."""
    if not window:
        return False
    start_text, end_text = window.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    moment = now.time().replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def backoff_delay(attempts: int, config: Config) -> float:
    """Seconds to wait after `attempts` failures."""
    if attempts <= 0:
        return 0.0
    exponent = min(attempts - 1, 40)
    return float(min(config.pull_backoff_base * 2**exponent, config.pull_backoff_max))


def retry_at(record: PullRecord, config: Config) -> datetime:
    return record.last_failure + timedelta(seconds=backoff_delay(record.attempts, config))


def _registry(image: str) -> tuple[str, str | None]:
    try:
        return parse_reference(image).domain, None
    except InvalidReference as exc:
        return "", f"invalid image reference: {exc.reason}"


def _recent(moment: datetime | None, now: datetime, window: float) -> bool:
    return moment is not None and 0 <= (now - moment).total_seconds() <= window


def _merge_images(snapshot: Snapshot, config: Config) -> list[_Image]:
    """Group CachedImages by image; best rank first."""
    now = snapshot.now
    hints: dict[str, int] = {}
    for node in snapshot.nodes:
        for image, size in node.hinted_images.items():
            hints[image] = max(hints.get(image, 0), size)
    groups: dict[str, list[WantedImage]] = {}
    for obj in snapshot.images:
        groups.setdefault(obj.image, []).append(obj)
    merged: list[_Image] = []
    for image, objects in groups.items():
        objects.sort(key=lambda o: (not scoring.is_declared(o), o.name))
        scores = [scoring.score(o, now, config.score_half_life) for o in objects]
        sizes = [o.size for o in objects if o.size]
        registry, invalid = _registry(image)
        created = [o.created for o in objects if o.created is not None]
        in_use = any(o.use_count > 0 or o.daily_uses for o in objects)
        merged.append(
            _Image(
                image=image,
                objects=objects,
                score=max(scores),
                declared=any(scoring.is_declared(o) for o in objects),
                wanted=any(scoring.is_wanted(o, now, config.image_retention) for o in objects),
                size=max(sizes) if sizes else hints.get(image) or config.default_image_size,
                registry=registry,
                invalid=invalid,
                new_in_use=in_use
                and bool(created)
                and _recent(min(created), now, config.urgent_window),
                placement_key=_placement_key(objects, invalid),
            )
        )
    merged.sort(key=lambda i: i.rank)
    return merged


def _placement_key(objects: list[WantedImage], invalid: str | None) -> str:
    parts: list[Any] = [invalid]
    for o in objects:
        profiles = sorted(profile_key(p) for p in o.profiles)
        parts.append([sorted(o.node_selector.items()), list(o.architectures), *profiles])
    return json.dumps(parts)


def _placement(image: _Image, node: NodeInfo, config: Config) -> str | None:
    if image.invalid:
        return image.invalid
    reasons = [eligibility.placement_problem(o, node, config) for o in image.objects]
    if any(reason is None for reason in reasons):
        return None
    return reasons[0]


def _size_on(image: _Image, node: NodeInfo) -> int:
    return node.hinted_images.get(image.image) or image.size


def _plan_nodes(
    nodes: list[NodeInfo], wanted: list[_Image], config: Config, now: datetime
) -> dict[str, _NodePlan]:
    managed = {i.image for i in wanted}
    out: dict[str, _NodePlan] = {}
    for node in nodes:
        entry = _NodePlan(
            node=node,
            problem=eligibility.node_problem(node, config),
            urgent_recent=_recent(node.ready_since or node.created, now, config.urgent_window),
        )
        items: list[budgets.BudgetItem] = []
        seen: dict[str, str | None] = {}  # placement key → why not (None: fits)
        hinted = node.hinted_images
        for image in wanted:
            key = image.placement_key
            if key in seen:
                why = seen[key]
            else:
                why = seen[key] = _placement(image, node, config)
            if why is not None:
                entry.not_placed[image.image] = why
                continue
            ref = image.image
            items.append(budgets.BudgetItem(ref, hinted.get(ref) or image.size, image.score))
        result = budgets.fit(budgets.node_budget(node, config, managed), items)
        entry.budget, entry.budget_used = result.budget, result.used
        entry.fitted = list(result.fitted)
        entry.left_out = {item.image: why for item, why in result.left_out}
        out[node.name] = entry
    return out


def _seconds(pod: ManagedPod, finished: datetime | None) -> float | None:
    if pod.created is None or finished is None:
        return None
    return max(0.0, (finished - pod.created).total_seconds())


def plan(snapshot: Snapshot, config: Config) -> Plan:
    """Decide the pulls, keepers, deletions, taint removals and status writes for `snapshot`."""
    work = _Work(snapshot, config)
    work.read_pullers()
    work.choose_pulls()
    work.plan_keepers()
    work.plan_startup_taints()
    work.fill_cells()
    return work.result()


class _Work:
    """The working state of one plan() call, filled stage by stage (never shared)."""

    def __init__(self, snapshot: Snapshot, config: Config) -> None:
        self.config = config
        self.now = snapshot.now
        self.nodes = sorted({n.name: n for n in snapshot.nodes}.values(), key=lambda n: n.name)
        self.node_names = {n.name for n in self.nodes}
        self.images = _merge_images(snapshot, config)
        self.by_image = {i.image: i for i in self.images}
        self.wanted = [i for i in self.images if i.wanted]
        self.wanted_refs = {i.image for i in self.wanted}
        all_pods = sorted(snapshot.pods, key=lambda p: (p.node, p.role, p.name, p.uid))
        self.pullers = [p for p in all_pods if p.role == "puller"]
        self.keepers = [p for p in all_pods if p.role == "keeper"]
        self.node_plans = _plan_nodes(self.nodes, self.wanted, config, self.now)
        self.fitted = {name: set(entry.fitted) for name, entry in self.node_plans.items()}
        self.present = observe.present_images(all_pods)
        self.records: dict[PullKey, PullRecord] = dict(snapshot.pull_records)
        self.deletions: list[PodDeletion] = []
        self.deleted: set[str] = set()
        self.outcomes: list[PullOutcome] = []
        self.snapshot = snapshot
        self.guarded: dict[str, set[str]] = {}  # node → images running keepers hold
        self.puller_held: dict[str, set[str]] = {}  # node → images live pullers pulled
        self.pulled_at: dict[PullKey, datetime] = {}
        self.in_flight: dict[str, tuple[ManagedPod, tuple[str, ...]]] = {}  # uid → pending
        self.pulling: set[PullKey] = set()  # (node, image) of in_flight, once read_pullers ran
        self.wake_at: datetime | None = None
        self.pulls: list[PullAction] = []
        self.waiting: dict[PullKey, str] = {}
        self.keeper_actions: list[KeeperAction] = []
        self.taint_removals: list[TaintRemoval] = []
        self.cells: list[CellState] = []
        self.left_out: list[BudgetExclusion] = []
        self.counts: Counter[tuple[str, str]] = Counter()  # (image, state), wanted pairs
        self.node_counts: dict[str, Counter[str]] = {}
        self.quiet = in_quiet_hours(self.now, config.quiet_hours)

    def wake(self, moment: datetime) -> None:
        """Note a future moment at which this plan would change by itself."""
        if moment > self.now and (self.wake_at is None or moment < self.wake_at):
            self.wake_at = moment

    def is_present(self, node: str, image: str) -> bool:
        return image in self.present.get(node, ())

    def delete(self, pod: ManagedPod, why: str) -> None:
        if pod.deleting or pod.uid in self.deleted:
            return
        self.deleted.add(pod.uid)
        self.deletions.append(PodDeletion(pod.name, pod.uid, pod.node, pod.role, why))

    def size_of(self, image: str) -> int:
        known = self.by_image.get(image)
        return known.size if known else self.config.default_image_size

    # --- pullers: outcomes, backoff memory, clean-up ----------------------------------

    def record_failure(self, pod: ManagedPod, image: str, result: observe.PullResult) -> None:
        """Count a failed pull once per puller (by uid) in its (node, image) backoff record."""
        key = (pod.node, image)
        previous = self.records.get(key)
        if previous is not None and previous.pod_uid == pod.uid:
            return
        # The pod's own attempt number survives a restart of the prefetcher; the record not.
        attempts = max((previous.attempts if previous else 0) + 1, pod.attempt)
        self.records[key] = PullRecord(
            pod.node, image, attempts, self.now, result.reason, result.message, pod.uid
        )
        self.outcome(pod, image, result, self.now)

    def record_success(self, pod: ManagedPod, image: str, result: observe.PullResult) -> None:
        self.records.pop((pod.node, image), None)
        self.outcome(pod, image, result, result.finished_at)
        self.pulled_at[(pod.node, image)] = result.finished_at or pod.created or self.now

    def outcome(
        self, pod: ManagedPod, image: str, result: observe.PullResult, end: datetime | None
    ) -> None:
        self.outcomes.append(
            PullOutcome(
                pod.node,
                image,
                pod.name,
                pod.uid,
                result.succeeded,
                result.reason,
                result.message,
                _seconds(pod, end),
                self.size_of(image),
                result.kind,
            )
        )

    def read_pullers(self) -> None:
        """Outcomes of pullers' images, which pullers still fly, and which to delete."""
        for keeper in self.keepers:
            if not keeper.deleting:
                self.guarded.setdefault(keeper.node, set()).update(
                    observe.keeper_running_images(keeper)
                )
        for pod in self.pullers:
            if pod.node not in self.node_names:
                self.delete(pod, "node no longer exists")
                continue
            results = observe.puller_results(pod)
            for image, result in results.items():
                if result.succeeded:
                    self.record_success(pod, image, result)
                else:
                    self.record_failure(pod, image, result)
            pending = tuple(i for i in pod.images if i not in results)
            if pending:
                self.read_unfinished(pod, pending)
                self.hold(pod, results)
                continue
            # Finished: keep it while it is the only guard of an image it pulled.
            failed = sorted({r.reason for r in results.values() if not r.succeeded})
            unguarded = [
                image
                for image, result in results.items()
                if result.succeeded
                and image in self.fitted[pod.node]
                and not (self.config.keeper_enabled and image in self.guarded.get(pod.node, ()))
            ]
            if not unguarded:
                why = "pulled; the keeper holds the image" if not failed else "pull failed"
                self.delete(pod, f"{why}: {', '.join(failed)}" if failed else why)
            elif failed and not self.config.keeper_enabled:
                # Its failed containers would retry for ever; its pulled images are checked
                # again by a new puller (a no-op pull of a present image).
                self.delete(pod, f"pull failed: {', '.join(failed)}")
            else:
                self.hold(pod, results)

        self.pulling = {
            (p.node, image) for p, pending in self.in_flight.values() for image in pending
        }
        for key in list(self.records):
            node, image = key
            if (
                node not in self.node_names
                or image not in self.fitted[node]
                or self.is_present(node, image)
            ):
                del self.records[key]

    def hold(self, pod: ManagedPod, results: Mapping[str, observe.PullResult]) -> None:
        """Note the images a puller that stays (for now) keeps from image GC."""
        if pod.deleting or pod.uid in self.deleted:
            return
        held = self.puller_held.setdefault(pod.node, set())
        held.update(image for image, result in results.items() if result.succeeded)

    def read_unfinished(self, pod: ManagedPod, pending: tuple[str, ...]) -> None:
        """A puller with images still to pull: flying, stuck past its deadline, or unwanted."""
        if pod.deleting:
            self.in_flight[pod.uid or pod.name] = (pod, pending)  # the kubelet may still be pulling
            return
        deadline = pod.active_deadline or pods.pull_deadline(
            sum(self.size_of(i) for i in pod.images), self.config
        )
        stuck_at = (pod.created or self.now) + timedelta(seconds=deadline + STUCK_GRACE)
        if self.now > stuck_at:
            age = int((self.now - pod.created).total_seconds()) if pod.created else 0
            stuck = observe.PullResult(
                succeeded=False,
                reason=observe.DEADLINE_REASON,
                message=f"puller still unfinished {age} s after creation",
                kind="deadline",
            )
            for image in pending:
                self.record_failure(pod, image, stuck)
            self.delete(pod, "stuck past its deadline")
        elif not any(i in self.fitted.get(pod.node, ()) for i in pending):
            self.delete(pod, "image no longer wanted on this node")
        else:
            self.in_flight[pod.uid or pod.name] = (pod, pending)
            self.wake(stuck_at)

    # --- pulls ----------------------------------------------------------------------------

    def choose_pulls(self) -> None:
        """Candidates in order (urgent, score, node, image), batched per node, each puller
        within every cap."""
        config = self.config
        pulling = self.pulling
        puller_names = {p.name for p in self.pullers}
        starting = self.starting_pods()
        candidates: list[tuple[tuple[int, float, str, str], str]] = []
        for entry in self.node_plans.values():
            if entry.problem is not None:
                continue
            name = entry.node.name
            present = self.present.get(name, frozenset())
            for ref in entry.fitted:
                if ref in present:
                    continue
                key = (name, ref)
                if key in pulling:
                    continue
                record = self.records.get(key)
                if record is not None and self.now < retry_at(record, config):
                    self.wake(retry_at(record, config))
                    continue
                image = self.by_image[ref]
                if entry.urgent_recent:
                    why = "new node"
                elif image.new_in_use:
                    why = "new image in use"
                else:
                    why = "routine"
                if self.quiet and why == "routine":
                    self.waiting[key] = f"quiet hours {config.quiet_hours} UTC: only urgent pulls"
                    continue
                if name in starting:
                    self.waiting[key] = f"held back while pod {starting[name]} starts on the node"
                    continue
                candidates.append(((0 if why != "routine" else 1, -image.score, name, ref), why))
        candidates.sort()
        by_node: dict[str, list[str]] = {}
        for (_, _, name, ref), _why in candidates:
            by_node.setdefault(name, []).append(ref)

        flying = list(self.in_flight.values())
        per_node = Counter(pod.node for pod, _ in flying)
        per_image = Counter(image for _, pending in flying for image in pending)
        per_registry = Counter(
            registry
            for _, pending in flying
            for registry in {
                self.by_image[i].registry if i in self.by_image else _registry(i)[0]
                for i in pending
            }
        )
        total = len(flying)
        taken: set[PullKey] = set()
        for (_, _, name, ref), why in candidates:
            if (name, ref) in taken:
                continue
            image = self.by_image[ref]
            if (
                total >= config.max_concurrent_pulls
                or per_node[name] >= config.max_pulls_per_node
                or per_image[ref] >= config.max_pulls_per_image
                or per_registry[image.registry] >= config.max_pulls_per_registry
            ):
                self.waiting.setdefault((name, ref), "waiting for a pull slot")
                continue
            record = self.records.get((name, ref))
            batch = [ref]
            if record is None:
                # A retry is pulled alone; first tries share a pod with the node's next
                # candidates from the same registry that are first tries too.
                for other in by_node[name]:
                    if len(batch) >= config.pull_batch_size:
                        break
                    if (
                        other != ref
                        and (name, other) not in taken
                        and (name, other) not in self.records
                        and self.by_image[other].registry == image.registry
                        and per_image[other] < config.max_pulls_per_image
                    ):
                        batch.append(other)
            pod_name = pods.puller_name(name, batch)
            if pod_name in puller_names:
                for ref_ in batch:
                    self.waiting[(name, ref_)] = "waiting for the previous puller to be removed"
                continue
            taken.update((name, r) for r in batch)
            total += 1
            per_node[name] += 1
            per_image.update(batch)
            per_registry[image.registry] += 1
            node = self.node_plans[name].node
            size = sum(_size_on(self.by_image[r], node) for r in batch)
            deadline = pods.pull_deadline(size, config)
            attempt = (record.attempts if record else 0) + 1
            self.pulls.append(
                PullAction(
                    node=name,
                    images=tuple(batch),
                    pod_name=pod_name,
                    urgent=why != "routine",
                    why=why,
                    score=image.score,
                    size=size,
                    deadline_seconds=deadline,
                    attempt=attempt,
                    pod=pods.build_puller(
                        node, batch, config, deadline_seconds=deadline, attempt=attempt
                    ),
                )
            )

    def starting_pods(self) -> dict[str, str]:
        """Node → a workload pod starting there (its pulls go first), while not stale."""
        out: dict[str, str] = {}
        for pod in sorted(self.snapshot.starting, key=lambda p: p.pod):
            if pod.since is not None:
                until = pod.since + timedelta(seconds=HOLD_BACK_MAX)
                if self.now >= until:
                    continue
                self.wake(until)
            out.setdefault(pod.node, pod.pod)
        return out

    # --- keepers ------------------------------------------------------------------------

    def plan_keepers(self) -> None:
        """One keeper per node for present and target images, replaced make-before-break."""
        config = self.config
        by_node: dict[str, list[ManagedPod]] = {}
        for keeper in self.keepers:
            if keeper.node not in self.node_names:
                self.delete(keeper, "node no longer exists")
            elif keeper.phase in ("Failed", "Succeeded"):
                self.delete(keeper, f"keeper ended ({keeper.reason or keeper.phase})")
            elif not config.keeper_enabled:
                self.delete(keeper, "keepers are turned off")
            elif not keeper.deleting:
                by_node.setdefault(keeper.node, []).append(keeper)
        if not config.keeper_enabled:
            return
        names = {k.name for k in self.keepers}
        for entry in self.node_plans.values():
            node = entry.node
            if not node.ready:
                continue
            active = by_node.get(node.name, [])
            desired = sorted(self.fitted[node.name] & self.present.get(node.name, frozenset()))
            if not desired:
                for keeper in active:
                    self.delete(keeper, "no cached image left to guard")
                continue
            name = pods.keeper_name(node.name, desired)
            current = next((k for k in active if k.name == name), None)
            guarded: frozenset[str] = frozenset()
            if current is not None:
                guarded = observe.keeper_running_images(current)
            elif self.defer_keeper(node.name, desired, active):
                continue
            elif name not in names:  # (a namesake still terminating: wait for it)
                self.keeper_actions.append(
                    KeeperAction(
                        node=node.name,
                        pod_name=name,
                        images=tuple(desired),
                        replaces=tuple(k.name for k in active),
                        pod=pods.build_keeper(node, desired, config),
                    )
                )
            for keeper in active:
                if keeper is not current and (
                    observe.keeper_running_images(keeper) & set(desired) <= guarded
                ):
                    self.delete(keeper, f"replaced by {name}")

    def defer_keeper(self, node: str, desired: list[str], active: list[ManagedPod]) -> bool:
        """Wait with a new keeper while the node is still pulling (a puller runs or starts
        now), so a node's pulls cost one keeper replacement every KEEPER_BATCH_WAIT, not one
        per image or per puller. Safe: every image the running keepers do not hold yet is
        held by its finished puller's container (pullers stay until a keeper holds their
        images), and no image waits longer than KEEPER_BATCH_WAIT."""
        if not any(pod.node == node for pod, _ in self.in_flight.values()) and not any(
            pull.node == node for pull in self.pulls
        ):
            return False
        held: set[str] = set()
        for keeper in active:
            held |= observe.keeper_running_images(keeper)
        added = set(desired) - held
        if not added <= self.puller_held.get(node, set()):
            return False
        due = [
            self.pulled_at.get((node, image), self.now) + timedelta(seconds=KEEPER_BATCH_WAIT)
            for image in added
        ]
        if due and min(due) <= self.now:
            return False
        if due:
            self.wake(min(due))
        return True

    # --- startup taint ------------------------------------------------------------------

    def plan_startup_taints(self) -> None:
        key = self.config.startup_taint
        if not key:
            return
        for entry in self.node_plans.values():
            node = entry.node
            if not node.ready or not any(t.key == key for t in node.taints):
                continue
            top = entry.fitted[: self.config.startup_taint_images]
            if all(self.is_present(node.name, ref) for ref in top):
                why = f"top {len(top)} image(s) present" if top else "no eligible image to wait for"
                self.taint_removals.append(TaintRemoval(node.name, key, why))

    # --- report cells -------------------------------------------------------------------

    def cell(
        self, entry: _NodePlan, image: _Image, pulling: set[PullKey], started: set[PullKey]
    ) -> CellState:
        """The state of one (node, wanted image) pair."""
        name, ref = entry.node.name, image.image
        key = (name, ref)
        if entry.problem is not None:
            return CellState(name, ref, "ineligible", entry.problem)
        if ref in entry.not_placed:
            return CellState(name, ref, "ineligible", entry.not_placed[ref])
        if ref in entry.left_out:
            why = entry.left_out[ref]
            size = _size_on(image, entry.node)
            self.left_out.append(BudgetExclusion(name, ref, size, image.score, why))
            return CellState(name, ref, "ineligible", why)
        if ref in self.present.get(name, ()):
            return CellState(name, ref, "present", wanted=True)
        if key in pulling:
            return CellState(name, ref, "pulling", message="puller running", wanted=True)
        if key in started:
            return CellState(name, ref, "pulling", message="puller starting", wanted=True)
        record = self.records.get(key)
        if record is not None:
            return CellState(
                name,
                ref,
                "failed",
                record.reason,
                record.message,
                wanted=True,
                retry_at=retry_at(record, self.config),
                kind=observe.failure_kind(record.reason, record.message),
                attempts=record.attempts,
            )
        return CellState(name, ref, "missing", message=self.waiting.get(key, ""), wanted=True)

    def fill_cells(self) -> None:
        """Every (node, wanted image) cell. The hot path of a large cluster (a cell per node
        and image): most cells are present or ineligible, so those are built inline and
        counted in plain integers."""
        pulling = self.pulling
        started = {(p.node, image) for p in self.pulls for image in p.images}
        cells, counts, wanted = self.cells, self.counts, self.wanted
        present_per_image = [0] * len(wanted)
        for entry in self.node_plans.values():
            name = entry.node.name
            tally: Counter[str] = Counter()
            self.node_counts[name] = tally
            if entry.problem is not None:
                cells.extend(
                    CellState(name, image.image, "ineligible", entry.problem) for image in wanted
                )
                tally["ineligible"] = len(wanted)
                continue
            present = self.present.get(name, frozenset())
            not_placed, left_out = entry.not_placed, entry.left_out
            ineligible = present_here = 0
            for index, image in enumerate(wanted):
                ref = image.image
                why = not_placed.get(ref)
                if why is not None:
                    cells.append(CellState(name, ref, "ineligible", why))
                    ineligible += 1
                elif ref in present and ref not in left_out:
                    cells.append(CellState(name, ref, "present", "", "", True))
                    present_here += 1
                    present_per_image[index] += 1
                else:
                    cell = self.cell(entry, image, pulling, started)
                    cells.append(cell)
                    if cell.wanted:
                        counts[(ref, cell.state)] += 1
                        tally[cell.state] += 1
                    else:
                        ineligible += 1
            if ineligible:
                tally["ineligible"] += ineligible
            if present_here:
                tally["present"] += present_here
        for image, present_count in zip(wanted, present_per_image, strict=True):
            counts[(image.image, "present")] += present_count

    # --- CachedImage status and summaries -----------------------------------------------

    def status_and_images(self) -> tuple[list[StatusUpdate], list[ImageSummary]]:
        """Status patches (only changed fields) and the per-image summary."""
        latest: dict[str, PullRecord] = {}
        for record in self.records.values():
            best = latest.get(record.image)
            if best is None or (record.last_failure, record.node) > (best.last_failure, best.node):
                latest[record.image] = record
        updates: list[StatusUpdate] = []
        summaries: list[ImageSummary] = []
        for image in self.images:
            ref = image.image
            states = {s: self.counts[(ref, s)] for s in ("present", "pulling", "missing", "failed")}
            if not image.wanted:
                states = dict.fromkeys(states, 0)
            nodes_wanted = sum(states.values())
            failure = latest.get(ref)
            last_error = ""
            if failure is not None:
                last_error = f"{failure.node}: {failure.reason}: {failure.message}"
                last_error = last_error[:LAST_ERROR_MAX]
            for obj in image.objects:
                patch = _status_patch(
                    obj,
                    scoring.score(obj, self.now, self.config.score_half_life),
                    nodes_wanted,
                    states["present"],
                    last_error,
                )
                if patch:
                    updates.append(StatusUpdate(obj.name, patch))
            summaries.append(
                ImageSummary(
                    name=image.primary.name,
                    image=ref,
                    source=image.primary.source,
                    score=image.score,
                    wanted=image.wanted,
                    nodes_wanted=nodes_wanted,
                    nodes_present=states["present"],
                    nodes_pulling=states["pulling"],
                    nodes_failed=states["failed"],
                    last_error=last_error,
                )
            )
        return updates, summaries

    def node_summaries(self) -> list[NodeSummary]:
        out = []
        for entry in self.node_plans.values():
            tally = self.node_counts[entry.node.name]
            wanted_here = sum(tally[s] for s in ("present", "pulling", "missing", "failed"))
            out.append(
                NodeSummary(
                    name=entry.node.name,
                    eligible=entry.problem is None,
                    why=entry.problem or "",
                    urgent=entry.urgent_recent and tally["present"] < wanted_here,
                    budget=entry.budget,
                    budget_used=entry.budget_used,
                    wanted=wanted_here,
                    present=tally["present"],
                    pulling=tally["pulling"],
                    failed=tally["failed"],
                )
            )
        return out

    def result(self) -> Plan:
        status_updates, image_summaries = self.status_and_images()
        totals: Counter[str] = Counter()
        for tally in self.node_counts.values():
            totals.update(tally)
        wanted_pairs = sum(totals[s] for s in ("present", "pulling", "missing", "failed"))
        summary = Summary(
            nodes=len(self.nodes),
            images=len(self.wanted),
            wanted_pairs=wanted_pairs,
            present_pairs=totals["present"],
            pulling_pairs=totals["pulling"],
            failed_pairs=totals["failed"],
            missing_pairs=totals["missing"],
            ineligible_pairs=totals["ineligible"],
            coverage=totals["present"] / wanted_pairs if wanted_pairs else 1.0,
            pulls_started=len(self.pulls),
            keepers_created=len(self.keeper_actions),
            pods_deleted=len(self.deletions),
            taints_removed=len(self.taint_removals),
            status_updates=len(status_updates),
            budget_left_out=len(self.left_out),
            quiet_hours=self.quiet,
        )
        return Plan(
            now=self.now,
            pulls=tuple(self.pulls),
            keepers=tuple(self.keeper_actions),
            deletions=tuple(self.deletions),
            taint_removals=tuple(self.taint_removals),
            status_updates=tuple(status_updates),
            cells=tuple(self.cells),
            budget_left_out=tuple(self.left_out),
            outcomes=tuple(self.outcomes),
            pull_records=_sorted_records(self.records),
            images=tuple(image_summaries),
            nodes=tuple(self.node_summaries()),
            summary=summary,
            wake_at=self.wake_at,
        )


def _status_patch(
    obj: WantedImage, score: float, nodes_wanted: int, nodes_present: int, last_error: str
) -> dict[str, Any]:
    """The status fields whose stored value differs (a converged image gets an empty patch)."""
    reported = obj.reported
    patch: dict[str, Any] = {}
    if reported.score is None or abs(reported.score - score) > 0.0005:
        patch["score"] = score
    if reported.nodes_wanted != nodes_wanted:
        patch["nodesWanted"] = nodes_wanted
    if reported.nodes_present != nodes_present:
        patch["nodesPresent"] = nodes_present
    if reported.last_error != last_error:
        patch["lastError"] = last_error
    return patch


def _sorted_records(records: Mapping[PullKey, PullRecord]) -> dict[PullKey, PullRecord]:
    return {key: records[key] for key in sorted(records)}
