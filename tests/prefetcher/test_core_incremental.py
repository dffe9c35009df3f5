"""The incremental planner equals plan() on every pass of random change sequences."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.config import Config
from prefetcher.model import (
    ContainerObservation,
    ContainerStateKind,
    Demand,
    ManagedPod,
    Plan,
    Rollout,
    RunningPod,
    Snapshot,
    StartingPod,
    Taint,
    UnschedulablePod,
    Workload,
)
from prefetcher.planner import plan
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.planning.pullers import finished_puller
from prefetcher.pods import puller_container_name
from tests.prefetcher.test_core_fixtures import GB, World, image, node, profile
from tests.prefetcher.test_core_properties import (
    POOL,
    REQUESTS,
    allocatable_st,
    configs,
    images_st,
    nodes_st,
    with_requests,
)

EXTRA = [f"harbor.example.internal/team/svc-{i}:1.0" for i in range(6)]
DEMAND_EVENTS = (
    "workload",
    "workload gone",
    "pod runs",
    "pod stops",
    "rollout",
    "unschedulable",
    "pods used",
    "hold over",
)
EVENTS = [
    "join",
    "leave",
    "label",
    "taint",
    "ready",
    "cordon",
    "capacity",
    "hints",
    "resize",
    "add image",
    "remove image",
    "rescore",
    "pin image",
    "fail",
    "heal",
    "starting",
    "started",
    "kill keeper",
    "stall",
    "unstall",
    "gc",
    "time",
    "day",
    "sweep",
    *DEMAND_EVENTS,
]


@dataclass
class TwinWorld(World):
    """A World whose every pass is planned twice: incrementally and by plan()."""

    planner: IncrementalPlanner | None = None
    starting: list[StartingPod] = field(default_factory=list)
    demand: Demand = field(default_factory=Demand)
    passes: int = 0
    slow: set[str] = field(default_factory=set)  # images whose pulls hang while listed

    def snapshot(self) -> Snapshot:
        return replace(super().snapshot(), starting=tuple(self.starting), demand=self.demand)

    def plan(self) -> Plan:
        snapshot = self.snapshot()
        expected = plan(snapshot, self.config)
        assert self.planner is not None
        got = self.planner.plan(snapshot)
        self.passes += 1
        assert got == expected, _first_difference(got, expected)
        return got

    def kubelets(self) -> None:
        """As World's, but a puller reaching an image of `slow` keeps pulling it: the pod
        object stays the same, pass after pass, until that image is no longer slow."""
        for name, pod in list(self.pods.items()):
            if pod.role != "puller":
                continue
            if _stalled(pod) and self.slow.isdisjoint(pod.images):
                self.pods[name] = replace(pod, phase="Pending", containers=())  # pulls on
            elif not pod.containers and not self.slow.isdisjoint(pod.images):
                self.pods[name] = self._stall(pod)
        super().kubelets()

    def _stall(self, pod: ManagedPod) -> ManagedPod:
        """`pod` with its images before the first slow one pulled, and that one pulling."""
        containers: list[ContainerObservation] = []
        for ref in pod.images:
            if containers and containers[-1].state != "terminated":
                state: ContainerStateKind = "unknown"
                containers.append(ContainerObservation(puller_container_name(ref), ref, state))
            elif ref in self.slow:
                containers.append(
                    ContainerObservation(
                        puller_container_name(ref), ref, "waiting", reason="PodInitializing"
                    )
                )
            else:
                self.disk.setdefault(pod.node, set()).add(ref)
                containers.append(
                    ContainerObservation(
                        puller_container_name(ref),
                        ref,
                        "terminated",
                        exit_code=0,
                        started_at=self.now,
                        finished_at=self.now,
                    )
                )
        return replace(pod, phase="Running", containers=tuple(containers))


def _stalled(pod: ManagedPod) -> bool:
    return any(c.state == "waiting" and c.reason == "PodInitializing" for c in pod.containers)


def _first_difference(got: Plan, expected: Plan) -> str:
    for name in Plan.__dataclass_fields__:
        a, b = getattr(got, name), getattr(expected, name)
        if a != b:
            if isinstance(a, tuple) and isinstance(b, tuple):
                for x, y in zip(a, b, strict=False):
                    if x != y:
                        return f"{name}: {x!r} != {y!r}"
                return f"{name}: {len(a)} != {len(b)} items"
            return f"{name}: {a!r} != {b!r}"
    return "equal"


def _apply(w: TwinWorld, event: str, pick: int, data: Any) -> None:
    """One change to the cluster, of the kind named by `event`."""
    nodes, images = w.nodes, w.images
    if event == "join":
        name = f"new-{w.uid_counter}-{pick}"
        w.nodes = [
            *nodes,
            node(
                name,
                gpu=pick % 2 * 8,
                capacity=[None, 40 * GB, 500 * GB][pick % 3],
                age=timedelta(0),
                allocatable=data.draw(allocatable_st(pick % 2 * 8)),
            ),
        ]
        w.uid_counter += 1
    elif not nodes and event in NODE_EVENTS:
        return
    elif event == "leave":
        del w.nodes[pick % len(nodes)]
    elif event in NODE_EVENTS:
        i = pick % len(nodes)
        n = nodes[i]
        if event == "label":
            labels = dict(n.labels)
            if labels.pop("pool", None) is None:
                labels["pool"] = "a"
            n = replace(n, labels=labels)
        elif event == "taint":
            taints = () if n.taints else (Taint("dedicated", "infer", "NoSchedule"),)
            n = replace(n, taints=taints)
        elif event == "ready":
            n = replace(n, ready=not n.ready, ready_since=w.now if not n.ready else None)
        elif event == "cordon":
            n = replace(n, unschedulable=not n.unschedulable)
        elif event == "resize":  # the kubelet reports another allocatable, labels unchanged
            n = replace(n, allocatable=data.draw(allocatable_st(n.gpu_allocatable)))
        elif event == "capacity":
            n = replace(
                n, image_fs_capacity=data.draw(st.sampled_from([None, 10 * GB, 25 * GB, 500 * GB]))
            )
        else:
            refs = data.draw(st.lists(st.sampled_from(POOL + EXTRA), max_size=4, unique=True))
            # Nodes list the same image with different sizes: the largest is its hint.
            n = replace(n, hinted_images={ref: (1 + (len(ref) + pick) % 7) * GB for ref in refs})
        w.nodes[i] = n
    elif event == "add image":
        known = {i.image for i in images}
        free = [ref for ref in POOL + EXTRA if ref not in known]
        if free:
            ref = free[pick % len(free)]
            w.images = [
                *images,
                image(
                    ref,
                    uses=pick % 40,
                    size=data.draw(st.sampled_from([None, 5_000_000, GB, 12 * GB])),
                    source=data.draw(st.sampled_from(["Learned", "Declared"])),
                    profiles=(
                        with_requests(profile(gpu=pick % 3 == 0), REQUESTS[pick % len(REQUESTS)]),
                    ),
                    age=timedelta(0),
                ),
            ]
    elif not images and event in (
        "remove image",
        "rescore",
        "pin image",
        "fail",
        "heal",
        "stall",
    ):
        return
    elif event == "remove image":
        del w.images[pick % len(images)]
    elif event == "rescore":
        i = pick % len(images)
        day = w.now.strftime("%Y-%m-%d")
        w.images[i] = replace(images[i], daily_uses={day: data.draw(st.integers(0, 80))})
    elif event == "pin image":
        i = pick % len(images)
        selector = {} if images[i].node_selector else {"pool": "a"}
        w.images[i] = replace(images[i], node_selector=selector)
    elif event == "fail":
        ref = images[pick % len(images)].image
        w.fail[ref] = ("ErrImagePull", f"{ref}: not found")
    elif event == "heal":
        w.fail.clear()
    elif event == "stall":  # its pulls hang: pullers stay the same objects for passes
        w.slow.add(images[pick % len(images)].image)
    elif event == "unstall":
        w.slow.clear()
    elif event == "starting":
        if nodes:
            where = nodes[pick % len(nodes)].name
            # Its images are about to land on the node: its disk budget gives way to them.
            waits = tuple(data.draw(st.lists(st.sampled_from(POOL + EXTRA), max_size=2)))
            w.starting.append(StartingPod(where, f"default/app-{pick}", w.now, images=waits))
    elif event == "started":
        if w.starting:
            del w.starting[pick % len(w.starting)]
    elif event == "kill keeper":
        keepers = [name for name, p in w.pods.items() if p.role == "keeper"]
        if keepers:
            name = keepers[pick % len(keepers)]
            w.pods[name] = replace(w.pods[name], phase="Failed", reason="Evicted")
    elif event == "gc":
        w.gc()
    elif event == "time":
        w.now += timedelta(minutes=data.draw(st.sampled_from([2, 7, 30, 90])))
    elif event == "day":
        w.now += timedelta(days=1)
    elif event in DEMAND_EVENTS:
        _change_demand(w, event, pick, data)
    elif event == "sweep":
        assert w.planner is not None
        assert w.planner.full(w.snapshot()) == plan(w.snapshot(), w.config)


NODE_EVENTS = ("leave", "label", "taint", "ready", "cordon", "resize", "capacity", "hints")


def _change_demand(w: TwinWorld, event: str, pick: int, data: Any) -> None:
    """Workloads come and go, their pods run and stop, a rollout swaps an image, the budget
    holds the room of images a node's pods used and lets it go."""
    d = w.demand
    refs = POOL + EXTRA
    if event == "workload":
        images = tuple(data.draw(st.lists(st.sampled_from(refs), min_size=1, max_size=2)))
        workload = Workload(
            key=f"Deployment/team/w{pick % 4}",
            images=images,
            replicas=data.draw(st.sampled_from([None, 1, 3])),
            schedule=data.draw(st.sampled_from(["", "*/30 * * * *"])),
        )
        kept = tuple(x for x in d.workloads if x.key != workload.key)
        w.demand = replace(d, workloads=(*kept, workload))
    elif event == "workload gone" and d.workloads:
        w.demand = replace(d, workloads=d.workloads[1:])
    elif event == "pod runs" and w.nodes:
        where = w.nodes[pick % len(w.nodes)].name
        owner = d.workloads[pick % len(d.workloads)] if d.workloads else None
        images = owner.images if owner else (refs[pick % len(refs)],)
        pod = RunningPod(where, owner.key if owner else "", images)
        w.demand = replace(d, running=(*d.running, pod))
    elif event == "pod stops" and d.running:
        w.demand = replace(d, running=d.running[1:])
    elif event == "rollout" and d.workloads:
        old = d.workloads[0]
        new = (refs[pick % len(refs)],)
        rollout = Rollout(old.key, old.images, new, w.now)
        w.demand = replace(
            d,
            workloads=(replace(old, images=new), *d.workloads[1:]),
            rollouts=(*d.rollouts, rollout),
        )
    elif event == "pods used" and w.nodes:
        where = w.nodes[pick % len(w.nodes)].name
        used = frozenset(data.draw(st.lists(st.sampled_from(refs), min_size=1, max_size=3)))
        w.demand = replace(d, pods_used={**d.pods_used, where: used})
    elif event == "hold over" and d.pods_used:
        gone = sorted(d.pods_used)[pick % len(d.pods_used)]
        w.demand = replace(d, pods_used={k: v for k, v in d.pods_used.items() if k != gone})
    elif event == "unschedulable":
        waiting = UnschedulablePod(f"team/p{pick}", (refs[pick % len(refs)],))
        w.demand = replace(d, unschedulable=(*d.unschedulable, waiting))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(nodes_st(), images_st(), configs, st.data())
