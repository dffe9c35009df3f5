"""The planner alone on a converged cluster of N nodes x M images: full and incremental passes.

    .venv/bin/python bench/prefetch_scale.py --planner-only [--sizes 100x20,300x60,...]

A converged snapshot is built the way the prefetcher sees a real fleet: a few node pools
(CPU, GPU, a tainted pool), learned images with placement profiles (some GPU-only, some
pinned to a pool) and declared ones, `node.status.images` listing each node's 50 largest
images, one running keeper per node holding its target images, and CachedImage status
already written, so the full plan has no writes. Then it times:

- a full plan (what the sweep runs: the incremental planner from scratch), best of a few;
- incremental passes after the full plan: nothing changed, one node joined, one new image
  declared, one node's keeper holding one image fewer.

Then the same cluster converging, as the running prefetcher sees it between two sweeps:
every node with a finished puller of all its images waiting for its keeper ("pullers
done"), or with its puller still running, half its images pulled ("pullers running").
For each, the sweep, a node joining and a new image are timed (with the share of the new
image's pass spent in garbage collection), and a profile of the sweep says which stage
spent the CPU. The process collects garbage as the running prefetcher does
(`memory.keep_collections_out_of_passes`).
"""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import pstats
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from imagesync.cachedimage import PlacementProfile
from imagesync.config import Config
from prefetcher import memory
from prefetcher.model import (
    ContainerObservation,
    ManagedPod,
    NodeInfo,
    Plan,
    ReportedStatus,
    Snapshot,
    Taint,
    WantedImage,
)
from prefetcher.planner import plan
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pods import keeper_name, puller_name

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REGISTRY = "harbor.example.internal"
MB = 1_000_000
TI = 2**40
SIZES = ((100, 20), (300, 60), (1000, 200), (3000, 200))
FULL_TARGET = 1.0  # seconds, at 1000 x 200
CHANGE_TARGET = 0.050  # seconds, at 1000 x 200


def _profile(**more: object) -> PlacementProfile:
    base = PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=False,
        namespace="team",
        ownerKind="Deployment",
    )
    base.update(more)  # type: ignore[typeddict-item]
    return base


def fleet_node(index: int, *, joined: datetime | None = None) -> NodeInfo:
    """Node `index` of the fleet: 80 % CPU, 10 % GPU, 10 % a tainted batch pool."""
    pool = "gpu" if index % 10 == 0 else "batch" if index % 10 == 5 else "cpu"
    name = f"{pool}-{index:05d}"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "topology.kubernetes.io/zone": f"zone-{'abc'[index % 3]}",
        "node.kubernetes.io/instance-type": f"{pool}.8xlarge",
        "pool": pool,
    }
    if pool == "gpu":
        labels["nvidia.com/gpu.present"] = "true"
    taints = (Taint("dedicated", "batch", "NoSchedule"),) if pool == "batch" else ()
    since = joined or NOW - timedelta(days=20)
    return NodeInfo(
        name=name,
        uid=f"uid-{name}",
        labels=labels,
        taints=taints,
        arch="amd64",
        os="linux",
        gpu_allocatable=8 if pool == "gpu" else 0,
        image_fs_capacity=2 * TI,
        created=since,
        ready_since=since,
    )


def fleet_image(index: int, *, created: datetime | None = None) -> WantedImage:
    """Image `index`: 10-500 MB compressed (x2.5 on disk); one in five declared, one in
    ten GPU-only, one in ten for the tainted batch pool, the rest for any CPU pod."""
    ref = f"{REGISTRY}/fleet/svc-{index:04d}:1.0"
    disk = int((10 + (index * 37) % 490) * MB * 2.5)
    if index % 5 == 0:
        return WantedImage(
            name=f"svc-{index:04d}", image=ref, uid=f"uid-{index}", source="Declared", size=disk
        )
    profiles: tuple[PlacementProfile, ...]
    if index % 10 == 1:
        profiles = (_profile(gpu=True, nodeSelector={"pool": "gpu"}),)
    elif index % 10 == 3:
        profiles = (
            _profile(
                nodeSelector={"pool": "batch"},
                tolerations=[{"key": "dedicated", "operator": "Equal", "value": "batch"}],
            ),
        )
    else:
        profiles = (_profile(), _profile(namespace="other", ownerKind="Job"))
    days = {(NOW - timedelta(days=d)).strftime("%Y-%m-%d"): (index * 7 + d) % 40 for d in range(7)}
    return WantedImage(
        name=f"svc-{index:04d}",
        image=ref,
        uid=f"uid-{index}",
        profiles=profiles,
        last_seen=NOW - timedelta(hours=1),
        use_count=sum(days.values()),
        daily_uses=days,
        size=disk,
        created=created or NOW - timedelta(days=30),
    )


