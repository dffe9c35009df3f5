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
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from imagesync.cachedimage import PlacementProfile
from imagesync.config import Config
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
from prefetcher.pods import keeper_name

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


@dataclass(frozen=True)
class Timing:
    """Best of a few runs: wall-clock and CPU seconds (the CPU figure is what a loaded
    machine cannot inflate)."""

    wall: float
    cpu: float

    def ms(self) -> str:
        return f"{self.wall * 1e3:.1f} ({self.cpu * 1e3:.1f})"


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


def measure(nodes: int, images: int, config: Config, repeat: int = 3) -> Figures:
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
    return Figures(
        nodes=nodes,
        images=images,
        full=full,
        unchanged=unchanged,
        node_joined=timings["node joined"],
        new_image=timings["new image"],
        keeper_replaced=timings["keeper replaced"],
        writes=reference.writes,
    )


def _growth(value: float, base: float) -> str:
    return f"x{value / base:.1f}" if base > 0 else "-"


def run(sizes: tuple[tuple[int, int], ...] = SIZES, say: Callable[[str], None] = print) -> int:
    """Measure every size; print each figure next to its target and its growth with size."""
    config = Config()
    say("planner only, on converged snapshots: best of 3, wall ms (CPU ms)")
    columns = ("full plan", "unchanged", "node joins", "new image", "keeper swap")
    say(f"  {'size':>9} {'pairs':>7} " + " ".join(f"{c:>16}" for c in columns))
    results: list[Figures] = []
    for nodes, images in sizes:
        f = measure(nodes, images, config)
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
    return 0


def _verdict(timing: Timing, target: float) -> str:
    if timing.wall <= target:
        return "met"
    if timing.cpu <= target:
        return "met in CPU time (the wall clock waited for other processes)"
    return "MISSED"
