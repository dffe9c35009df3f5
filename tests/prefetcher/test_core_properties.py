"""Properties of plan() over generated clusters: safety, caps, placement, determinism, quiet."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.cachedimage import PlacementProfile
from imagesync.config import Config
from imagesync.resources import request_amount
from prefetcher import presence
from prefetcher.eligibility import has_gpu
from prefetcher.model import (
    ContainerObservation,
    Demand,
    ManagedPod,
    NodeInfo,
    PullRecord,
    Rollout,
    RunningPod,
    Snapshot,
    Taint,
    UnschedulablePod,
    WantedImage,
    Workload,
)
from prefetcher.planner import plan
from prefetcher.pods import keeper_name, puller_name
from tests.prefetcher.test_core_fixtures import GB, NOW, World, config, image, node, profile

POOL = [
    "harbor.example.internal/library/app:1.0",
    "harbor.example.internal/library/web:2.1",
    "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
    "nvcr.io/nvidia/pytorch:24.08-py3",
    "docker.io/library/busybox:1.36",
    "docker.io/library/redis:7",
]
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def nodes_st(draw: Any) -> tuple[NodeInfo, ...]:
    count = draw(st.integers(0, 7))
    out = []
    for i in range(count):
        taints: tuple[Taint, ...] = ()
        if draw(st.booleans()) and draw(st.booleans()):
            taints = (Taint("dedicated", draw(st.sampled_from(["infer", "train"])), "NoSchedule"),)
        gpu = draw(st.sampled_from([0, 0, 1, 4, 8]))
        out.append(
            node(
                f"n{i}",
                gpu=gpu,
                allocatable=draw(allocatable_st(gpu)),
                capacity=draw(st.sampled_from([None, 10 * GB, 40 * GB, 500 * GB])),
                taints=taints,
                ready=draw(st.booleans()) or draw(st.booleans()),
                unschedulable=draw(st.booleans()) and draw(st.booleans()),
                age=draw(st.sampled_from([timedelta(minutes=5), timedelta(days=3)])),
            )
        )
    return tuple(out)


# A node's allocatable: none reported, or cpu and memory (and its GPUs, when it has any).
def allocatable_st(gpu: int) -> st.SearchStrategy[dict[str, float]]:
    sizes = st.sampled_from([(16.0, 64.0 * 2**30), (96.0, 1024.0 * 2**30)])
    devices = {"nvidia.com/gpu": float(gpu)} if gpu else {}
    return st.one_of(st.just({}), sizes.map(lambda cm: {"cpu": cm[0], "memory": cm[1], **devices}))


# A profile's requests: none written (a profile from before requests were learned), none asked
# for, a training pod, a notebook, a large CPU pod.
REQUESTS = [
    None,
    {},
    {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"},
    {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    {"cpu": "48", "memory": "96Gi"},
]


def with_requests(base: PlacementProfile, requests: dict[str, str] | None) -> PlacementProfile:
    if requests is not None:
        base["requests"] = requests
    return base


@st.composite
def images_st(draw: Any) -> tuple[WantedImage, ...]:
    refs = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL)))
    out = []
    for ref in refs:
        profiles = tuple(
            with_requests(
                profile(
                    gpu=draw(st.booleans()),
                    tolerations=draw(
                        st.sampled_from(
                            [
                                [],
                                [{"key": "dedicated", "operator": "Exists"}],
                                [{"operator": "Exists"}],
                            ]
                        )
                    ),
                ),
                draw(st.sampled_from(REQUESTS)),
            )
            for _ in range(draw(st.integers(0, 2)))
        )
        out.append(
            image(
                ref,
                uses=draw(st.integers(0, 50)),
                size=draw(st.sampled_from([None, 5_000_000, GB, 20 * GB])),
                source=draw(st.sampled_from(["Learned", "Learned", "Declared"])),
                profiles=profiles,
                last_seen=NOW - timedelta(days=draw(st.sampled_from([0, 1, 20]))),
                age=draw(st.sampled_from([timedelta(minutes=5), timedelta(days=3)])),
            )
        )
    return tuple(out)


_STATES = [
    ("running", ""),
    ("terminated", ""),
    ("waiting", "ContainerCreating"),
    ("waiting", "ErrImagePull"),
    ("waiting", "ErrImageNeverPull"),
]


@st.composite
def snapshots(draw: Any) -> Snapshot:
    nodes = draw(nodes_st())
    images = draw(images_st())
    names = [n.name for n in nodes] + ["gone"]
    pods: dict[str, ManagedPod] = {}
    for _ in range(draw(st.integers(0, 10))):
        where = draw(st.sampled_from(names))
        if draw(st.booleans()):
            refs = tuple(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True)))
            states = [draw(st.sampled_from(_STATES)) for _ in refs]
            pod = ManagedPod(
                name=puller_name(where, refs),
                uid=f"u{len(pods)}",
                node=where,
                role="puller",
                images=refs,
                phase="Succeeded" if all(s == "terminated" for s, _ in states) else "Pending",
                containers=tuple(
                    ContainerObservation(f"p{i}", ref, state, reason=reason)
                    for i, (ref, (state, reason)) in enumerate(zip(refs, states, strict=True))
                ),
                created=NOW - timedelta(minutes=draw(st.integers(0, 30))),
                deleting=draw(st.booleans()) and draw(st.booleans()),
            )
        else:
            held = tuple(sorted(draw(st.sets(st.sampled_from(POOL), min_size=1, max_size=4))))
            containers = []
            for i, ref in enumerate(held):
                state, reason = draw(st.sampled_from([_STATES[0], _STATES[0], _STATES[4]]))
                containers.append(ContainerObservation(f"c{i}", ref, state, reason=reason))
            pod = ManagedPod(
                name=keeper_name(where, held),
                uid=f"u{len(pods)}",
                node=where,
                role="keeper",
                images=held,
                phase=draw(st.sampled_from(["Running", "Running", "Pending", "Failed"])),
                containers=tuple(containers),
                deleting=draw(st.booleans()) and draw(st.booleans()),
            )
        pods.setdefault(pod.name, pod)
    records = {}
    for _ in range(draw(st.integers(0, 4))):
        key = (draw(st.sampled_from(names)), draw(st.sampled_from(POOL)))
        records[key] = PullRecord(
            key[0],
            key[1],
            draw(st.integers(1, 6)),
            NOW - timedelta(minutes=draw(st.integers(0, 600))),
            "ErrImagePull",
            "not found",
        )
    return Snapshot(
        now=NOW,
        nodes=nodes,
        images=images,
        pods=tuple(pods.values()),
        pull_records=records,
        demand=draw(demand_st(names)),
    )


@st.composite
def demand_st(draw: Any, names: list[str], rollouts: bool = True) -> Demand:
    """Workloads over the image pool, their pods on the nodes, waiting pods, rollouts."""
    keys = [f"Deployment/team/w{i}" for i in range(3)]
    refs = st.lists(st.sampled_from(POOL), min_size=1, max_size=2, unique=True)
    workloads = tuple(
        Workload(
            key=key,
            images=tuple(draw(refs)),
            replicas=draw(st.sampled_from([None, 0, 1, 3])),
            schedule=draw(st.sampled_from(["", "0 4 * * *", "*/5 * * * *"])),
        )
        for key in keys[: draw(st.integers(0, 3))]
    )
    running = tuple(
        RunningPod(
            draw(st.sampled_from(names)), draw(st.sampled_from(["", *keys])), tuple(draw(refs))
        )
        for _ in range(draw(st.integers(0, 5)))
    )
    waiting = tuple(
        UnschedulablePod(f"team/p{i}", tuple(draw(refs))) for i in range(draw(st.integers(0, 2)))
    )
    changes = (
        tuple(
            Rollout(
                key,
                tuple(draw(refs)),
                tuple(draw(refs)),
                NOW - timedelta(hours=draw(st.integers(0, 3))),
            )
            for key in keys[: draw(st.integers(0, 2))]
        )
        if rollouts
        else ()
    )
    used = {
        name: frozenset(draw(refs)) for name in draw(st.lists(st.sampled_from(names), max_size=2))
    }
    return Demand(
        workloads=workloads,
        running=running,
        unschedulable=waiting,
        rollouts=changes,
        pods_used=used,
    )


configs = st.builds(
    config,
    max_concurrent_pulls=st.integers(1, 6),
    max_pulls_per_registry=st.integers(1, 4),
    max_pulls_per_image=st.integers(1, 3),
    max_pulls_per_node=st.integers(1, 2),
    pull_batch_size=st.integers(1, 4),
    join_pull_batch_size=st.integers(1, 6),
    quiet_hours=st.sampled_from(["", "02:00-04:00"]),
    keeper_enabled=st.booleans(),
    placement=st.sampled_from(["all", "demand"]),
)


def _wanted_cells(result: Any) -> set[tuple[str, str]]:
    return {(c.node, c.image) for c in result.cells if c.wanted}


@SETTINGS
@given(nodes_st(), images_st(), configs, st.data())
def test_demand_orders_but_by_default_every_eligible_node_still_gets_the_image(
    nodes: tuple[NodeInfo, ...], images: tuple[WantedImage, ...], cfg: Config, data: Any
) -> None:
    """With `placement: all`, demand changes the order of pulls, not where images go (a live
    template may only keep an old image wanted); `placement: demand` only narrows that.
    Without a disk limit, so a freed budget does not let another image in."""
    nodes = tuple(replace(n, image_fs_capacity=None) for n in nodes)
    demand = data.draw(demand_st([n.name for n in nodes] + ["gone"], rollouts=False))
    bare = Snapshot(now=NOW, nodes=nodes, images=images)
    everywhere = _wanted_cells(plan(bare, replace(cfg, placement="all")))
    with_demand = replace(bare, demand=demand)
    by_default = _wanted_cells(plan(with_demand, replace(cfg, placement="all")))
    templated = {ref for w in demand.workloads for ref in w.images}
    assert by_default >= everywhere
    assert {ref for _, ref in by_default - everywhere} <= templated
    assert _wanted_cells(plan(with_demand, replace(cfg, placement="demand"))) <= by_default


def _gpu_only(snapshot: Snapshot, ref: str) -> bool:
    objects = [i for i in snapshot.images if i.image == ref]
    return bool(objects) and all(o.profiles and all(p["gpu"] for p in o.profiles) for o in objects)


@SETTINGS
@given(snapshots(), configs)
def test_never_pull_a_present_image_or_twice(snapshot: Snapshot, cfg: Config) -> None:
    result = plan(snapshot, cfg)
    present = presence.present_images(snapshot.pods)
    existing = {p.name for p in snapshot.pods}
    pulling = {
        (p.node, ref)
        for p in snapshot.pods
        if p.role == "puller"
        for ref in p.images
        if ref not in presence.puller_results(p)
    }
    pairs = [(p.node, ref) for p in result.pulls for ref in p.images]
    for pull in result.pulls:
        assert pull.pod_name not in existing
        # A node that just joined takes joinPullBatchSize images a puller, others pullBatchSize.
        joined = pull.why == "new node"
        limit = (
            max(cfg.pull_batch_size, cfg.join_pull_batch_size) if joined else cfg.pull_batch_size
        )
        assert 1 <= len(pull.images) <= limit
        assert len({ref.split("/")[0] for ref in pull.images}) == 1  # one registry
        for ref in pull.images:
            assert ref not in present.get(pull.node, ())
    assert len(set(pairs)) == len(pairs)
    assert not set(pairs) & pulling


@SETTINGS
@given(snapshots(), configs)
def test_caps_hold(snapshot: Snapshot, cfg: Config) -> None:
    result = plan(snapshot, cfg)
    deleted = {d.uid for d in result.deletions}
    names = {n.name for n in snapshot.nodes}
    # A puller counts once cluster-wide, on its node and per registry, and once for each
    # image it has still to pull.
    pullers: list[tuple[str, tuple[str, ...]]] = []
    for p in snapshot.pods:
        pending = tuple(i for i in p.images if i not in presence.puller_results(p))
        if p.role == "puller" and pending and p.uid not in deleted and p.node in names:
            pullers.append((p.node, pending))
    pullers += [(a.node, a.images) for a in result.pulls]
    keys: list[tuple[str, str, int]] = []
    for node_name, refs in pullers:
        keys += [("all", "", cfg.max_concurrent_pulls), ("node", node_name, cfg.max_pulls_per_node)]
        keys += [("image", ref, cfg.max_pulls_per_image) for ref in refs]
        keys += [
            ("registry", registry, cfg.max_pulls_per_registry)
            for registry in {ref.split("/")[0] for ref in refs}
        ]
    totals = Counter((kind, key) for kind, key, _ in keys)
    caps = {(kind, key): cap for kind, key, cap in keys}
    started: Counter[tuple[str, str]] = Counter()
    for a in result.pulls:
        started[("all", "")] += 1
        started[("node", a.node)] += 1
        started[("registry", a.images[0].split("/")[0])] += 1
        for ref in a.images:
            started[("image", ref)] += 1
    for dimension, count in started.items():
        assert totals[dimension] <= caps[dimension], (dimension, totals[dimension])
        assert count >= 1


@SETTINGS
@given(snapshots(), configs)
def test_gpu_only_images_never_on_cpu_nodes(snapshot: Snapshot, cfg: Config) -> None:
    result = plan(snapshot, cfg)
    nodes = {n.name: n for n in snapshot.nodes}
    for pull in result.pulls:
        if any(_gpu_only(snapshot, ref) for ref in pull.images):
            assert has_gpu(nodes[pull.node])
    for keeper in result.keepers:
        for ref in keeper.images:
            if _gpu_only(snapshot, ref):
                assert has_gpu(nodes[keeper.node])


def _fits(profile: PlacementProfile, node: NodeInfo) -> bool:
    """Whether the node's allocatable holds every request the node reports the resource of."""
    return all(
        resource not in node.allocatable
        or (request_amount(text) or 0.0) <= node.allocatable[resource]
        for resource, text in (profile.get("requests") or {}).items()
    )


