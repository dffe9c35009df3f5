"""The disk budget: the smaller of diskBudget and the GC threshold, giving way to the images
of the node's own pods, with the two GC thresholds as a band against churn."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from imagesync.config import Config
from prefetcher.budget import BudgetItem, NodeRoom, fit, format_bytes, format_duration, node_room
from prefetcher.budgethold import BudgetHold
from prefetcher.model import Demand, RunningPod, Snapshot, StartingPod
from prefetcher.planner import plan
from tests.prefetcher.test_core_fixtures import (
    APP,
    BUSYBOX,
    CUDA,
    GB,
    NOW,
    PYTORCH,
    World,
    config,
    image,
    node,
)

A, B, C = (
    "harbor.example.internal/a:1",
    "harbor.example.internal/b:1",
    "harbor.example.internal/c:1",
)
JOB = "nvcr.io/nvidia/nemo:24.07"


def room(pods: int = 0, other: int = 0, capacity: int = 100 * GB) -> NodeRoom:
    n = node("n", capacity=capacity, image_fs_other_used=other)
    found = node_room(n, config(), set(), pods, 1 if pods else 0)
    assert found is not None
    return found


ITEMS = [BudgetItem(A, 20 * GB, 3.0), BudgetItem(B, 15 * GB, 2.0), BudgetItem(C, 10 * GB, 1.0)]
EVERY = {A, B, C}


def test_budget_is_the_smaller_of_share_and_gc_threshold() -> None:
    n = node("a", capacity=100 * GB)
    assert fit(node_room(n, config(), set()), ITEMS).budget == 50 * GB
    share = node_room(n, config(disk_budget=0.95), set())
    assert fit(share, ITEMS).budget == 85 * GB
    busy = fit(room(other=60 * GB), ITEMS, held=EVERY)
    assert busy.budget == 25 * GB and busy.fitted == (A,)
    assert busy.reason == "image GC high threshold 85 % of 100.0 GB, less 60.0 GB other use"
    assert fit(room(), ITEMS).reason == "diskBudget 50% of 100.0 GB"
    unknown = fit(node_room(node("c", capacity=None), config(), set()), ITEMS)
    assert unknown.budget is None and unknown.fitted == (A, B, C)
    # Without the runtime's figure, other use is what status.images lists that nobody wants.
    hinted = node("d", capacity=100 * GB, hinted_images={A: 20 * GB, "x/other:1": 50 * GB})
    assert fit(node_room(hinted, config(), {A}), ITEMS).budget == 35 * GB


def test_fit_keeps_best_first_and_skips_what_does_not_fit() -> None:
    items = [BudgetItem("big", 30 * GB, 9.0), BudgetItem(B, 20 * GB, 2.0), ITEMS[2]]
    result = fit(room(capacity=40 * GB), items, held={"big", B, C})
    assert result.fitted == (B,) and result.used == 20 * GB
    assert [i.image for i, _ in result.left_out] == ["big", C]
    assert result.left_out[0][1] == (
        "disk budget: needs 30.0 GB, 20.0 GB of 20.0 GB left after 0 higher-ranked image(s)"
    )
    assert format_bytes(20_400_000_000) == "20.4 GB" and format_bytes(4_000_000) == "4 MB"


def test_the_nodes_own_pods_shrink_the_budget_and_what_no_longer_fits_goes() -> None:
    alone = fit(room(), ITEMS, held=EVERY)
    assert alone.fitted == (A, B, C) and alone.budget == 50 * GB
    # The node's pods use 10 GB of other wanted images: 50 - 10 = 40 GB is left for ours.
    crowded = fit(room(pods=10 * GB), ITEMS, held=EVERY)
    assert crowded.fitted == (A, B) and crowded.budget == 40 * GB
    assert crowded.reason == (
        "diskBudget 50% of 100.0 GB, less 10.0 GB for 1 image(s) the node's pods use"
    )
    assert [i.image for i, _ in crowded.left_out] == [C]
    assert crowded.left_out[0][1] == (
        "disk budget: needs 10.0 GB, 5.0 GB of 40.0 GB left after 2 higher-ranked image(s) "
        "(the node's pods use 10.0 GB of 1 image(s))"
    )
    # More pods: only what still fits stays; the pods may take it all.
    assert fit(room(pods=40 * GB), ITEMS, held=EVERY).fitted == (C,)
    assert fit(room(pods=60 * GB), ITEMS, held=EVERY).fitted == ()
    # On a node short of space the GC threshold counts them the same way.
    assert fit(room(pods=10 * GB, other=50 * GB), ITEMS, held=EVERY).budget == 25 * GB


def test_an_image_the_pods_use_counts_once_if_held_and_twice_if_not() -> None:
    # The pods use A (20 GB), which the keeper holds: nothing else has to go.
    held = fit(room(pods=20 * GB), ITEMS, pods={A}, held=EVERY)
    assert held.fitted == (A, B, C) and held.budget == 50 * GB and held.alone == 25 * GB
    # Not held: it is added only if it fits beside the pods' bytes (their containers pin it).
    new = fit(room(pods=30 * GB), ITEMS, pods={A}, held={B, C})  # 20 GB left for ours
    assert new.fitted == (B,) and [i.image for i, _ in new.left_out] == [A, C]
    assert fit(room(pods=30 * GB), ITEMS, pods={A}, held=EVERY).fitted == (A, B)
    assert fit(room(pods=20 * GB), ITEMS[:1], pods={A}).fitted == (A,)  # room for it twice


def test_a_band_as_wide_as_the_gc_thresholds_keeps_what_is_held() -> None:
    # 47 GB: within diskBudget (50 GB), but in the 5 % band below it.
    items = [*ITEMS[:2], BudgetItem(C, 12 * GB, 1.0)]
    held = fit(room(), items, held=EVERY)
    assert held.fitted == (A, B, C) and held.held_matters  # on the node: it stays
    new = fit(room(), items, held={A, B})
    assert new.fitted == (A, B) and new.held_matters  # not on the node yet: not added
    assert new.left_out[0][1].endswith("(a new image stops 5 % of the disk short)")
    # Far from the limit, what is held does not matter.
    assert not fit(room(), ITEMS[:2]).held_matters


@dataclass
class PodsWorld(World):
    """A World whose nodes run workload pods (as the demand informers see them)."""

    running: list[RunningPod] = field(default_factory=list)
    starting: list[StartingPod] = field(default_factory=list)
    # The runtime's memory of the images each node's pods used (None: `pods_used` as set).
    hold: BudgetHold | None = None
    pods_used: dict[str, frozenset[str]] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        if self.hold is not None:
            for pod in self.running:
                self.hold.saw(pod.node, pod.images, self.now)
            for starting in self.starting:
                self.hold.saw(starting.node, starting.images, self.now)
        used = self.hold.used(self.now) if self.hold is not None else self.pods_used
        return replace(
            super().snapshot(),
            demand=Demand(running=tuple(self.running), pods_used=used),
            starting=tuple(self.starting),
        )


def gpu_node_world(settings: Config, hold: BudgetHold | None = None) -> PodsWorld:
    """One 100 GB GPU node; A, B and C fill its 50 GB budget and JOB's 40 GB, ranked last,
    is beyond it."""
    return PodsWorld(
        nodes=[node("g", gpu=8, capacity=100 * GB)],
        images=[
            image(A, uses=30, gpu=True, size=20 * GB),
            image(B, uses=20, gpu=True, size=10 * GB),
            image(C, uses=10, gpu=True, size=10 * GB),
            image(JOB, uses=1, gpu=True, size=40 * GB),
        ],
        config=settings,
        hold=hold,
    )


def test_the_keeper_gives_the_space_back_while_the_pods_need_it_and_takes_it_again() -> None:
    w = gpu_node_world(config())
    w.converge()
    assert w.guarded("g") == {A, B, C}
    # A job using the 40 GB image is bound to the node and pulls it: 50 - 40 = 10 GB left.
    w.starting.append(StartingPod("g", "team/job-1", w.now, images=(JOB,)))
    shrunk = w.step()
    assert [k.images for k in shrunk.keepers] == [(B,)]  # what no longer fits goes at once
    [summary] = shrunk.nodes
    assert summary.budget == 10 * GB and "the node's pods use" in summary.budget_reason
    assert not shrunk.pulls  # the job's own image does not fit beside it twice
    w.converge()
    assert w.guarded("g") == {B}
    # The job runs, then ends: the budget grows back and A and C are pulled again.
    w.starting.clear()
    w.running.append(RunningPod("g", "Job/team/job-1", (JOB,)))
    assert w.converge().nodes[0].budget == 10 * GB
    w.running.clear()
    grown = w.converge()
    assert w.guarded("g") == {A, B, C}
    assert grown.nodes[0].budget_reason == "diskBudget 50% of 100.0 GB"


def test_the_hold_remembers_each_nodes_pod_images_for_its_window() -> None:
    hold = BudgetHold(timedelta(hours=1))
    start = World(nodes=[], images=[], config=config()).now
    hold.saw("g", (A, B), start)
    hold.saw("g", (B,), start + timedelta(minutes=40))
    hold.saw("h", (C,), start + timedelta(minutes=10))
    assert hold.used(start + timedelta(minutes=30)) == {"g": {A, B}, "h": {C}}
    assert hold.used(start + timedelta(minutes=65)) == {"g": {B}, "h": {C}}
    assert hold.used(start + timedelta(minutes=101)) == {}  # forgotten: the budget grows back
    off = BudgetHold(timedelta(0))
    off.saw("g", (A,), start)
    assert off.used(start) == {}
    assert format_duration(3600) == "1h" and format_duration(5400) == "90m"


def test_an_image_the_pods_used_lately_counts_once_held_or_not() -> None:
    def world(job_uses: int, job_size: int) -> PodsWorld:
        return PodsWorld(
            nodes=[node("g", gpu=8, capacity=100 * GB)],
            images=[
                image(A, uses=20, gpu=True, size=20 * GB),
                image(B, uses=10, gpu=True, size=15 * GB),
                image(JOB, uses=job_uses, gpu=True, size=job_size),
            ],
            config=config(),
        )

    # Not held by the keeper: its 40 GB stay out of the 50 GB budget; A and B do not fit.
    gone = world(1, 40 * GB)
    gone.pods_used = {"g": frozenset({JOB})}
    [summary] = gone.converge().nodes
    assert gone.guarded("g") == set() and summary.budget == 10 * GB
    assert summary.budget_reason == (
        "diskBudget 50% of 100.0 GB, less 40.0 GB for 1 image(s) the node's pods used within "
        "budgetHold 1d (held)"
    )
    # Held by the keeper: one of its images like any other (the keeper pins no more than
    # its budget), its room not counted twice.
    kept = world(30, 10 * GB)
    kept.converge()
    assert kept.guarded("g") == {JOB, A, B}
    kept.pods_used = {"g": frozenset({JOB})}
    held = kept.step()
    assert held.writes == 0 and held.nodes[0].budget == 50 * GB
    assert held.nodes[0].budget_reason == "diskBudget 50% of 100.0 GB"


def test_the_budget_stays_low_while_the_hold_lasts_after_the_pods_leave() -> None:
    w = gpu_node_world(config(budget_hold=3600.0), BudgetHold(timedelta(hours=1)))
    w.converge()
    assert w.guarded("g") == {A, B, C}
    # A job pulls the 40 GB image: the keeper lets A and C go for it, as without the hold.
    w.starting.append(StartingPod("g", "team/job-1", w.now, images=(JOB,)))
    w.converge()
    assert w.guarded("g") == {B}
    w.starting.clear()
    w.running.append(RunningPod("g", "Job/team/job-1", (JOB,)))
    w.converge()
    # The job ends: for the next hour its image keeps its room, A and C are not pulled again.
    w.running.clear()
    held = w.step(advance=timedelta(minutes=10))
    assert not held.pulls and w.guarded("g") == {B}
    [summary] = held.nodes
    assert summary.budget == 10 * GB
    assert summary.budget_reason == (
        "diskBudget 50% of 100.0 GB, less 40.0 GB for 1 image(s) the node's pods used within "
        "budgetHold 1h (held)"
    )
    assert not w.step(advance=timedelta(minutes=40)).pulls
    # An hour after the job left, the budget grows back and A and C come back.
    w.now += timedelta(minutes=15)
    grown = w.converge()
    assert w.guarded("g") == {A, B, C}
    assert grown.nodes[0].budget_reason == "diskBudget 50% of 100.0 GB"


def test_disk_budget_keeps_the_highest_scores_and_says_why() -> None:
    small = node("small", capacity=40 * GB, gpu=1)
    images = (
        image(PYTORCH, uses=30, gpu=True, size=20_400_000_000),
        image(CUDA, uses=20, gpu=True, size=3 * GB),
        image(APP, uses=5, size=GB),
    )
    result = plan(Snapshot(now=NOW, nodes=(small,), images=images), config())
    # Budget: min(50% of 40 GB, 85% of 40 GB) = 20 GB; PyTorch (20.4 GB) does not fit.
    assert [b.image for b in result.budget_left_out] == [PYTORCH]
    assert "disk budget" in result.budget_left_out[0].why
    cell = next(c for c in result.cells if c.image == PYTORCH)
    assert cell.state == "ineligible" and cell.reason.startswith("disk budget")
    assert result.pulls[0].images[0] == CUDA


def test_budget_counts_other_disk_use_from_the_hint() -> None:
    crowded = node("c", capacity=100 * GB, hinted_images={"docker.io/library/other:1": 75 * GB})
    images = (image(APP, size=3 * GB), image(BUSYBOX, size=2 * GB, uses=1))
    result = plan(Snapshot(now=NOW, nodes=(crowded,), images=images), config())
    # 85% of 100 GB - 75 GB other = 10 GB may be held; new images are pulled only up to
    # the GC low threshold, 80% - 75 GB = 5 GB: both fit, nothing more.
    node_summary = result.nodes[0]
    assert node_summary.budget == 10 * GB
    assert result.budget_left_out == ()
    more = (*images, image(CUDA, size=GB, uses=1))
    result = plan(Snapshot(now=NOW, nodes=(crowded,), images=more), config())
    assert [b.image for b in result.budget_left_out] == [CUDA]


def test_budget_not_exceeded_by_keeper_set() -> None:
    w = World(
        nodes=[node("g", gpu=1, capacity=30 * GB)],
        images=[
            image(PYTORCH, gpu=True, size=20_400_000_000),
            image(CUDA, gpu=True, size=5 * GB),
            image(APP, size=4 * GB),
        ],
        config=config(),
    )
    w.converge()
    assert w.guarded("g") == {CUDA, APP}  # PyTorch first by score, but 20.4 > 15 GB budget


def test_an_image_used_lately_is_not_pulled_back_when_it_would_not_stay() -> None:
    """While not held, an image the node's pods used within budgetHold keeps its room; once
    held it is an image like any other. One that fits only while its room is kept would be
    pulled, left out once held, let go by the keeper and pulled again on every pass."""
    w = PodsWorld(
        nodes=[node("g", gpu=8, capacity=100 * GB)],
        images=[
            image(A, uses=30, gpu=True, size=12 * GB),
            image(B, uses=20, gpu=True, size=25 * GB),
            image(JOB, uses=10, gpu=True, size=15 * GB),
        ],
        config=config(),
        pods_used={"g": frozenset({JOB})},
    )
    final = w.converge()
    pulled = [ref for plan in w.history for pull in plan.pulls for ref in pull.images]
    assert pulled == [A] and w.guarded("g") == {A}
    # B does not fit beside the 15 GB kept for JOB, and JOB is not pulled into that room.
    assert final.budget_left_out[-1].image == JOB
    assert "once pulled it would not fit" in final.budget_left_out[-1].why
