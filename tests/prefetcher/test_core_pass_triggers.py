"""Which changes need a pass: a workload pod's start only when the last plan held a pull back
for it (`Plan.holding`), a keeper's containers coming up only when they complete a guard a
deletion waits for (`Plan.guard_waits`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefetcher import pods
from prefetcher.informer import Change
from prefetcher.model import ContainerObservation, ManagedPod, Plan, StartingPod
from prefetcher.planner import plan
from prefetcher.triggers import (
    missed_while_planning,
    own_pod_change,
    own_pod_trigger,
    started_trigger,
)
from tests.prefetcher.test_core_fixtures import NOW, World, config, image, node, running

A, B = "harbor.example.internal/a:1", "harbor.example.internal/b:1"
JOB = "team/job-1"


def two_nodes() -> World:
    return World(nodes=[node("n1"), node("n2")], images=[image(A), image(B)], config=config())


def with_job(w: World) -> Plan:
    """The plan of `w` while JOB starts on n1, waiting for an image we do not manage."""
    job = StartingPod("n1", JOB, NOW, registries=("quay.io",), images=("quay.io/x/y:1",))
    return plan(replace(w.snapshot(), starting=(job,)), w.config)


def test_a_pod_that_held_a_pull_back_is_a_trigger_when_it_starts_another_is_not() -> None:
    w = two_nodes()
    held = with_job(w)
    assert {p.node for p in held.pulls} == {"n2"}  # n1 waits for the job
    assert held.holding == frozenset({JOB})
    assert started_trigger(JOB, held) == "workload pod started"
    assert started_trigger("team/other", held) is None
    assert started_trigger(JOB, None) == "workload pod started"  # no plan yet
    # Once every image is on the nodes, the job holds nothing back: its start changes nothing.
    w.converge()
    calm = with_job(w)
    assert calm.holding == frozenset() and started_trigger(JOB, calm) is None


def keeper(*containers: ContainerObservation, phase: str = "Running") -> ManagedPod:
    tools = ContainerObservation("tools", "tools:1", "terminated", exit_code=0, init=True)
    return ManagedPod(
        name="isync-keep-1",
        uid="k1",
        node="n1",
        role="keeper",
        images=(A, B),
        phase=phase,
        containers=(tools, *containers),
    )


WAITING_B = ContainerObservation("c1", B, "waiting", reason="ContainerCreating")


def test_a_keeper_coming_up_is_a_trigger_once_it_completes_a_guard() -> None:
    old = keeper(running("c0", A), WAITING_B)
    new = keeper(running("c0", A), running("c1", B))
    waits_b = Plan(now=NOW, guard_waits=(("isync-keep-1", frozenset({A, B})),))
    waits_other = Plan(now=NOW, guard_waits=(("isync-keep-2", frozenset({A})),))
    assert own_pod_trigger(old, new, waits_b) == "keeper holds the images"
    assert own_pod_trigger(old, new, waits_other) is None
    assert own_pod_trigger(old, new, Plan(now=NOW)) is None
    # Anything else about a keeper, or any change of a puller, is a trigger.
    gone = keeper(running("c0", A), ContainerObservation("c1", B, "waiting", "ErrImageNeverPull"))
    assert own_pod_trigger(old, gone, Plan(now=NOW)) == "pod changed"
    assert own_pod_trigger(old, replace(new, deleting=True), Plan(now=NOW)) == "pod changed"
    assert own_pod_trigger(keeper(phase="Pending"), new, Plan(now=NOW)) == "pod changed"
    assert own_pod_trigger(None, new, Plan(now=NOW)) == "pod changed"
    assert own_pod_trigger(old, new, None) == "pod changed"


def test_a_plan_waits_for_the_keeper_that_guards_what_a_finished_puller_pulled() -> None:
    w = World(nodes=[node("n1")], images=[image(A), image(B)], config=config())
    w.step()  # the puller pulls A and B
    created = w.step()  # it finished: the keeper is created, the puller kept until it runs
    [new] = created.keepers
    assert not created.deletions
    assert created.guard_waits == ((new.pod_name, frozenset({A, B})),)
    done = w.step()  # the keeper runs both: the puller goes, nothing is waited for
    assert [d.role for d in done.deletions] == ["puller"] and done.guard_waits == ()


def api_keeper(*running_images: str) -> dict[str, Any]:
    """A keeper of A and B as the API returns it, with `running_images` running."""
    obj = dict(pods.build_keeper(node("n1"), (A, B), config()))
    obj["metadata"] = {**obj["metadata"], "uid": "k1"}
    statuses = [
        {
            "name": pods.keeper_container_name(ref),
            "image": ref,
            "state": {"running": {"startedAt": "2026-11-22T03:00:00Z"}}
            if ref in running_images
            else {"waiting": {"reason": "ContainerCreating"}},
        }
        for ref in (A, B)
    ]
    obj["status"] = {"phase": "Running", "containerStatuses": statuses}
    return obj


def test_the_controller_reads_keeper_changes_and_what_came_while_it_planned() -> None:
    name = str(api_keeper()["metadata"]["name"])
    waits = Plan(now=NOW, guard_waits=((name, frozenset({A, B})),), holding=frozenset({JOB}))
    change = Change("pods", f"image-sync/{name}", api_keeper(A), api_keeper(A, B))
    assert own_pod_change(change, waits) == "keeper holds the images"
    assert own_pod_change(change, replace(waits, guard_waits=())) is None
    assert own_pod_change(replace(change, old=None), waits) == "pod changed"
    # After a pass: a pod it holds a pull back for that started meanwhile, or a keeper that
    # came up meanwhile, asks for the next pass.
    starting: dict[str, dict[str, Any]] = {JOB: {}}
    gone: dict[str, dict[str, Any]] = {}
    assert missed_while_planning(waits, starting.get, [api_keeper(A)]) is None
    assert missed_while_planning(waits, gone.get, [api_keeper(A)]) == "workload pod started"
    up = missed_while_planning(waits, starting.get, [api_keeper(A, B)])
    assert up == "keeper holds the images"
