"""The planner on whole scenarios: coverage, GPU placement, caps, backoff, keepers, taints."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import (
    ContainerObservation,
    ManagedPod,
    PullRecord,
    Snapshot,
    StartingPod,
    Taint,
)
from prefetcher.planner import HOLD_BACK_MAX, backoff_delay, in_quiet_hours, plan
from prefetcher.pods import keeper_name, puller_name
from tests.prefetcher.test_core_fixtures import (
    APP,
    BUSYBOX,
    CUDA,
    GB,
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


def test_failed_pull_is_reported_and_retried_with_backoff() -> None:
    w = world()
    w.images.append(image(MISSING, uses=100))
    message = (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{MISSING}": not found'
    )
    w.fail[MISSING] = ("ErrImagePull", message)
    first = w.step(advance=timedelta(seconds=10))
    assert {p.images[0] for p in first.pulls} == {MISSING}  # highest score first everywhere
    second = w.step(advance=timedelta(seconds=10))
    failed = [o for o in second.outcomes if not o.succeeded]
    assert len(failed) == 6 and failed[0].kind == "not-found"
    # Pullers that also pulled APP stay until a keeper holds it; the others go.
    assert {d.why for d in second.deletions} <= {
        "pull failed: ErrImagePull",
        "pulled; the keeper holds the image: ErrImagePull",
    }
    cell = next(c for c in second.cells if c.node == "cpu-1" and c.image == MISSING)
    assert cell.state == "failed" and cell.reason == "ErrImagePull" and "not found" in cell.message
    assert cell.retry_at == second.now + timedelta(seconds=60)
    record = second.pull_records[("cpu-1", MISSING)]
    assert record.attempts == 1
    # Within the backoff, no new pull of MISSING; other images go ahead.
    third = w.step(advance=timedelta(seconds=61))
    assert MISSING not in {i for p in third.pulls for i in p.images}
    status = next(u for u in second.status_updates if u.name == w.images[-1].name)
    assert "not found" in status.patch["lastError"]
    # After the backoff, it is retried as attempt 2, and the next delay doubles.
    fourth = w.step()
    retried = [p for p in fourth.pulls if MISSING in p.images]
    assert retried and all(p.attempt == 2 and p.images == (MISSING,) for p in retried)
    w.step()
    assert w.records[("cpu-1", MISSING)].attempts == 2
    assert backoff_delay(2, w.config) == 120
    assert backoff_delay(50, w.config) == w.config.pull_backoff_max


def test_failure_counted_once_while_the_pod_lingers() -> None:
    w = world()
    w.images = [image(MISSING)]
    w.fail[MISSING] = ("ErrImagePull", "not found")
    w.step()
    snap = w.snapshot()
    first = plan(snap, w.config)
    second = plan(replace(snap, pull_records=first.pull_records), w.config)
    assert second.pull_records == first.pull_records
    assert all(r.attempts == 1 for r in second.pull_records.values())


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


def test_new_node_is_served_first() -> None:
    nodes = (node("a"), node("b"), node("z-new", age=timedelta(minutes=1)))
    result = plan(Snapshot(now=NOW, nodes=nodes, images=(image(APP),)), config())
    assert result.pulls[0].node == "z-new" and result.pulls[0].urgent


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


def test_declared_image_is_always_wanted_and_learned_ones_expire() -> None:
    stale = image(APP, uses=0, last_seen=NOW - timedelta(days=30))
    declared = image(BUSYBOX, uses=0, source="Declared", profiles=(), last_seen=None)
    result = plan(Snapshot(now=NOW, nodes=(node("a"),), images=(stale, declared)), config())
    assert [p.images for p in result.pulls] == [(BUSYBOX,)]
    assert {i.image: i.wanted for i in result.images} == {APP: False, BUSYBOX: True}


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


def test_stuck_puller_is_failed_as_deadline() -> None:
    stuck = ManagedPod(
        name=puller_name("a", [APP]),
        uid="p",
        node="a",
        role="puller",
        images=(APP,),
        created=NOW - timedelta(hours=3),
        active_deadline=600,
    )
    result = plan(
        Snapshot(now=NOW, nodes=(node("a"),), images=(image(APP),), pods=(stuck,)), config()
    )
    assert [d.why for d in result.deletions] == ["stuck past its deadline"]
    assert result.pull_records[("a", APP)].reason == "DeadlineExceeded"


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


def test_deadline_grows_with_size() -> None:
    result = plan(
        Snapshot(
            now=NOW,
            nodes=(node("g", gpu=1),),
            images=(image(PYTORCH, gpu=True, size=20_400_000_000),),
        ),
        config(),
    )
    # The image may take 600 + 2040 s once its pull can start; the pod's own
    # activeDeadlineSeconds is only a backstop, four times that.
    assert result.pulls[0].deadline_seconds == 4 * (600 + 2040)
    assert result.pulls[0].pod["spec"]["activeDeadlineSeconds"] == 4 * 2640


def test_each_image_of_a_puller_is_timed_from_when_its_pull_could_start() -> None:
    big = 20_400_000_000  # 600 + 2040 s allowed
    created = NOW - timedelta(hours=2)
    puller = ManagedPod(
        name=puller_name("g", [CUDA, PYTORCH]),
        uid="p",
        node="g",
        role="puller",
        images=(CUDA, PYTORCH),
        phase="Running",
        created=created,
        containers=(
            # CUDA was ready only 90 min after creation: the kubelet was busy with other pulls.
            ContainerObservation(
                "c0", CUDA, "terminated", exit_code=0, started_at=created + timedelta(minutes=90)
            ),
            ContainerObservation("c1", PYTORCH, "waiting", reason="ContainerCreating"),
        ),
    )
    images = (image(CUDA, gpu=True), image(PYTORCH, gpu=True, size=big))
    snap = Snapshot(now=NOW, nodes=(node("g", gpu=1),), images=images, pods=(puller,))
    # Two hours after creation, 30 minutes into PYTORCH's own pull: not stuck.
    result = plan(snap, config())
    assert result.deletions == () and ("g", PYTORCH) not in result.pull_records
    began = created + timedelta(minutes=90)
    assert result.wake_at == began + timedelta(seconds=2640 + 300)
    # Past its own allowance (plus the grace), it is.
    late = plan(replace(snap, now=began + timedelta(seconds=2640 + 301)), config())
    assert [d.why for d in late.deletions] == ["stuck past its deadline"]
    record = late.pull_records[("g", PYTORCH)]
    assert record.reason == "DeadlineExceeded"
    assert "after its pull could start (allowed 2640 s" in record.message
    # A workload pod that began starting on the node meanwhile: its pulls go first, and the
    # time behind them does not count.
    workload = StartingPod(node="g", pod="ml/train-0", since=began + timedelta(minutes=30))
    held = plan(
        replace(snap, now=began + timedelta(seconds=2640 + 301), starting=(workload,)), config()
    )
    assert held.deletions == ()


def test_unknown_size_uses_hint_then_default() -> None:
    hinted = node("a", hinted_images={APP: 7 * GB})
    result = plan(
        Snapshot(now=NOW, nodes=(hinted, node("b")), images=(image(APP, size=None),)), config()
    )
    sizes = {p.node: p.size for p in result.pulls}
    assert sizes == {"a": 7 * GB, "b": 7 * GB}
    result = plan(Snapshot(now=NOW, nodes=(node("b"),), images=(image(APP, size=None),)), config())
    assert result.pulls[0].size == config().default_image_size


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


def test_attempts_survive_a_restart_through_the_pod_annotation() -> None:
    failed = ManagedPod(
        name=puller_name("a", [APP]),
        uid="p",
        node="a",
        role="puller",
        images=(APP,),
        attempt=4,
        containers=(
            ContainerObservation("pull", APP, "waiting", reason="ErrImagePull", message="401"),
        ),
    )
    snap = Snapshot(now=NOW, nodes=(node("a"),), images=(image(APP),), pods=(failed,))
    result = plan(snap, config())  # no records: a fresh process
    record = result.pull_records[("a", APP)]
    assert record.attempts == 4 and record.reason == "ErrImagePull"
    cell = result.cells[0]
    assert cell.state == "failed" and cell.kind == "unauthorized"
    assert cell.retry_at == NOW + timedelta(seconds=60 * 2**3)


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


def test_wake_at_names_the_next_retry() -> None:
    record = PullRecord("a", APP, 1, NOW - timedelta(seconds=10), "ErrImagePull", "not found")
    snap = Snapshot(
        now=NOW, nodes=(node("a"),), images=(image(APP),), pull_records={("a", APP): record}
    )
    result = plan(snap, config())
    assert result.pulls == ()
    assert result.wake_at == NOW + timedelta(seconds=50)
