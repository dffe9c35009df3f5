"""Failed and stuck pulls on whole scenarios: reasons, backoff, size-based deadlines, restarts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from prefetcher.model import ContainerObservation, ManagedPod, PullRecord, Snapshot, StartingPod
from prefetcher.planner import backoff_delay, plan
from prefetcher.pods import puller_name
from tests.prefetcher.test_core_fixtures import (
    APP,
    CUDA,
    GB,
    MISSING,
    NOW,
    PYTORCH,
    config,
    image,
    node,
    world,
)


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


def test_wake_at_names_the_next_retry() -> None:
    record = PullRecord("a", APP, 1, NOW - timedelta(seconds=10), "ErrImagePull", "not found")
    snap = Snapshot(
        now=NOW, nodes=(node("a"),), images=(image(APP),), pull_records={("a", APP): record}
    )
    result = plan(snap, config())
    assert result.pulls == ()
    assert result.wake_at == NOW + timedelta(seconds=50)
