"""The prefetcher's typed data: what a sweep observes (Snapshot) and what it decides (Plan).

Everything here is plain, frozen data so the planner stays a pure function
`plan(snapshot, config) -> Plan` that tests can drive without a cluster:

- the runtime turns API objects into `NodeInfo`, `WantedImage` and `ManagedPod`
  (helpers: `prefetcher.observe.node_info / wanted_image / managed_pod`), adds the
  `PullRecord`s it kept from the previous sweep and the clock, and calls `plan()`;
- it then carries out the `Plan` (create pods, delete pods with a uid precondition,
  remove taints, merge-patch CachedImage status), stores `Plan.pull_records` for the
  next sweep, emits Events / metrics for `Plan.outcomes`, and serves the report.

Images are always *normalized* references (`imagesync.reference.normalize`). Times are
timezone-aware UTC datetimes. Sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from imagesync.cachedimage import PlacementProfile

Role = Literal["puller", "keeper"]
ContainerStateKind = Literal["waiting", "running", "terminated", "unknown"]
CellStateKind = Literal["present", "pulling", "missing", "failed", "ineligible"]
CELL_STATES: tuple[CellStateKind, ...] = ("present", "pulling", "missing", "failed", "ineligible")

PodManifest = dict[str, Any]
"""A Pod as the API server takes it (`apiVersion`, `kind`, `metadata`, `spec`)."""


# --------------------------------------------------------------------------------------
# Observed state (input)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint; only NoSchedule and NoExecute keep pods away."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class NodeInfo:
    """What the planner needs to know about a Node.

    `hinted_images` comes from `node.status.images` (normalized name → size): it caps at
    50 entries and lags, so it only refines size estimates and "other disk use"; it never
    proves that an image is present.
    """

    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    ready: bool = True
    unschedulable: bool = False
    disk_pressure: bool = False
    arch: str = ""  # kubernetes.io/arch or status.nodeInfo.architecture; "" = unknown
    os: str = ""  # kubernetes.io/os or status.nodeInfo.operatingSystem; "" = unknown (Linux)
    gpu_allocatable: int = 0
    # status.allocatable (resource → amount, quantities parsed): what pods may request in all.
    # Empty when the node reports none (then no request is held against it).
    allocatable: Mapping[str, float] = field(default_factory=dict)
    image_fs_capacity: int | None = None  # bytes; None = unknown (no budget limit)
    image_fs_other_used: int | None = None  # bytes used by things we do not manage, if known
    hinted_images: Mapping[str, int] = field(default_factory=dict)
    images_listed: int = 0  # entries in node.status.images (the kubelet caps it, 50 by default)
    created: datetime | None = None
    ready_since: datetime | None = None  # lastTransitionTime of the Ready condition


@dataclass(frozen=True, slots=True)
class ReportedStatus:
    """The part of a CachedImage's status the prefetcher writes, as currently stored."""

    score: float | None = None
    nodes_wanted: int | None = None
    nodes_present: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class WantedImage:
    """One CachedImage: the image, where it may run, and how much it is used."""

    name: str  # object name
    image: str  # normalized reference
    uid: str = ""
    source: str = "Learned"  # Declared, Observed or Catalog
    node_selector: Mapping[str, str] = field(default_factory=dict)
    profiles: tuple[PlacementProfile, ...] = ()
    last_seen: datetime | None = None
    use_count: int = 0
    daily_uses: Mapping[str, int] = field(default_factory=dict)  # "YYYY-MM-DD" → uses
    size: int | None = None  # bytes on disk when known
    compressed_size: int | None = None  # bytes a pull downloads, from the registry's manifest
    architectures: tuple[str, ...] = ()  # () = unknown (any)
    created: datetime | None = None
    reported: ReportedStatus = field(default_factory=ReportedStatus)
    placement: str = ""  # spec.placement: "All" | "Demand"; "" = the configured default
    # Learned: namespaces where a pod the API server stored used it (status.confirmedNamespaces).
    confirmed_namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ContainerObservation:
    """One container status of a managed pod (init containers included, `init=True`)."""

    name: str
    image: str  # normalized image of the container spec
    state: ContainerStateKind = "unknown"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    init: bool = False


