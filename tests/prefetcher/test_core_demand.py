"""Demand first: pull order by predicted need, `placement: demand`, rollouts, CronJob lead time,
pods waiting for capacity, and images kept or released by their templates."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from prefetcher.model import (
    Demand,
    Plan,
    Rollout,
    RunningPod,
    Snapshot,
    UnschedulablePod,
    Workload,
)
from prefetcher.planner import plan
from prefetcher.planning.targets import NOT_PREDICTED
from prefetcher.poolhistory import PoolHistory
from tests.prefetcher.test_core_fixtures import APP, GB, NOW, PYTORCH, config, image, node

APP2 = "harbor.example.internal/library/app:2.0"
TYPE = "node.kubernetes.io/instance-type"
WEB = "Deployment/team/web"


def pool_nodes() -> tuple[Any, ...]:
    """Pool A (a1-a3) and pool B (b1-b3), told apart by instance type."""
    return tuple(node(f"{p}{i}", labels={TYPE: f"type-{p}"}) for p in ("a", "b") for i in (1, 2, 3))


def web(*images: str, replicas: int | None = 1, **more: Any) -> Workload:
    return Workload(key=WEB, images=images, replicas=replicas, **more)


def snapshot(demand: Demand, *images: Any, **more: Any) -> Snapshot:
    return Snapshot(
        now=more.pop("now", NOW),
        nodes=more.pop("nodes", pool_nodes()),
        images=images or (image(APP),),
        demand=demand,
        **more,
    )


def targets(result: Plan, ref: str) -> list[str]:
    return sorted(c.node for c in result.cells if c.image == ref and c.wanted)


def pull_nodes(result: Plan, ref: str = APP) -> list[str]:
    return [p.node for p in result.pulls if ref in p.images]


# --- order -------------------------------------------------------------------------------------


def test_pulls_go_first_where_the_workload_runs_then_its_pool_then_the_rest() -> None:
    demand = Demand(
        workloads=(web(APP),),
        running=(RunningPod("b2", "ReplicaSet/team/web-5d4", (APP,)),),
        parents={"ReplicaSet/team/web-5d4": WEB},
    )
    snap = snapshot(demand)
    assert pull_nodes(plan(snap, config(max_concurrent_pulls=1))) == ["b2"]
    assert pull_nodes(plan(snap, config(max_concurrent_pulls=3))) == ["b2", "b1", "b3"]
    everyone = plan(snap, config(max_concurrent_pulls=100))
    assert pull_nodes(everyone) == ["b2", "b1", "b3", "a1", "a2", "a3"]
    # Every eligible node still gets the image by default.
    assert targets(everyone, APP) == sorted(n.name for n in pool_nodes())


def test_demand_ranks_before_score() -> None:
    """A less used image needed on a node is pulled there before a more used one that is not."""
    demand = Demand(running=(RunningPod("a1", "", (APP2,)),))
    snap = snapshot(demand, image(APP, uses=90), image(APP2, uses=1))
    first = plan(snap, config(max_concurrent_pulls=100, pull_batch_size=1))
    assert [p.images for p in first.pulls if p.node == "a1"] == [(APP2,)]
    assert [p.images for p in first.pulls if p.node == "b1"] == [(APP,)]


# --- placement: demand -------------------------------------------------------------------------


def test_placement_demand_stops_at_the_predicted_need() -> None:
    demand = Demand(workloads=(web(APP),), running=(RunningPod("a2", WEB, (APP,)),))
    result = plan(snapshot(demand), config(placement="demand"))
    assert targets(result, APP) == ["a1", "a2", "a3"]  # its pool
    cell = next(c for c in result.cells if c.image == APP and c.node == "b1")
    assert (cell.state, cell.reason) == ("ineligible", NOT_PREDICTED)


def test_placement_demand_adds_nodes_up_to_the_replicas_asked_for() -> None:
    result = plan(snapshot(Demand(workloads=(web(APP, replicas=4),))), config(placement="demand"))
    assert len(targets(result, APP)) == 4
    same = plan(snapshot(Demand(workloads=(web(APP, replicas=4),))), config(placement="demand"))
    assert targets(same, APP) == targets(result, APP)  # deterministic


def test_placement_demand_keeps_every_node_for_daemonsets_and_unknown_images() -> None:
    daemon = Demand(workloads=(web(APP, replicas=None),))
    assert len(targets(plan(snapshot(daemon), config(placement="demand")), APP)) == 6
    assert len(targets(plan(snapshot(Demand()), config(placement="demand")), APP)) == 6


def ran_in_pool_b(*images: str) -> Demand:
    """What the runtime remembers once pods using `images` ran on b1 and ended."""
    history = PoolHistory(config().node_pool_labels, timedelta(days=14))
    history.saw(images, pool_nodes()[3].labels, NOW - timedelta(hours=1))
    return Demand(ran_in=history.pools(NOW))


def test_placement_demand_keeps_an_image_in_the_pools_its_pods_ran_in() -> None:
    """A finished Job's image stays where its pods ran, not on every node they could run on."""
    result = plan(snapshot(ran_in_pool_b(APP)), config(placement="demand"))
    assert targets(result, APP) == ["b1", "b2", "b3"]
    everyone = plan(snapshot(ran_in_pool_b(APP)), config(max_concurrent_pulls=100))
    assert pull_nodes(everyone) == ["b1", "b2", "b3", "a1", "a2", "a3"]  # its pool first


def test_pool_history_forgets_a_pool_after_the_retention() -> None:
    history = PoolHistory(config().node_pool_labels, timedelta(days=14))
    labels = pool_nodes()[0].labels
    history.saw((APP,), labels, NOW - timedelta(days=1))
    history.saw((APP,), labels, NOW)
    pool = next(iter(history.pools(NOW)[APP]))
    assert pool[-1] == "type-a"
    assert history.pools(NOW + timedelta(days=14)) == {APP: frozenset({pool})}
    assert history.pools(NOW + timedelta(days=15)) == {}