def test_incremental_plans_equal_full_plans(
    nodes: Any, images: Any, cfg: Config, data: Any
) -> None:
    cfg = replace(
        cfg,
        placement=data.draw(st.sampled_from(["all", "demand"])),
        # A wide band between the GC thresholds: what is held decides what fits more often.
        image_gc_low_threshold=data.draw(st.sampled_from([80.0, 40.0])),
    )
    w = TwinWorld(nodes=list(nodes), images=list(images), config=cfg)
    w.planner = IncrementalPlanner(cfg)
    for _ in range(data.draw(st.integers(1, 14))):
        events = data.draw(st.lists(st.sampled_from(EVENTS), max_size=3))
        for event in events:
            _apply(w, event, data.draw(st.integers(0, 1000)), data)
        w.step(advance=timedelta(minutes=data.draw(st.sampled_from([0, 1, 5]))))
    assert w.passes >= 1


def test_incremental_planner_follows_a_fleet_through_joins_and_new_images() -> None:
    """A larger converged fleet: one node joins, one image arrives, both are pulled."""
    cfg = Config(max_concurrent_pulls=20)
    w = TwinWorld(
        nodes=[node(f"n{i:02d}", gpu=8 if i % 4 == 0 else 0) for i in range(24)],
        images=[image(ref, uses=10 + i, gpu=i == 2) for i, ref in enumerate(POOL)],
        config=cfg,
    )
    w.planner = IncrementalPlanner(cfg)
    w.converge()
    w.nodes.append(node("n99", age=timedelta(0)))
    w.images.append(image(EXTRA[0], uses=3, age=timedelta(0)))
    final = w.converge()
    assert final.summary is not None and final.summary.coverage == 1.0
    assert w.passes > 4