def keeper(node: NodeInfo, images: list[str]) -> ManagedPod:
    """A running keeper holding `images` on `node`."""
    name = keeper_name(node.name, images)
    return ManagedPod(
        name=name,
        uid=f"uid-{name}",
        node=node.name,
        role="keeper",
        images=tuple(images),
        phase="Running",
        containers=tuple(
            ContainerObservation(f"keep-{i}", ref, "running") for i, ref in enumerate(images)
        ),
        created=NOW - timedelta(days=1),
    )


def with_hints(node: NodeInfo, images: dict[str, int], held: list[str]) -> NodeInfo:
    """The node listing its 50 largest held images, as node.status.images does."""
    largest = sorted(held, key=lambda ref: (-images[ref], ref))[:50]
    return dataclasses.replace(node, hinted_images={ref: images[ref] for ref in largest})


def converge(snapshot: Snapshot, config: Config) -> Snapshot:
    """The snapshot with a running keeper per node for its target and status written."""
    sizes = {obj.image: obj.size or 0 for obj in snapshot.images}
    first = plan(snapshot, config)
    held: dict[str, list[str]] = {}
    for cell in first.cells:
        if cell.wanted:
            held.setdefault(cell.node, []).append(cell.image)
    nodes = tuple(with_hints(n, sizes, held.get(n.name, [])) for n in snapshot.nodes)
    pods = tuple(keeper(n, sorted(held[n.name])) for n in nodes if n.name in held)
    settled = dataclasses.replace(snapshot, nodes=nodes, pods=pods)
    summaries = {s.image: s for s in plan(settled, config).images}
    images = tuple(
        dataclasses.replace(
            obj,
            reported=ReportedStatus(
                score=summaries[obj.image].score,
                nodes_wanted=summaries[obj.image].nodes_wanted,
                nodes_present=summaries[obj.image].nodes_present,
                last_error="",
            ),
        )
        for obj in settled.images
    )
    return dataclasses.replace(settled, images=images)


def converged_snapshot(nodes: int, images: int, config: Config) -> Snapshot:
    start = Snapshot(
        now=NOW,
        nodes=tuple(fleet_node(i) for i in range(nodes)),
        images=tuple(fleet_image(i) for i in range(images)),
    )
    return converge(start, config)


def puller(node: NodeInfo, images: list[str], pulled: int) -> ManagedPod:
    """A puller of `images` on `node` whose first `pulled` images have pulled (finished, its
    pod Succeeded, when that is all of them; running, its next image pulling, otherwise)."""
    name = puller_name(node.name, images)
    done = pulled >= len(images)
    # A running puller's last image finished 5 s ago: it is pulling, not stuck.
    created = NOW - (timedelta(hours=1) if done else timedelta(seconds=10 * pulled + 5))
    containers = [
        ContainerObservation(
            "install", "registry.k8s.io/pause:3.9", "terminated", finished_at=created, init=True
        )
    ]
    for i, ref in enumerate(images):
        started = created + timedelta(seconds=10 * (i + 1))
        if i < pulled:
            state = "terminated"
        elif i == pulled:
            state = "waiting"
        else:
            state = "unknown"
        containers.append(
            ContainerObservation(
                f"pull-{i}",
                ref,
                state,  # type: ignore[arg-type]
                reason="PodInitializing" if state == "waiting" else "",
                exit_code=0 if state == "terminated" else None,
                started_at=started if state == "terminated" else None,
                finished_at=started if state == "terminated" else None,
            )
        )
    return ManagedPod(
        name=name,
        uid=f"uid-{name}",
        node=node.name,
        role="puller",
        images=tuple(images),
        phase="Succeeded" if done else "Running",
        containers=tuple(containers),
        created=created,
    )


