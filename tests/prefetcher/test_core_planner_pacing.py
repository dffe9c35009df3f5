"""How fast pulls start on whole scenarios: caps, registry batches, quiet hours, holding back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import ManagedPod, Snapshot, StartingPod
from prefetcher.planner import HOLD_BACK_MAX, in_quiet_hours, plan
from prefetcher.pods import puller_name
from tests.prefetcher.test_core_fixtures import (
    APP,
    BUSYBOX,
    CUDA,
    GB,
    NOW,
    World,
    config,
    image,
    node,
)


def test_caps_per_registry_image_and_cluster() -> None:
    nodes = tuple(node(f"n{i:02d}") for i in range(30))
    images = (image(APP, uses=9), image(BUSYBOX, uses=1))
    snap = Snapshot(now=NOW, nodes=nodes, images=images)
    result = plan(snap, config(max_pulls_per_image=4, max_concurrent_pulls=6))
    assert len(result.pulls) == 6
    assert sum(APP in p.images for p in result.pulls) == 4
    result = plan(snap, config(max_pulls_per_registry=3, max_concurrent_pulls=100))
    harbor = [p for p in result.pulls if p.images[0].startswith("harbor.")]
    assert len(harbor) == 3


def test_running_pullers_count_against_caps() -> None:
    nodes = (node("a"), node("b"))
    running = ManagedPod(
        name=puller_name("a", [APP]), uid="u1", node="a", role="puller", images=(APP,), created=NOW
    )
    snap = Snapshot(now=NOW, nodes=nodes, images=(image(APP), image(BUSYBOX)), pods=(running,))
    result = plan(snap, config(max_pulls_per_image=1))
    assert [(p.node, p.images) for p in result.pulls] == [("b", (BUSYBOX,))]
    cell = next(c for c in result.cells if c.node == "a" and c.image == APP)
    assert cell.state == "pulling"


def test_a_node_that_pulls_in_parallel_gets_its_next_puller_beside_the_one_in_flight() -> None:
    nodes = (node("serial"), node("parallel", labels={"pool": "fast"}))
    images = tuple(image(f"harbor.example.internal/lib/app-{i}:1.0", uses=10 - i) for i in range(3))
    pods = tuple(
        ManagedPod(
            name=puller_name(n.name, [images[0].image]),
            uid=f"u-{n.name}",
            node=n.name,
            role="puller",
            images=(images[0].image,),
            created=NOW,
        )
        for n in nodes
    )
    snap = Snapshot(now=NOW, nodes=nodes, images=images, pods=pods)
    settings = {"pull_batch_size": 1}
    assert plan(snap, config(**settings)).pulls == ()
    pipelined = plan(snap, config(parallel_pull_nodes=(("pool", "fast"),), **settings))
    assert [(p.node, p.images) for p in pipelined.pulls] == [("parallel", (images[1].image,))]
    every_node = plan(snap, config(parallel_pull_nodes=(), **settings))
    assert sorted(p.node for p in every_node.pulls) == ["parallel", "serial"]


def test_quiet_hours_only_urgent_pulls() -> None:
    quiet = config(quiet_hours="02:00-04:00")
    assert in_quiet_hours(NOW, "02:00-04:00")
    assert in_quiet_hours(NOW, "22:00-04:00")
    assert not in_quiet_hours(NOW, "04:00-22:00")
    old = node("old")
    new = node("new", age=timedelta(minutes=5))
    snap = Snapshot(now=NOW, nodes=(old, new), images=(image(APP),))
    result = plan(snap, quiet)
    assert [(p.node, p.why, p.urgent) for p in result.pulls] == [("new", "new node", True)]
    cell = next(c for c in result.cells if c.node == "old")
    assert cell.state == "missing" and "quiet hours" in cell.message
    fresh = image(BUSYBOX, age=timedelta(minutes=10))
    result = plan(replace(snap, nodes=(old,), images=(image(APP), fresh)), quiet)
    assert [(p.images, p.why) for p in result.pulls] == [((BUSYBOX,), "new image in use")]


HARBOR = [f"harbor.example.internal/library/svc-{i}:1.0" for i in range(5)]


def test_a_puller_pulls_a_batch_of_one_registry_in_rank_order() -> None:
    images = [image(ref, uses=10 - i) for i, ref in enumerate(HARBOR)]
    images.append(image(BUSYBOX, uses=100))
    w = World(nodes=[node("a")], images=images, config=config(pull_batch_size=3))
    first = w.step()
    # BUSYBOX ranks first but lives on docker.io: it goes alone; harbor waits for the slot.
    assert [p.images for p in first.pulls] == [(BUSYBOX,)]
    second = w.step()
    assert [p.images for p in second.pulls] == [tuple(HARBOR[:3])]
    assert second.pulls[0].size == 3 * GB
    assert second.pulls[0].deadline_seconds == 4 * 3 * (600 + GB // 10_000_000)
    final = w.converge()
    assert final.summary is not None and final.summary.coverage == 1.0
    assert w.guarded("a") == set(HARBOR) | {BUSYBOX}
    assert sum(len(p.pulls) for p in w.history) == 3


def test_a_node_that_just_joined_pulls_its_images_in_one_larger_batch() -> None:
    """A new node (no workload pod starting there) takes joinPullBatchSize images a puller,
    so no puller's start and end fall between its pulls; an older node pullBatchSize."""
    images = [image(ref, uses=10 - i) for i, ref in enumerate(HARBOR)]
    settings = config(pull_batch_size=2, join_pull_batch_size=4)
    fresh = World(nodes=[node("new", age=timedelta(minutes=1))], images=images, config=settings)
    old = World(nodes=[node("old")], images=images, config=settings)
    joined = fresh.step().pulls
    assert [(p.images, p.why) for p in joined] == [(tuple(HARBOR[:4]), "new node")]
    assert [p.images for p in old.step().pulls] == [tuple(HARBOR[:2])]
    assert [p.images for p in fresh.step().pulls] == [(HARBOR[4],)]
    assert fresh.converge().summary.coverage == 1.0  # type: ignore[union-attr]
    # A kubelet whose clock runs ahead of the prefetcher's stamps the node in our future:
    # it is new all the same.
    ahead = World(nodes=[node("ahead", age=timedelta(minutes=-5))], images=images, config=settings)
    assert [(p.images, p.why) for p in ahead.step().pulls] == [(tuple(HARBOR[:4]), "new node")]