@dataclass(frozen=True)
class ManagedPod:
    """A puller or keeper pod the prefetcher created (found by its labels)."""

    name: str
    uid: str
    node: str
    role: Role
    images: tuple[str, ...]  # puller: the images it pulls, in order; keeper: those it holds
    phase: str = "Pending"
    reason: str = ""  # pod status.reason, e.g. DeadlineExceeded, Evicted
    message: str = ""
    containers: tuple[ContainerObservation, ...] = ()
    created: datetime | None = None
    deleting: bool = False  # metadata.deletionTimestamp is set
    active_deadline: int | None = None  # spec.activeDeadlineSeconds
    attempt: int = 0  # puller: which attempt it is (annotation), 0 when unknown
    # Keeper: the images of its running containers, which are then left out of `containers`
    # (a thousand keepers of two hundred images: a set each instead of 200,000 observations).
    running: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StartingPod:
    """A workload pod bound to a node and still starting: its own pulls go first there."""

    node: str
    pod: str  # namespace/name
    since: datetime | None = None  # when it was scheduled (or created)
    # Registries (domains) of the images its containers still wait for: prefetches from them
    # wait, cluster-wide, so they never compete with this pod's pull for registry bandwidth.
    registries: tuple[str, ...] = ()
    # The images (normalized) its containers still wait for: a puller of ours pulling another
    # image on the node yields to it when one of them is missing there.
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PullRecord:
    """Backoff memory for one (node, image), kept by the runtime between sweeps.

    `pod_uid` is the puller whose failure was counted last, so a failed pod seen again
    (its delete not done yet) is not counted twice.
    """

    node: str
    image: str
    attempts: int
    last_failure: datetime
    reason: str
    message: str = ""
    pod_uid: str = ""


PullKey = tuple[str, str]
"""(node name, normalized image)."""


@dataclass(frozen=True)
class Workload:
    """A workload object with pod templates (Deployment, ..., a configured custom kind)."""

    key: str  # Kind/namespace/name
    images: tuple[str, ...]  # managed images of its in-scope pod templates
    profiles: tuple[PlacementProfile, ...] = ()  # one per in-scope pod template
    replicas: int | None = 1  # pods its templates ask for; None = one per eligible node
    schedule: str = ""  # CronJob: spec.schedule (cron syntax)
    time_zone: str = ""  # CronJob: spec.timeZone ("" = UTC here)


@dataclass(frozen=True, slots=True)
class RunningPod:
    """A workload pod running on a node: where its workload and its images are needed."""

    node: str
    workload: str  # key of its top owner (Kind/namespace/name), "" for a bare pod
    images: tuple[str, ...]  # normalized images of its containers


