"""Keeper pods on whole scenarios: cached images survive GC, make-before-break, replacement."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import ContainerObservation, ManagedPod, Snapshot
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
    config,
    image,
    node,
    world,
)


def test_keeper_changes_are_make_before_break() -> None:
    """Through a whole convergence, every image guarded before a step is guarded after it."""
    w = world()
    for _ in range(30):
        before = {n.name: w.guarded(n.name) for n in w.nodes}
        w.step()
        for n in w.nodes:
            assert before[n.name] <= w.guarded(n.name), n.name
    assert w.history[-1].writes == 0


def test_cached_images_survive_image_gc() -> None:
    w = world()
    w.converge()
    w.gc()
    assert w.disk["gpu-1"] == {APP, BUSYBOX, CUDA, PYTORCH}
    assert w.step().writes == 0


def test_keepers_off_keeps_pullers_as_the_record() -> None:
    w = world(keeper_enabled=False)
    final = w.converge()
    assert final.summary is not None and final.summary.coverage == 1.0
    assert not [p for p in w.pods.values() if p.role == "keeper"]
    # One puller per (node, registry): cpu nodes harbor + docker.io; gpu nodes nvcr.io too.
    pullers = [p for p in w.pods.values() if p.role == "puller"]
    assert len(pullers) == 4 * 2 + 2 * 3
    assert sorted(len(p.images) for p in pullers) == [1] * 12 + [2] * 2


def test_released_image_leaves_the_keeper() -> None:
    w = World(nodes=[node("a")], images=[image(APP), image(BUSYBOX)], config=config())
    w.converge()
    assert w.guarded("a") == {APP, BUSYBOX}
    w.images = [
        replace(i, last_seen=w.now - timedelta(days=20), daily_uses={}) if i.image == APP else i
        for i in w.images
    ]
    w.converge()
    assert w.guarded("a") == {BUSYBOX}


def test_keeper_with_a_vanished_image_is_replaced() -> None:
    w = World(nodes=[node("a")], images=[image(APP), image(BUSYBOX)], config=config())
    w.converge()
    keeper = next(p for p in w.pods.values() if p.role == "keeper")
    # The image vanished before the keeper (re)started: its container cannot run.
    containers = tuple(
        c
        if c.image != APP
        else ContainerObservation(c.name, c.image, "waiting", reason="ErrImageNeverPull")
        for c in keeper.containers
    )
    w.pods[keeper.name] = replace(keeper, containers=containers)
    w.disk["a"].discard(APP)
    result = w.step()
    assert [(p.node, p.images) for p in result.pulls] == [("a", (APP,))]
    final = w.converge()
    assert final.summary is not None and final.summary.coverage == 1.0
    assert w.guarded("a") == {APP, BUSYBOX}


def test_evicted_keeper_is_cleaned_up_and_images_reverified() -> None:
    w = World(nodes=[node("a")], images=[image(APP)], config=config())
    w.converge()
    keeper = next(p for p in w.pods.values() if p.role == "keeper")
    w.pods[keeper.name] = replace(keeper, phase="Failed", reason="Evicted", containers=())
    result = w.step()
    assert [d.why for d in result.deletions] == ["keeper ended (Evicted)"]
    assert [p.images for p in result.pulls] == [(APP,)]
    w.converge()
    assert w.guarded("a") == {APP}


def test_keeper_waits_for_the_nodes_batch_to_finish() -> None:
    """While the node still pulls, a pulled image stays held by its finished puller; the
    keeper is replaced once the node is done, or after KEEPER_BATCH_WAIT."""
    keeper = ManagedPod(
        name=keeper_name("a", [APP]),
        uid="k",
        node="a",
        role="keeper",
        images=(APP,),
        phase="Running",
        containers=(ContainerObservation("c0", APP, "running"),),
    )
    done = ManagedPod(
        name=puller_name("a", [BUSYBOX]),
        uid="p1",
        node="a",
        role="puller",
        images=(BUSYBOX,),
        phase="Succeeded",
        created=NOW - timedelta(minutes=2),
        containers=(
            ContainerObservation(
                "p", BUSYBOX, "terminated", exit_code=0, finished_at=NOW - timedelta(minutes=1)
            ),
        ),
    )
    flying = ManagedPod(
        name=puller_name("a", [MISSING]),
        uid="p2",
        node="a",
        role="puller",
        images=(MISSING,),
        created=NOW,
    )
    images = (image(APP), image(BUSYBOX), image(MISSING))
    snap = Snapshot(now=NOW, nodes=(node("a"),), images=images, pods=(keeper, done, flying))
    waiting = plan(snap, config())
    assert waiting.keepers == () and waiting.deletions == ()
    assert waiting.wake_at == NOW + timedelta(minutes=4)  # 1 min ago + KEEPER_BATCH_WAIT
    cell = next(c for c in waiting.cells if c.image == BUSYBOX)
    assert cell.state == "present"
    later = plan(replace(snap, now=NOW + timedelta(minutes=4)), config())
    assert [k.images for k in later.keepers] == [tuple(sorted((APP, BUSYBOX)))]
    # A node that starts another puller now is still busy: the keeper keeps waiting.
    next_batch = plan(replace(snap, pods=(keeper, done)), config())
    assert [p.images for p in next_batch.pulls] == [(MISSING,)] and next_batch.keepers == ()
    # A node with nothing left to pull gets its keeper at once.
    idle = plan(replace(snap, pods=(keeper, done), images=images[:2]), config())
    assert [k.images for k in idle.keepers] == [tuple(sorted((APP, BUSYBOX)))]
