"""The planner on scenarios: coverage, GPU placement, lifecycle, startup taint, determinism."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import ManagedPod, Snapshot, Taint
from prefetcher.planner import plan
from prefetcher.pods import keeper_name, puller_name
from tests.prefetcher.test_core_fixtures import (
    APP,
    BUSYBOX,
    CUDA,
    MISSING,
    NOW,
    PYTORCH,
    World,
    cluster_images,
    cluster_nodes,
    config,
    image,
    node,
    world,
)

GPU_IMAGES = {CUDA, PYTORCH}


def test_first_sweep_starts_one_puller_per_node_highest_score_first() -> None:
    result = world().plan()
    assert sorted(p.node for p in result.pulls) == sorted(n.name for n in cluster_nodes())
    by_node = {p.node: p.images for p in result.pulls}
    assert by_node["cpu-1"] == (APP,)  # 50 uses beat busybox's 5 (another registry)
    assert by_node["gpu-1"] == (APP,)  # APP (50) > PYTORCH (30) > CUDA (20)
    assert result.summary is not None and result.summary.coverage == 0.0


def test_converges_to_full_coverage_and_then_writes_nothing() -> None:
    w = world()
    final = w.converge()
    assert final.summary is not None and final.summary.coverage == 1.0
    assert final.writes == 0
    for n in w.nodes:
        expected = {APP, BUSYBOX} | (GPU_IMAGES if n.name.startswith("gpu") else set())
        assert w.guarded(n.name) == expected
    keepers = [p for p in w.pods.values() if p.role == "keeper"]
    assert len(keepers) == len(w.nodes)
    assert not [p for p in w.pods.values() if p.role == "puller"]
    again = w.step()
    assert again.writes == 0


def test_gpu_only_images_never_planned_on_cpu_nodes() -> None:
    w = world()
    w.converge()
    for result in w.history:
        for pull in result.pulls:
            if set(pull.images) & GPU_IMAGES:
                assert pull.node.startswith("gpu"), pull
    cell = next(c for c in w.history[-1].cells if c.node == "cpu-1" and c.image == PYTORCH)
    assert cell.state == "ineligible"
    assert cell.reason == "no GPU: pods using this image request nvidia.com/gpu"


def test_present_images_are_never_pulled_again() -> None:
    w = world()
    w.converge()
    snap = w.snapshot()
    # Even with the kubelet's list empty or lying, presence comes from keepers.
    nodes = tuple(replace(n, hinted_images={}) for n in snap.nodes)
    assert plan(replace(snap, nodes=nodes), w.config).pulls == ()


def test_node_status_images_never_prove_presence() -> None:
    nodes = (node("a", hinted_images={APP: 50_000_000}),)
    result = plan(Snapshot(now=NOW, nodes=nodes, images=(image(APP),)), config())
    assert [(p.node, p.images) for p in result.pulls] == [("a", (APP,))]


def test_new_node_is_served_first() -> None:
    nodes = (node("a"), node("b"), node("z-new", age=timedelta(minutes=1)))
    result = plan(Snapshot(now=NOW, nodes=nodes, images=(image(APP),)), config())
    assert result.pulls[0].node == "z-new" and result.pulls[0].urgent


def test_declared_image_is_always_wanted_and_learned_ones_expire() -> None:
    stale = image(APP, uses=0, last_seen=NOW - timedelta(days=30))
    declared = image(BUSYBOX, uses=0, source="Declared", profiles=(), last_seen=None)
    result = plan(Snapshot(now=NOW, nodes=(node("a"),), images=(stale, declared)), config())
    assert [p.images for p in result.pulls] == [(BUSYBOX,)]
    assert {i.image: i.wanted for i in result.images} == {APP: False, BUSYBOX: True}


def test_cordoned_and_not_ready_nodes_get_no_pulls() -> None:
    nodes = (node("cordoned", unschedulable=True), node("down", ready=False))
    result = plan(Snapshot(now=NOW, nodes=nodes, images=(image(APP),)), config())
    assert result.pulls == ()
    reasons = {c.node: c.reason for c in result.cells}
    assert reasons == {"cordoned": "node is cordoned", "down": "node is not Ready"}
    result = plan(
        Snapshot(now=NOW, nodes=nodes[:1], images=(image(APP),)), config(schedulable_only=False)
    )
    assert len(result.pulls) == 1


def test_orphans_are_deleted() -> None:
    gone_node = ManagedPod(
        name=keeper_name("gone", [APP]), uid="k", node="gone", role="keeper", images=(APP,)
    )
    unwanted = ManagedPod(
        name=puller_name("a", [MISSING]), uid="p", node="a", role="puller", images=(MISSING,)
    )
    snap = Snapshot(now=NOW, nodes=(node("a"),), images=(image(APP),), pods=(gone_node, unwanted))
    result = plan(snap, config())
    assert {(d.uid, d.why) for d in result.deletions} == {
        ("k", "node no longer exists"),
        ("p", "image no longer wanted on this node"),
    }


def test_startup_taint_removed_once_top_images_are_present() -> None:
    taint = Taint("image-sync.io/warming", "", "NoSchedule")
    w = World(
        nodes=[node("new", taints=(taint,), age=timedelta(minutes=1))],
        images=[image(APP, uses=9), image(BUSYBOX, uses=5), image(MISSING, uses=1)],
        config=config(startup_taint="image-sync.io/warming", startup_taint_images=2),
    )
    w.fail[MISSING] = ("ErrImagePull", "not found")
    removed_at = None
    for step in range(10):
        result = w.step()
        if result.taint_removals:
            removed_at = step
            assert result.taint_removals[0].key == "image-sync.io/warming"
            break
    assert removed_at is not None
    assert {APP, BUSYBOX} <= w.disk["new"]
    assert not w.nodes[0].taints
    # A node without eligible images has nothing to wait for.
    bare = node("bare", taints=(taint,))
    result = plan(Snapshot(now=NOW, nodes=(bare,)), w.config)
    assert [r.node for r in result.taint_removals] == ["bare"]


def test_plan_is_deterministic() -> None:
    w = world()
    w.step()
    w.step()
    snap = w.snapshot()
    shuffled = replace(
        snap,
        nodes=tuple(reversed(snap.nodes)),
        images=tuple(reversed(snap.images)),
        pods=tuple(reversed(snap.pods)),
    )
    assert plan(snap, w.config) == plan(shuffled, w.config)


def test_status_written_only_when_changed() -> None:
    w = world()
    w.converge()
    statuses = {i.image: i.reported for i in w.images}
    assert statuses[PYTORCH].nodes_wanted == 2 and statuses[PYTORCH].nodes_present == 2
    assert statuses[APP].nodes_wanted == 6 and statuses[APP].last_error == ""
    # The next day the score decays: one status write per image, nothing else.
    w.now += timedelta(days=1)
    result = w.plan()
    assert {tuple(u.patch) for u in result.status_updates} == {("score",)}
    assert len(result.status_updates) == len(cluster_images())


def test_invalid_reference_is_ineligible_with_reason() -> None:
    bad = image("Not A Ref")
    result = plan(Snapshot(now=NOW, nodes=(node("a"),), images=(bad,)), config())
    assert result.pulls == ()
    assert result.cells[0].reason.startswith("invalid image reference")


def test_duplicate_objects_for_one_image_merge() -> None:
    learned = image(APP, uses=3, gpu=True)
    declared = replace(image(APP, source="Declared", profiles=()), name="my-app")
    result = plan(Snapshot(now=NOW, nodes=(node("cpu"),), images=(learned, declared)), config())
    assert [p.images for p in result.pulls] == [(APP,)]  # declared: any node
    assert {u.name for u in result.status_updates} == {"my-app", learned.name}