@dataclass(frozen=True, slots=True)
class UnschedulablePod:
    """A pod the scheduler could not place (no capacity): a node that joins may take it."""

    pod: str  # namespace/name
    images: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rollout:
    """A workload whose pod template changed its images at `at` (seen by the runtime)."""

    workload: str
    old_images: tuple[str, ...]
    new_images: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class Demand:
    """Where images are needed now and soon: the planner pulls there first, and only there
    with `placement: demand`."""

    workloads: tuple[Workload, ...] = ()
    running: tuple[RunningPod, ...] = ()
    unschedulable: tuple[UnschedulablePod, ...] = ()
    rollouts: tuple[Rollout, ...] = ()
    # Owner links above the pods' own: ReplicaSet → Deployment, Job → CronJob (keys).
    parents: Mapping[str, str] = field(default_factory=dict)
    # Image → the pools (values of `nodePoolLabels`) its pods ran in before, as the runtime
    # remembers them (`prefetcher.poolhistory`): a finished Job's pools still count.
    ran_in: Mapping[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # Node → the images its workload pods used within `budgetHold`, as the runtime remembers
    # them (`prefetcher.budgethold`): the node's disk budget keeps their room that long.
    pods_used: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Everything one planning step looks at; `now` is the clock."""

    now: datetime
    nodes: tuple[NodeInfo, ...] = ()
    images: tuple[WantedImage, ...] = ()
    pods: tuple[ManagedPod, ...] = ()
    pull_records: Mapping[PullKey, PullRecord] = field(default_factory=dict)
    starting: tuple[StartingPod, ...] = ()
    demand: Demand = field(default_factory=Demand)
    # Registry → bytes per second one of our pulls from it got, as last measured (kept by
    # the runtime between passes, like `pull_records`).
    pull_throughput: Mapping[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Decisions (output)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullAction:
    """Create this puller pod, which pulls `images` one after another (highest rank first).
    Listed in the order they should be started."""

    node: str
    images: tuple[str, ...]
    pod_name: str
    urgent: bool
    why: str  # "new node", "new image in use", "routine"
    score: float  # of the first image
    size: int  # estimated bytes on disk, all images
    deadline_seconds: int
    attempt: int  # 1 for a first try (a retry pulls its image alone)
    pod: PodManifest


@dataclass(frozen=True)
class KeeperAction:
    """Create this keeper pod; the keepers in `replaces` are deleted once it runs."""

    node: str
    pod_name: str
    images: tuple[str, ...]
    replaces: tuple[str, ...]
    pod: PodManifest


@dataclass(frozen=True, slots=True)
class PodDeletion:
    """Delete this pod (use `uid` as a precondition so a re-created namesake survives)."""

    name: str
    uid: str
    node: str
    role: Role
    why: str
    yielded_to: str = ""  # a puller deleted for a workload pod (namespace/name) starting there


@dataclass(frozen=True, slots=True)
class TaintRemoval:
    """Remove the startup taint `key` from `node`: its top images are present."""

    node: str
    key: str
    why: str


@dataclass(frozen=True)
class StatusUpdate:
    """Merge-patch `status` of CachedImage `name` with `patch` (only fields that changed)."""

    name: str
    patch: Mapping[str, Any]


class CellState(NamedTuple):
    """The state of one (node, image) pair for the report (a NamedTuple: a large cluster's
    plan builds one per node and image, and a tuple is several times cheaper to make)."""

    node: str
    image: str
    state: CellStateKind
    reason: str = ""  # kubelet reason (failed) or why (ineligible), "" otherwise
    message: str = ""  # kubelet message (failed), details otherwise
    wanted: bool = False  # counts in coverage: eligible and within the disk budget
    retry_at: datetime | None = None  # failed: when the next attempt may start
    kind: str = ""  # failed: not-found | unauthorized | no-matching-platform | deadline | ...
    attempts: int = 0  # failed: failures so far


@dataclass(frozen=True, slots=True)
class BudgetExclusion:
    """An eligible image that the node's disk budget left out."""

    node: str
    image: str
    size: int
    score: float
    why: str


class PullOutcome(NamedTuple):
    """A finished puller seen in this snapshot (report each `pod_uid` once). A NamedTuple:
    the first pass after a start reads one per image of every finished puller (200,000 at
    1,000 nodes x 200 images), and a tuple is three times cheaper to make than a frozen
    dataclass."""

    node: str
    image: str
    pod: str
    pod_uid: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    seconds: float | None = None  # pod creation → image ready, when known
    size: int = 0  # estimated bytes
    kind: str = ""  # failure class, see prefetcher.presence.failure_kind


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """Per image: the score and how many eligible nodes want / have it."""

    name: str
    image: str
    source: str
    score: float
    wanted: bool  # False: released (learned, unused for image_retention)
    nodes_wanted: int
    nodes_present: int
    nodes_pulling: int
    nodes_failed: int
    last_error: str


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """Per node: eligibility, budget and counts."""

    name: str
    eligible: bool
    why: str  # "" when eligible
    urgent: bool  # joined / turned Ready recently and not warm yet
    budget: int | None  # bytes; None = unknown capacity (no limit)
    budget_used: int  # bytes of wanted images within the budget
    wanted: int
    present: int
    pulling: int
    failed: int
    budget_reason: str = ""  # which limit sets the budget (diskBudget, or the GC threshold)


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts across the cluster; `coverage` = present ÷ wanted (node, image) pairs."""

    nodes: int
    images: int
    wanted_pairs: int
    present_pairs: int
    pulling_pairs: int
    failed_pairs: int
    missing_pairs: int
    ineligible_pairs: int
    coverage: float  # 1.0 when nothing is wanted
    pulls_started: int
    keepers_created: int
    pods_deleted: int
    taints_removed: int
    status_updates: int
    budget_left_out: int
    quiet_hours: bool


@dataclass(frozen=True)
class Plan:
    """What a sweep should do, and what the report shows."""

    now: datetime
    pulls: tuple[PullAction, ...] = ()
    keepers: tuple[KeeperAction, ...] = ()
    deletions: tuple[PodDeletion, ...] = ()
    taint_removals: tuple[TaintRemoval, ...] = ()
    status_updates: tuple[StatusUpdate, ...] = ()
    cells: Sequence[CellState] = ()  # the planner's: a CellGrid (prefetcher.cellgrid)
    budget_left_out: tuple[BudgetExclusion, ...] = ()
    outcomes: Sequence[PullOutcome] = ()  # the planner's: PullOutcomes (one tuple a puller)
    pull_records: Mapping[PullKey, PullRecord] = field(default_factory=dict)
    pull_throughput: Mapping[str, float] = field(default_factory=dict)
    images: tuple[ImageSummary, ...] = ()
    nodes: tuple[NodeSummary, ...] = ()
    summary: Summary | None = None
    # The next moment the plan would differ with nothing else changing (a retry falls due, a
    # puller runs past its deadline, a deferred keeper update or a hold-back expires).
    wake_at: datetime | None = None
    # The workload pods starting now (namespace/name) that this plan waits for: they held
    # back or throttled a pull, made a puller yield, or push back a puller's deadline on
    # their node. Only one of these starting (or going) changes the plan; another's start
    # needs no pass.
    holding: frozenset[str] = frozenset()
    # (keeper name, images): once that keeper runs all of those images, the plan deletes a
    # pod (the finished puller that guards them, or the keeper it replaces). A keeper's
    # container that comes up and completes none of these needs no pass.
    guard_waits: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def writes(self) -> int:
        """API writes this plan asks for; 0 in a converged steady state."""
        return (
            len(self.pulls)
            + len(self.keepers)
            + len(self.deletions)
            + len(self.taint_removals)
            + len(self.status_updates)
        )
