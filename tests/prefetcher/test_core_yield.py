"""A puller in the way of a workload pod starting on its node yields: deleted, not failed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import ContainerObservation, ManagedPod, Snapshot, StartingPod
from prefetcher.planner import plan
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pods import puller_name
from tests.prefetcher.test_core_fixtures import CUDA, GB, NOW, PYTORCH, config, image, node

YIELDED = "yielded to pod ml/train-0 starting on the node"


def pulling(node_name: str, images: tuple[str, ...], uid: str = "p1") -> ManagedPod:
    """A puller created a minute ago, pulling the first of `images`."""
    return ManagedPod(
        name=puller_name(node_name, images),
        uid=uid,
        node=node_name,
        role="puller",
        images=images,
        phase="Pending",
        created=NOW - timedelta(minutes=1),
        containers=tuple(
            ContainerObservation(f"c{i}", ref, "waiting", reason="ContainerCreating")
            for i, ref in enumerate(images)
        ),
    )


def train(node_name: str = "g1", *images: str) -> StartingPod:
    return StartingPod(
        node=node_name,
        pod="ml/train-0",
        since=NOW - timedelta(seconds=5),
        registries=tuple(sorted({i.split("/")[0] for i in images})),
        images=images,
    )


def snapshot(*starting: StartingPod, hinted: dict[str, int] | None = None) -> Snapshot:
    return Snapshot(
        now=NOW,
        nodes=(node("g1", gpu=8, hinted_images=hinted or {}), node("g2", gpu=8)),
        images=(image(PYTORCH, gpu=True, size=20 * GB),),
        pods=(pulling("g1", (PYTORCH,)), pulling("g2", (PYTORCH,), uid="p2")),
        starting=starting,
    )


def test_a_pod_starting_with_a_missing_image_makes_the_puller_on_its_node_yield() -> None:
    snap = snapshot(train("g1", CUDA))
    result = plan(snap, config())
    assert [(d.node, d.why, d.yielded_to) for d in result.deletions] == [
        ("g1", YIELDED, "ml/train-0")
    ]
    # Not a failure: no backoff record, and the report says why the image waits.
    assert result.pull_records == {}
    cell = next(c for c in result.cells if c.node == "g1" and c.image == PYTORCH)
    assert cell.state == "missing" and cell.message == YIELDED
    # Nothing new starts on the node while the pod starts; g2 keeps its puller.
    assert all(p.node != "g1" for p in result.pulls)
    assert IncrementalPlanner(config()).plan(snap).deletions == result.deletions


def test_no_yield_when_the_pod_has_its_images_or_waits_for_ours() -> None:
    # The node lists the pod's image in its status: its pull is a cache hit.
    hinted = snapshot(train("g1", CUDA), hinted={CUDA: GB})
    assert plan(hinted, config()).deletions == ()
    # The pod waits for the image being pulled: stopping it would only delay the pod.
    same = snapshot(train("g1", PYTORCH))
    assert plan(same, config()).deletions == ()
    # A pod starting on another node does not stop this one.
    elsewhere = snapshot(train("cpu-9", CUDA))
    assert plan(elsewhere, config()).deletions == ()


def test_a_yielded_image_is_pulled_again_once_the_pod_started_without_a_backoff() -> None:
    snap = snapshot(train("g1", CUDA))
    first = plan(snap, config())
    assert [d.name for d in first.deletions] == [puller_name("g1", (PYTORCH,))]
    # The puller is gone and the pod still starts: held back, not failed.
    gone = replace(snap, pods=snap.pods[1:], pull_records=dict(first.pull_records))
    held = plan(gone, config())
    assert all(p.node != "g1" for p in held.pulls) and held.pull_records == {}
    # The pod started: the image is planned again as a first try.
    after = plan(replace(gone, starting=()), config())
    again = [p for p in after.pulls if p.node == "g1"]
    assert [(p.images[0], p.attempt) for p in again] == [(PYTORCH, 1)]