def test_a_joining_node_or_a_new_image_reuses_the_other_nodes_work() -> None:
    cfg = Config()
    w = TwinWorld(
        nodes=[node(f"n{i:02d}", gpu=8 if i % 3 == 0 else 0) for i in range(9)],
        images=[image(ref, uses=10 + i, gpu=i == 2) for i, ref in enumerate(POOL)],
        config=cfg,
    )
    w.planner = planner = IncrementalPlanner(cfg)
    w.converge()
    kept = {name: (m.target, m.cells) for name, m in planner.memo.items()}

    w.nodes.append(node("n99", age=timedelta(0)))
    w.plan()
    for name, (target, cells) in kept.items():
        assert planner.memo[name].target is target, name
        assert planner.memo[name].cells is cells, name

    w.images.append(image(EXTRA[0], uses=3, age=timedelta(0)))
    w.plan()
    # Nodes of one kind share their image lists: the new image was placed once per kind.
    assert len({id(m.target.fitted) for m in planner.memo.values()}) == 2


def test_a_node_whose_allocatable_changes_is_placed_again() -> None:
    cfg = Config()
    large = with_requests(profile(), {"cpu": "32"})
    w = TwinWorld(
        nodes=[node("a", allocatable={"cpu": 96.0}), node("b", allocatable={"cpu": 96.0})],
        images=[image(POOL[0], profiles=(large,))],
        config=cfg,
    )
    w.planner = IncrementalPlanner(cfg)
    w.converge()
    w.nodes[0] = replace(w.nodes[0], allocatable={"cpu": 16.0})
    cells = {c.node: c for c in w.plan().cells}
    assert (cells["a"].state, cells["a"].reason) == ("ineligible", "needs 32 cpu, node has 16")
    assert cells["b"].wanted