def converging(converged: Snapshot, *, running: bool) -> Snapshot:
    """The converged snapshot before its keepers ran: each node's images pulled by one
    puller (joinPullBatchSize holds all of them) that waits for the keeper, or, `running`,
    that still pulls the second half of them (the nodes list only what is pulled)."""
    by_node = {n.name: n for n in converged.nodes}
    pods: list[ManagedPod] = []
    nodes: list[NodeInfo] = []
    for keeping in converged.pods:
        node = by_node.pop(keeping.node)
        images = list(keeping.images)
        pulled = len(images) // 2 if running else len(images)
        pods.append(puller(node, images, pulled))
        if running:
            held = set(images[:pulled])
            hints = {r: s for r, s in (node.hinted_images or {}).items() if r in held}
            node = dataclasses.replace(node, hinted_images=hints)
        nodes.append(node)
    nodes.extend(by_node.values())
    return dataclasses.replace(
        converged, nodes=tuple(sorted(nodes, key=lambda n: n.name)), pods=tuple(pods)
    )


@dataclass(frozen=True)
class Timing:
    """Best of a few runs: wall-clock and CPU seconds (the CPU figure is what a loaded
    machine cannot inflate)."""

    wall: float
    cpu: float

    def ms(self) -> str:
        return f"{self.wall * 1e3:.1f} ({self.cpu * 1e3:.1f})"


class Collections:
    """CPU seconds spent in garbage collection while it is installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started

    def during(self, action: Callable[[], object]) -> float:
        """Collection seconds during one `action`."""
        self.seconds = 0.0
        gc.callbacks.append(self)
        try:
            action()
        finally:
            gc.callbacks.remove(self)
        return self.seconds


def _timed(prepare: Callable[[], object], action: Callable[[], Plan], repeat: int) -> Timing:
    """`action` timed `repeat` times, each after `prepare` and a garbage collection (so one
    run's garbage is not charged to the next)."""
    walls, cpus = [], []
    for _ in range(repeat):
        prepare()
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus))


@dataclass(frozen=True)
class Figures:
    nodes: int
    images: int
    full: Timing
    unchanged: Timing
    node_joined: Timing
    new_image: Timing
    keeper_replaced: Timing
    writes: int


def changes(snapshot: Snapshot, nodes: int, images: int) -> dict[str, Snapshot]:
    """The snapshot after each change an incremental pass is timed on."""
    joiner = fleet_node(nodes, joined=NOW - timedelta(seconds=5))
    new = fleet_image(images, created=NOW - timedelta(seconds=5))
    # One node's keeper changes what it holds (one image fewer, as after a GC or an
    # eviction): that node's cells, pulls and keeper are planned again.
    pods = list(snapshot.pods)
    old = pods[0]
    pods[0] = keeper(next(n for n in snapshot.nodes if n.name == old.node), list(old.images[1:]))
    return {
        "node joined": dataclasses.replace(snapshot, nodes=(*snapshot.nodes, joiner)),
        "new image": dataclasses.replace(snapshot, images=(*snapshot.images, new)),
        "keeper replaced": dataclasses.replace(snapshot, pods=tuple(pods)),
    }


def measure(nodes: int, images: int, config: Config, repeat: int = 3) -> tuple[Figures, Snapshot]:
    """Time full and incremental plans on a converged snapshot; checks that each incremental
    plan equals plan() of the same snapshot."""
    snapshot = converged_snapshot(nodes, images, config)
    reference = plan(snapshot, config)
    planner = IncrementalPlanner(config)
    full = _timed(lambda: None, partial(planner.full, snapshot), repeat)
    assert planner.full(snapshot) == reference, "the sweep's plan differs from plan()"
    unchanged = _timed(lambda: None, partial(planner.plan, snapshot), repeat)
    assert planner.plan(snapshot) == reference, "incremental plan differs from plan()"
    timings: dict[str, Timing] = {}
    for name, after in changes(snapshot, nodes, images).items():
        timings[name] = _timed(
            partial(planner.full, snapshot), partial(planner.plan, after), repeat
        )
        planner.full(snapshot)
        assert planner.plan(after) == plan(after, config), f"{name}: differs from plan()"
    figures = Figures(
        nodes=nodes,
        images=images,
        full=full,
        unchanged=unchanged,
        node_joined=timings["node joined"],
        new_image=timings["new image"],
        keeper_replaced=timings["keeper replaced"],
        writes=reference.writes,
    )
    return figures, snapshot