@SETTINGS
@given(snapshots(), configs)
def test_no_image_goes_to_a_node_too_small_for_all_of_its_pods(
    snapshot: Snapshot, cfg: Config
) -> None:
    result = plan(snapshot, cfg)
    nodes = {n.name: n for n in snapshot.nodes}
    by_ref: dict[str, list[WantedImage]] = {}
    for wanted in snapshot.images:
        by_ref.setdefault(wanted.image, []).append(wanted)

    def too_small(ref: str, node: NodeInfo) -> bool:
        objects = by_ref.get(ref, [])
        return bool(objects) and all(
            o.profiles and not any(_fits(p, node) for p in o.profiles) for o in objects
        )

    placed = [(a.node, ref) for a in result.pulls for ref in a.images]
    placed += [(k.node, ref) for k in result.keepers for ref in k.images]
    for where, ref in placed:
        assert not too_small(ref, nodes[where]), (where, ref)
    for cell in result.cells:
        if too_small(cell.image, nodes[cell.node]):
            assert not cell.wanted, cell


@SETTINGS
@given(snapshots(), configs)
def test_keeper_deletion_is_make_before_break(snapshot: Snapshot, cfg: Config) -> None:
    """No image the plan still wants on a node loses its last running keeper container."""
    result = plan(snapshot, cfg)
    deleted = {d.uid for d in result.deletions}
    kept_present = {(c.node, c.image) for c in result.cells if c.wanted and c.state == "present"}
    for pod in snapshot.pods:
        if pod.role != "keeper" or pod.uid not in deleted:
            continue
        for ref in presence.keeper_running_images(pod):
            if (pod.node, ref) not in kept_present or not cfg.keeper_enabled:
                continue
            survivors = [
                k
                for k in snapshot.pods
                if k.role == "keeper"
                and k.node == pod.node
                and k.uid not in deleted
                and not k.deleting
                and ref in presence.keeper_running_images(k)
            ]
            assert survivors, (pod.name, ref)


@SETTINGS
@given(snapshots(), configs, st.randoms(use_true_random=False))
def test_plan_is_deterministic(snapshot: Snapshot, cfg: Config, rng: random.Random) -> None:
    def shuffled(items: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    again = replace(
        snapshot,
        nodes=shuffled(snapshot.nodes),
        images=shuffled(snapshot.images),
        pods=shuffled(snapshot.pods),
    )
    assert plan(snapshot, cfg) == plan(again, cfg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_st(), images_st(), configs)
def test_converged_cluster_sees_no_writes(
    nodes: tuple[NodeInfo, ...], images: tuple[WantedImage, ...], cfg: Config
) -> None:
    w = World(nodes=list(nodes), images=list(images), config=replace(cfg, quiet_hours=""))
    final = w.converge()
    assert final.writes == 0
    assert w.step().writes == 0
    summary = final.summary
    assert summary is not None and summary.coverage == 1.0
    if cfg.keeper_enabled:
        w.gc()
        assert w.step().writes == 0