def test_a_cached_image_spec_overrides_the_placement_setting() -> None:
    demand = Demand(workloads=(web(APP, APP2),), running=(RunningPod("a1", WEB, (APP, APP2)),))
    snap = snapshot(demand, image(APP, placement="Demand"), image(APP2, placement="All"))
    result = plan(snap, config(placement="all"))
    assert targets(result, APP) == ["a1", "a2", "a3"]
    assert len(targets(result, APP2)) == 6


# --- rollouts ----------------------------------------------------------------------------------


def rollout_demand(*, old_still_running: bool, at: Any = NOW) -> Demand:
    pods = (RunningPod("b3", WEB, (APP,)),) if old_still_running else ()
    return Demand(
        workloads=(web(APP2),),
        running=pods,
        rollouts=(Rollout(WEB, (APP,), (APP2,), at),),
    )


def test_a_rollout_makes_the_new_image_urgent_where_the_old_one_runs() -> None:
    snap = snapshot(rollout_demand(old_still_running=True), image(APP), image(APP2, uses=0))
    quiet = config(quiet_hours="00:00-23:59", max_concurrent_pulls=100)
    result = plan(snap, quiet)
    new = [p for p in result.pulls if APP2 in p.images]
    assert [(p.node, p.why, p.urgent) for p in new] == [("b3", f"rollout of {WEB}", True)]


def test_the_old_image_is_released_after_the_grace_once_nothing_uses_it() -> None:
    grace = config(rollout_grace=3600.0)
    images = (image(APP), image(APP2, uses=0))

    def wanted(result: Plan) -> bool:
        return next(i for i in result.images if i.image == APP).wanted

    early = plan(snapshot(rollout_demand(old_still_running=False), *images), grace)
    assert wanted(early)
    assert early.wake_at is not None and early.wake_at <= NOW + timedelta(hours=1)
    late = NOW + timedelta(hours=1, minutes=1)
    released = plan(snapshot(rollout_demand(old_still_running=False), *images, now=late), grace)
    assert not wanted(released)
    assert not [c for c in released.cells if c.image == APP]
    still_used = plan(snapshot(rollout_demand(old_still_running=True), *images, now=late), grace)
    assert wanted(still_used)


def test_a_live_template_keeps_an_old_learned_image_wanted() -> None:
    stale = image(APP, last_seen=NOW - timedelta(days=30), uses=0, age=timedelta(days=40))
    assert not plan(snapshot(Demand(), stale), config()).images[0].wanted
    assert plan(snapshot(Demand(workloads=(web(APP),)), stale), config()).images[0].wanted


# --- CronJobs ----------------------------------------------------------------------------------


def test_a_cronjob_image_is_pulled_ahead_of_its_next_run() -> None:
    """Next run 04:00; 1 GB at 10 MB/s is 100 s, plus the 600 s lead: due at 03:48:20."""
    cron = Workload(key="CronJob/team/nightly", images=(APP,), schedule="0 4 * * *")
    quiet = config(quiet_hours="00:00-23:59", max_concurrent_pulls=100)
    snap = snapshot(Demand(workloads=(cron,)), image(APP, size=GB))
    before = plan(snap, quiet)
    assert before.pulls == ()
    due = NOW + timedelta(minutes=48, seconds=20)
    assert before.wake_at == due
    after = plan(replace(snap, now=due), quiet)
    assert {p.why for p in after.pulls} == {"CronJob run due"}
    assert len(after.pulls) == 6


def test_a_cronjob_time_zone_is_honoured() -> None:
    cron = Workload(
        key="CronJob/team/nightly", images=(APP,), schedule="0 5 * * *", time_zone="Europe/Berlin"
    )
    quiet = config(quiet_hours="00:00-23:59")
    # 05:00 in Berlin is 04:00 UTC in November: due at 03:48:20 UTC as above.
    before = plan(snapshot(Demand(workloads=(cron,)), image(APP, size=GB)), quiet)
    assert before.wake_at == NOW + timedelta(minutes=48, seconds=20)


# --- pods waiting for capacity -----------------------------------------------------------------


def test_pods_waiting_for_capacity_make_their_images_urgent_on_a_node_that_joins() -> None:
    joined = node("gpu-new", gpu=8, age=timedelta(minutes=2))
    demand = Demand(unschedulable=(UnschedulablePod("team/train-0", (PYTORCH,)),))
    snap = snapshot(
        demand,
        image(APP, uses=90),
        image(PYTORCH, uses=1, gpu=True, size=20 * GB),
        nodes=(*pool_nodes(), joined),
    )
    result = plan(snap, config(max_concurrent_pulls=100, pull_batch_size=1))
    (first,) = [p for p in result.pulls if p.node == "gpu-new"]
    assert (first.images, first.why) == ((PYTORCH,), "pods waiting for capacity")


def test_pool_history_places_pods_seen_by_the_watch_with_the_labels_of_the_next_pass() -> None:
    history = PoolHistory(config().node_pool_labels, timedelta(days=14))
    history.saw_on(RunningPod("b1", "Job/team/short", (APP,)), NOW)
    history.saw_on(RunningPod("gone", "Job/team/other", (APP2,)), NOW)
    assert history.pools(NOW) == {}  # not placed yet
    history.place({n.name: n.labels for n in pool_nodes()})
    assert set(history.pools(NOW)) == {APP}  # a pod on a node no longer known is dropped
    assert next(iter(history.pools(NOW)[APP]))[-1] == "type-b"