def test_cells_follow_changes_to_their_messages_and_failures_alone() -> None:
    """A hold-back that starts and ends, a failure, a retry falling due: each changes only the
    affected cells' message or state, which the incremental plan must pick up."""
    cfg = Config(max_concurrent_pulls=1, pull_batch_size=1)
    w = TwinWorld(
        nodes=[node("a"), node("b")],
        images=[image(POOL[0], uses=5), image(POOL[4], uses=3)],
        config=cfg,
    )
    w.planner = IncrementalPlanner(cfg)
    first = w.plan()  # one pull starts; the other images wait for a slot
    assert len(first.pulls) == 1
    w.starting.append(StartingPod("b", "default/app", w.now))
    held = w.plan()
    assert any(c.message.startswith("held back") for c in held.cells if c.node == "b")
    w.starting.clear()
    w.plan()
    w.fail[POOL[0]] = ("ErrImagePull", "not found")
    for _ in range(3):
        w.step()
    assert any(c.state == "failed" for c in w.plan().cells)
    w.now += timedelta(hours=3)
    w.plan()


def test_a_node_whose_budget_leaves_images_out_is_patched_when_only_other_images_change() -> None:
    """A CPU node whose disk budget leaves one image out keeps its target when only an image
    it cannot run changes, and still shows the left-out image's new score."""
    cfg = Config()
    cpu = [POOL[0], POOL[1], EXTRA[0]]
    w = TwinWorld(
        nodes=[node("cpu", capacity=5 * GB), node("gpu", gpu=8)],
        images=[
            *(image(ref, uses=30 - 10 * i) for i, ref in enumerate(cpu)),
            image(POOL[3], uses=5, gpu=True),
        ],
        config=cfg,
    )
    w.planner = planner = IncrementalPlanner(cfg)
    w.plan()
    assert list(planner.memo["cpu"].target.left_out) == [EXTRA[0]]
    w.images[2] = replace(w.images[2], use_count=12, daily_uses={w.now.strftime("%Y-%m-%d"): 12})
    w.images[3] = replace(w.images[3], size=2 * GB)
    got = w.plan()  # equal to plan(): the patched node's exclusion has the image's new score
    (excluded,) = [b for b in got.budget_left_out if b.node == "cpu"]
    assert excluded.score == next(i.score for i in got.images if i.image == EXTRA[0])