@dataclass(frozen=True)
class Converging:
    """Plan times on a converging snapshot, and where the sweep's CPU went."""

    name: str
    first_sweep: Timing  # a planner that has seen none of these pullers yet
    sweep: Timing
    node_joined: Timing
    new_image: Timing
    writes: int
    new_image_collections: float  # CPU seconds of garbage collection in the new image's pass
    stages: tuple[tuple[str, float], ...]  # (stage, cumulative CPU seconds) of one sweep
    top: tuple[tuple[str, float, float], ...]  # (function, own seconds, cumulative)


# The planner's stages as the profile names them (function name → what it does).
STAGES = (
    ("merge", "images merged"),
    ("_present", "pods' images"),
    ("_pod_images", "node pods"),
    ("_targets", "targets"),
    ("read_pullers", "pullers"),
    ("choose_pulls", "pulls"),
    ("plan_keepers", "keepers"),
    ("plan_startup_taints", "taints"),
    ("fill", "cells"),
    ("result", "summary"),
)


def profile(
    action: Callable[[], Plan], top: int = 12
) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float, float], ...]]:
    """cProfile of one `action`: each stage's cumulative seconds, and the `top` functions by
    their own time."""
    profiler = cProfile.Profile(time.process_time)
    gc.collect()
    profiler.runcall(action)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    by_name: dict[str, float] = {}
    rows: list[tuple[str, float, float]] = []
    for (path, line, function), (_, _, own, cumulative, _) in stats.items():
        if path.endswith(
            (
                "incremental.py",
                "imagebook.py",
                "pullers.py",
                "pulls.py",
                "keepers.py",
                "taints.py",
                "cellbook.py",
                "summary.py",
            )
        ):
            by_name[function] = max(by_name.get(function, 0.0), cumulative)
        where = f"{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}" if "/" in path else path
        rows.append((f"{where}:{line}({function})", own, cumulative))
    stages = tuple((label, by_name.get(function, 0.0)) for function, label in STAGES)
    rows.sort(key=lambda r: -r[1])
    return stages, tuple(rows[:top])


def measure_converging(
    converged: Snapshot, nodes: int, images: int, config: Config, *, running: bool, repeat: int = 3
) -> Converging:
    """Time the sweep, a node joining and a new image on the converging snapshot (each
    incremental plan checked against plan()), and profile its sweep."""
    snapshot = converging(converged, running=running)
    reference = plan(snapshot, config)
    planner = IncrementalPlanner(config)
    sweep = _timed(lambda: None, partial(planner.full, snapshot), repeat)
    assert planner.full(snapshot) == reference, "the sweep's plan differs from plan()"
    timings: dict[str, Timing] = {}
    after_change = changes(snapshot, nodes, images)
    for name in ("node joined", "new image"):
        after = after_change[name]
        timings[name] = _timed(
            partial(planner.full, snapshot), partial(planner.plan, after), repeat
        )
        planner.full(snapshot)
        assert planner.plan(after) == plan(after, config), f"{name}: differs from plan()"
    planner.full(snapshot)
    gc.collect()
    collected = Collections().during(partial(planner.plan, after_change["new image"]))
    # The sweep as it runs after the first one: a finished puller is read once, at the
    # first pass that sees it (the first sweep's extra CPU is the "first sweep" figure).
    first = _timed(lambda: None, partial(IncrementalPlanner(config).full, snapshot), 1)
    stages, top = profile(partial(planner.full, snapshot))
    return Converging(
        name="pullers running" if running else "pullers done",
        first_sweep=first,
        sweep=sweep,
        node_joined=timings["node joined"],
        new_image=timings["new image"],
        writes=reference.writes,
        new_image_collections=collected,
        stages=stages,
        top=top,
    )


def _growth(value: float, base: float) -> str:
    return f"x{value / base:.1f}" if base > 0 else "-"