def test_nodes_pull_images_of_equal_rank_in_orders_of_their_own() -> None:
    """In one shared order every node would wait for the registry's answer at the same
    moments and pull the same image at once: each node orders its equal images its own way."""
    images = [image(ref, uses=5) for ref in HARBOR]
    nodes = [node(f"n{i}") for i in range(4)]
    pulls = World(nodes=nodes, images=images, config=config(pull_batch_size=5)).step().pulls
    orders = {p.node: p.images for p in pulls}
    assert set(orders) == {n.name for n in nodes}
    assert all(sorted(order) == sorted(HARBOR) for order in orders.values())
    assert len(set(orders.values())) > 1
    assert {order[0] for order in orders.values()} != {HARBOR[0]}


def test_pulls_are_held_back_while_a_workload_pod_starts_on_the_node() -> None:
    starting = StartingPod(node="a", pod="ml/train-0", since=NOW - timedelta(minutes=2))
    snap = Snapshot(
        now=NOW, nodes=(node("a"), node("b")), images=(image(APP),), starting=(starting,)
    )
    result = plan(snap, config())
    assert [p.node for p in result.pulls] == ["b"]
    cell = next(c for c in result.cells if c.node == "a")
    assert cell.state == "missing" and "ml/train-0" in cell.message
    assert result.wake_at == NOW - timedelta(minutes=2) + timedelta(seconds=HOLD_BACK_MAX)
    # A pod that has been starting for too long (stuck on a volume, say) no longer counts.
    late = plan(replace(snap, now=NOW + timedelta(seconds=HOLD_BACK_MAX)), config())
    assert sorted(p.node for p in late.pulls) == ["a", "b"]


def test_a_workload_pull_holds_back_prefetches_from_its_registry_on_every_node() -> None:
    # A pod on node a waits for an image from nvcr.io: prefetches from nvcr.io wait on
    # every node (they would share nvcr.io's bandwidth), those from Harbor go on.
    starting = StartingPod(
        node="a", pod="ml/train-0", since=NOW - timedelta(minutes=2), registries=("nvcr.io",)
    )
    snap = Snapshot(
        now=NOW,
        nodes=(node("a"), node("b")),
        images=(image(APP), image(CUDA)),
        starting=(starting,),
    )
    result = plan(snap, config())
    assert [(p.node, p.images) for p in result.pulls] == [("b", (APP,))]
    cell = next(c for c in result.cells if c.node == "b" and c.image == CUDA)
    assert cell.state == "missing"
    assert cell.message == "held back while pod ml/train-0 pulls from nvcr.io"
    # Once the pod has started (it leaves the snapshot), nvcr.io is free again.
    after = plan(replace(snap, starting=(), images=(image(CUDA),)), config())
    assert sorted((p.node, p.images) for p in after.pulls) == [("a", (CUDA,)), ("b", (CUDA,))]
