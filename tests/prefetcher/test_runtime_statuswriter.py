"""CachedImage statuses sent off the pass's thread, against the simulated API server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from imagesync.cachedimage import new_cached_image, object_name
from imagesync.config import Config
from prefetcher.controller import STATUS_COUNTS_INTERVAL, Controller
from prefetcher.kube import Kube
from prefetcher.metrics import Metrics
from prefetcher.model import Plan, StatusUpdate
from simulator.apiserver import FaultRule
from tests.prefetcher.conftest import NAMESPACE, StepClock, untyped

IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
NAME = object_name(IMAGE)
STATUS_PATH = f"/apis/image-sync.io/v1alpha1/cachedimages/{NAME}/status"


class Cluster:
    """One CachedImage, a controller whose plans patch its status as the test says, and a
    count of the status patches that reached the API server."""

    def __init__(self, api: client.ApiClient, before_write: Any = None) -> None:
        self.patches: list[int | None] = []  # each status patch sent: None or its error
        self.kube = Kube(
            api,
            NAMESPACE,
            on_call=lambda verb, resource, error: (
                self.patches.append(None if error is None else error.status)
                if (verb, resource) == ("patch", "cachedimages/status")
                else None
            ),
        )
        self.kube.create_cached_image(new_cached_image(IMAGE, []))
        self.clock = StepClock()
        self.wanted: dict[str, Any] = {}
        self.controller = Controller(
            self.kube,
            Config(namespace=NAMESPACE, learn_running_pods=False),
            clock=self.clock,
            metrics=Metrics(),
            plan_fn=lambda snapshot, config: Plan(
                now=snapshot.now,
                status_updates=(StatusUpdate(NAME, dict(self.wanted)),) if self.wanted else (),
            ),
            before_write=before_write,
        )

    def run_pass(self, **wanted: Any) -> None:
        self.wanted = wanted
        self.controller.run_pass("test")

    def stored(self) -> dict[str, Any]:
        custom = untyped(client.CustomObjectsApi(self.kube.api_client))
        obj = custom.get_cluster_custom_object("image-sync.io", "v1alpha1", "cachedimages", NAME)
        return dict(obj.get("status") or {})

    def flushed(self) -> dict[str, Any]:
        assert self.controller.status_writer.flush()
        return self.stored()


@pytest.fixture
def cluster(api: client.ApiClient) -> Any:
    made: list[Cluster] = []

    def make(before_write: Any = None) -> Cluster:
        made.append(Cluster(api, before_write))
        return made[-1]

    yield make
    for one in made:
        one.controller.stop(timeout=1)


def test_a_pass_does_not_wait_for_its_statuses_and_the_last_one_wins(cluster: Any) -> None:
    """While a status write is held up, passes go on; of the statuses planned meanwhile only
    the last is sent, after the one on its way."""
    writing, release = threading.Event(), threading.Event()

    def before_write(kind: str) -> None:
        if kind == "update status":
            writing.set()
            release.wait(30)

    c = cluster(before_write)
    c.run_pass(score=1.0)
    assert writing.wait(30)  # its write is on its way, held until `release`
    c.run_pass(score=2.0)
    c.run_pass(score=3.0)
    assert c.stored().get("score") is None  # three passes done, no status written yet
    assert c.controller.status_writer.waiting() == 2  # one on its way, the last one queued
    release.set()
    assert c.flushed()["score"] == 3.0
    assert c.patches == [None, None]  # 1.0, then 3.0: 2.0 was replaced before it went


def test_a_status_already_sent_is_not_sent_again_until_the_watch_brings_it(cluster: Any) -> None:
    c = cluster()
    c.run_pass(score=1.5, lastError="n1: ErrImagePull: not found")
    assert c.flushed() == {"score": 1.5, "lastError": "n1: ErrImagePull: not found"}
    # The next passes plan the same patch from a cache that has not seen it yet.
    c.run_pass(score=1.5, lastError="n1: ErrImagePull: not found")
    c.run_pass(score=2.5, lastError="n1: ErrImagePull: not found")
    assert c.flushed()["score"] == 2.5
    assert len(c.patches) == 2
    # Once the watch brought the object, a patch planned again is news (someone changed it).
    c.controller.status_writer.seen(NAME)
    c.run_pass(score=2.5)
    assert c.flushed()["score"] == 2.5
    assert len(c.patches) == 3


def test_counts_are_written_at_most_every_interval_and_never_lost(cluster: Any) -> None:
    """A count-only change waits STATUS_COUNTS_INTERVAL after the last count write, then goes
    without another pass; a score or lastError change is written at once, counts with it."""
    c = cluster()
    c.run_pass(nodesPresent=1)
    assert c.flushed()["nodesPresent"] == 1
    c.clock.t += 10
    c.run_pass(nodesPresent=2)
    assert c.flushed()["nodesPresent"] == 1  # deferred
    assert c.controller.status_writer.waiting() == 1
    c.run_pass(nodesPresent=2, lastError="n1: ErrImagePull: not found")
    assert c.flushed()["nodesPresent"] == 2  # an error is news: written at once, counts too
    c.run_pass(nodesPresent=3)
    assert c.flushed()["nodesPresent"] == 2  # deferred again
    c.clock.t += STATUS_COUNTS_INTERVAL
    assert c.flushed()["nodesPresent"] == 3  # sent when due, no pass needed
    assert c.controller.status_writer.waiting() == 0


def test_a_failed_status_write_is_sent_again_on_the_next_pass(
    cluster: Any, api_server: Any
) -> None:
    c = cluster()
    api_server.set_faults([FaultRule(path=STATUS_PATH, verbs=("patch",), status=500, times=1)])
    c.run_pass(score=4.0)
    assert c.flushed().get("score") is None
    assert c.patches == [500]
    assert c.controller.api_errors == 1
    assert "update status" in c.controller.errors[-1]
    c.run_pass(score=4.0)
    assert c.flushed()["score"] == 4.0
    assert c.patches == [500, None]


def test_a_standby_writes_no_status(cluster: Any, api: client.ApiClient) -> None:
    c = cluster()
    c.controller._is_leader = lambda: False
    c.run_pass(score=5.0)
    assert c.flushed().get("score") is None
    assert c.patches == []