def test_a_changed_node_keeps_its_cells_only_while_its_exclusions_read_the_same() -> None:
    """A node's status changes (its image list, its disk) without changing what fits: its
    budget exclusion still shows the node's size for the image and the budget's new figures."""
    cfg = Config()
    refs = [POOL[0], POOL[1], EXTRA[0]]
    w = TwinWorld(
        nodes=[node("cpu", capacity=5 * GB)],
        images=[image(ref, uses=30 - 10 * i) for i, ref in enumerate(refs)],
        config=cfg,
    )
    w.planner = IncrementalPlanner(cfg)
    first = w.plan()
    assert [b.image for b in first.budget_left_out] == [EXTRA[0]]
    w.nodes = [replace(w.nodes[0], hinted_images={EXTRA[0]: GB + 1000})]
    (excluded,) = w.plan().budget_left_out  # equal to plan(): the node's size for it
    assert excluded.size == GB + 1000
    w.nodes = [replace(w.nodes[0], image_fs_capacity=int(5.4 * GB))]
    (excluded,) = w.plan().budget_left_out  # equal to plan(): the larger budget's figures
    assert "2.7 GB" in excluded.why


def test_an_image_size_hint_falls_back_when_the_node_listing_it_largest_drops_it() -> None:
    """An image of unknown size takes the largest size any node lists: when that node stops
    listing it, the next largest is its size on the nodes that do not list it."""
    cfg = Config()
    w = TwinWorld(
        nodes=[node(name, capacity=5 * GB) for name in ("a", "b", "c")],
        images=[image(POOL[0], uses=30), image(POOL[1], uses=20, size=None)],
        config=cfg,
    )
    w.planner = IncrementalPlanner(cfg)

    def left_out_on_b(a_lists: int | None) -> list[int]:
        w.nodes[0] = replace(w.nodes[0], hinted_images={POOL[1]: a_lists} if a_lists else {})
        return [b.size for b in w.plan().budget_left_out if b.node == "b"]

    w.nodes[2] = replace(w.nodes[2], hinted_images={POOL[1]: GB})
    assert left_out_on_b(3 * GB) == [3 * GB]
    assert left_out_on_b(None) == []  # b's size for it is c's 1 GB: it fits
    assert left_out_on_b(2 * GB) == [2 * GB]
    assert left_out_on_b(GB // 2) == []


def test_a_sweep_reads_a_finished_puller_again_only_when_its_images_sizes_changed() -> None:
    """What a finished puller gave is kept through a sweep (the same pod object), and read
    again when one of its images has another size: its outcomes carry the size."""
    cfg = Config()
    w = TwinWorld(nodes=[node("n1")], images=[image(POOL[0], uses=10)], config=cfg)
    w.planner = planner = IncrementalPlanner(cfg)
    w.step()  # the puller is created, and pulls
    (puller,) = (p for p in w.pods.values() if p.role == "puller")
    before = w.plan()
    assert [o.size for o in before.outcomes] == [w.images[0].size]
    kept = planner.pods._finished[(puller.name, puller.uid, finished_puller)]
    assert planner.full(w.snapshot()) == plan(w.snapshot(), cfg)
    assert planner.pods._finished[(puller.name, puller.uid, finished_puller)] is kept

    w.images[0] = replace(w.images[0], size=3 * GB)
    swept = planner.full(w.snapshot())
    assert swept == plan(w.snapshot(), cfg)
    assert [o.size for o in swept.outcomes] == [3 * GB]


def test_running_pullers_unchanged_across_passes_are_read_once() -> None:
    """Pullers that keep pulling (the same pod objects, pass after pass, sweeps included)
    are planned as plan() plans them, each read once; a new image and a joining node
    then touch their own cells, and the pullers finish once the registry answers."""
    cfg = Config(join_pull_batch_size=500)
    refs = EXTRA[:4]  # one registry: one puller per node
    w = TwinWorld(
        nodes=[node(f"n{i}", age=timedelta(0)) for i in range(3)],
        images=[image(ref, uses=10 + i) for i, ref in enumerate(refs)],
        config=cfg,
    )
    w.planner = planner = IncrementalPlanner(cfg)
    w.slow.add(refs[1])
    w.step()  # one puller per node of every image, stalled at the slow one
    pullers = [p for p in w.pods.values() if p.role == "puller"]
    assert pullers and all(_stalled(p) for p in pullers)
    first = w.step()
    readings = [planner.pods._readings[(p.name, p.uid)][1] for p in pullers]
    assert all(c.state == "pulling" for c in first.cells if c.wanted and c.state != "present")
    again = w.step()  # nothing changed but the clock: nothing to do, the same cells
    assert not again.pulls and not again.deletions and again.cells == first.cells
    assert planner.full(w.snapshot()) == plan(w.snapshot(), cfg)
    w.images.append(image(EXTRA[4], uses=3, age=timedelta(0)))
    w.nodes.append(node("n9", age=timedelta(0)))
    w.step()
    assert [w.pods[p.name] for p in pullers] == pullers  # the same objects, still pulling
    kept = [planner.pods._readings[(p.name, p.uid)][1] for p in pullers]
    assert all(map(operator.is_, kept, readings))
    w.slow.clear()
    w.converge()
    assert not any(p.role == "puller" for p in w.pods.values())


def test_pulls_per_image_count_the_pullers_in_flight_as_they_come_and_go() -> None:
    """The pullers in flight per image (maxPullsPerImage) are counted from one pass to the
    next: a stalled puller holds its image's one slot, and frees it once it finished."""
    cfg = Config(max_pulls_per_image=1)
    w = TwinWorld(nodes=[node("n0"), node("n1")], images=[image(EXTRA[0], uses=10)], config=cfg)
    w.planner = IncrementalPlanner(cfg)
    w.slow.add(EXTRA[0])
    first = w.step()
    assert [p.node for p in first.pulls] == ["n0"]
    assert not w.step().pulls  # n0's puller still pulls the image: n1 waits
    w.slow.clear()
    w.step()  # n0's puller finishes
    assert [p.node for p in w.step().pulls] == ["n1"]