def run(sizes: tuple[tuple[int, int], ...] = SIZES, say: Callable[[str], None] = print) -> int:
    """Measure every size; print each figure next to its target and its growth with size."""
    config = Config()
    memory.keep_collections_out_of_passes()
    say(f"garbage collection thresholds {gc.get_threshold()} (as the prefetcher runs)")
    say("planner only, on converged snapshots: best of 3, wall ms (CPU ms)")
    columns = ("full plan", "unchanged", "node joins", "new image", "keeper swap")
    say(f"  {'size':>9} {'pairs':>7} " + " ".join(f"{c:>16}" for c in columns))
    results: list[Figures] = []
    converged: dict[tuple[int, int], Snapshot] = {}
    for nodes, images in sizes:
        f, converged[(nodes, images)] = measure(nodes, images, config)
        results.append(f)
        base = results[0]
        row = (f.full, f.unchanged, f.node_joined, f.new_image, f.keeper_replaced)
        first = (base.full, base.unchanged, base.node_joined, base.new_image, base.keeper_replaced)
        say(
            f"  {f'{nodes}x{images}':>9} {nodes * images:>7} "
            + " ".join(f"{t.ms():>16}" for t in row)
        )
        say(
            f"  {'growth':>9} {_growth(nodes * images, base.nodes * base.images):>7} "
            + " ".join(f"{_growth(t.cpu, b.cpu):>16}" for t, b in zip(row, first, strict=True))
        )
        if f.writes:
            say(f"  warning: the converged snapshot still plans {f.writes} writes")
    at = next((f for f in results if (f.nodes, f.images) == (1000, 200)), None)
    if at is not None:
        change = max(at.node_joined, at.new_image, key=lambda t: t.cpu)
        say(
            f"  at 1000x200: full plan {at.full.ms()} ms, target <= {FULL_TARGET * 1e3:g} ms: "
            f"{_verdict(at.full, FULL_TARGET)}; a node joins or a new image "
            f"{change.ms()} ms, target <= {CHANGE_TARGET * 1e3:g} ms: "
            f"{_verdict(change, CHANGE_TARGET)}"
        )
    say("")
    say("the same clusters converging (every node's puller done, or half done, no keeper yet)")
    stages = ("first sweep", "sweep", "node joins", "new image")
    say(f"  {'size':>9} {'snapshot':>16} " + " ".join(f"{c:>16}" for c in stages))
    smallest: dict[str, tuple[int, tuple[Timing, ...]]] = {}  # snapshot → (pairs, times)
    for (nodes, images), snapshot in converged.items():
        for running in (False, True):
            c = measure_converging(snapshot, nodes, images, config, running=running)
            times = (c.first_sweep, c.sweep, c.node_joined, c.new_image)
            say(
                f"  {f'{nodes}x{images}':>9} {c.name:>16} "
                + " ".join(f"{t.ms():>16}" for t in times)
                + f"   ({c.writes} writes; new image: "
                + f"{c.new_image_collections * 1e3:.1f} ms collecting garbage)"
            )
            pairs, at_smallest = smallest.setdefault(c.name, (nodes * images, times))
            say(
                f"  {'growth':>9} {_growth(nodes * images, pairs):>16} "
                + " ".join(
                    f"{_growth(t.cpu, b.cpu):>16}" for t, b in zip(times, at_smallest, strict=True)
                )
            )
            if (nodes, images) == max(converged):
                say(
                    "    sweep CPU by stage (cumulative ms): "
                    + ", ".join(f"{label} {seconds * 1e3:.0f}" for label, seconds in c.stages)
                )
                say("    top functions by own CPU (own ms / cumulative ms):")
                for function, own, cumulative in c.top:
                    say(f"      {own * 1e3:8.1f} {cumulative * 1e3:8.1f}  {function}")
            if (nodes, images) == (1000, 200):
                change = max(c.node_joined, c.new_image, key=lambda t: t.cpu)
                say(
                    f"    at 1000x200, {c.name}: sweep {_verdict(c.sweep, FULL_TARGET)}; "
                    f"a node joins or a new image {_verdict(change, CHANGE_TARGET)}"
                )
    return 0


def _verdict(timing: Timing, target: float) -> str:
    if timing.wall <= target:
        return "met"
    if timing.cpu <= target:
        return "met in CPU time (the wall clock waited for other processes)"
    return "MISSED"
