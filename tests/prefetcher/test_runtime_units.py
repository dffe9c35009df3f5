"""Runtime pieces that need no API server: triggers, the HTTP app, bind parsing, Lease records."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from prefetcher.controller import image_trigger, node_trigger
from prefetcher.informer import Change
from prefetcher.leader import LeaderElector, LeaseSettings, micro_time
from prefetcher.server import ReportServer, create_app, parse_bind
from tests.prefetcher.conftest import StepClock


def node(
    ready: bool = True, *, heartbeat: str = "t0", taints: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "resourceVersion": heartbeat, "labels": {"a": "b"}},
        "spec": {"taints": taints or []},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastHeartbeatTime": heartbeat,
                }
            ]
        },
    }


def test_node_triggers_ignore_heartbeats() -> None:
    assert node_trigger(Change("Node", "n1", None, node())) == "node joined"
    assert node_trigger(Change("Node", "n1", node(), None)) == "node removed"
    assert node_trigger(Change("Node", "n1", node(False), node(True))) == "node ready"
    assert node_trigger(Change("Node", "n1", node(heartbeat="t0"), node(heartbeat="t1"))) is None
    tainted = node(taints=[{"key": "k", "effect": "NoSchedule"}])
    assert node_trigger(Change("Node", "n1", node(), tainted)) == "node changed"
    plugged = node()
    plugged["status"]["allocatable"] = {"nvidia.com/gpu": "8"}
    assert node_trigger(Change("Node", "n1", node(), plugged)) == "node changed"


def test_image_triggers_ignore_status_updates() -> None:
    spec = {"image": "nvcr.io/nvidia/cuda:12", "source": "Declared"}
    old = {"metadata": {"name": "x"}, "spec": spec, "status": {"score": 1}}
    new = {"metadata": {"name": "x"}, "spec": dict(spec), "status": {"score": 2}}
    assert image_trigger(Change("CachedImage", "x", None, new)) == "new image"
    assert image_trigger(Change("CachedImage", "x", old, new)) is None
    changed = {**new, "spec": {**spec, "nodeSelector": {"gpu": "true"}}}
    assert image_trigger(Change("CachedImage", "x", old, changed)) == "image changed"
    assert image_trigger(Change("CachedImage", "x", old, None)) == "image removed"


def test_a_learned_image_seen_again_is_no_trigger_a_new_placement_is() -> None:
    def learned(*profiles: dict[str, object]) -> dict[str, object]:
        return {"metadata": {"name": "x"}, "spec": {"image": "i", "profiles": list(profiles)}}

    team = {"namespace": "team", "gpu": False, "lastSeen": "2026-12-07T10:00:00Z"}
    later = {**team, "lastSeen": "2026-12-07T10:05:00Z"}
    ml = {"namespace": "ml", "gpu": True, "lastSeen": "2026-12-07T10:04:00Z"}
    # The webhook's flush refreshed lastSeen (and reordered the profiles): nothing to plan.
    assert image_trigger(Change("CachedImage", "x", learned(team, ml), learned(ml, later))) is None
    gpu = {**team, "gpu": True}
    assert (
        image_trigger(Change("CachedImage", "x", learned(team), learned(team, gpu)))
        == "image changed"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:8080", ("0.0.0.0", 8080)), (":9000", ("0.0.0.0", 9000)), ("[::1]:80", ("::1", 80))],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected


def test_parse_bind_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_bind("localhost")


def test_http_endpoints() -> None:
    registry = CollectorRegistry()
    Counter("probe", "a probe", registry=registry).inc()
    healthy = {"ok": True}
    app = create_app(
        report_json=lambda query: json.dumps({"node": query.node, "page": query.page}).encode(),
        report_html=lambda query: f"<p>{query.state}</p>",
        healthy=lambda: (healthy["ok"], "fine" if healthy["ok"] else "broken"),
        registry=registry,
    )
    server = ReportServer(app, "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        report = requests.get(f"{base}/report", timeout=5)
        assert report.status_code == 200
        assert report.headers["Content-Type"] == "application/json"
        assert json.loads(report.text) == {"node": "", "page": 1}
        narrowed = requests.get(f"{base}/report?node=gpu-1&page=3", timeout=5).json()
        assert narrowed == {"node": "gpu-1", "page": 3}
        page = requests.get(f"{base}/?state=failed", timeout=5)
        assert page.status_code == 200 and "<p>failed</p>" in page.text
        for bad in ("state=broken", "page=0", "page=x"):
            answer = requests.get(f"{base}/?{bad}", timeout=5)
            assert answer.status_code == 400, bad
            assert answer.headers["Content-Type"] == "text/plain"
        assert "probe_total 1.0" in requests.get(f"{base}/metrics", timeout=5).text
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        healthy["ok"] = False
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 503
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
        assert requests.post(f"{base}/report", timeout=5).status_code == 405
    finally:
        server.stop()


class FakeLeases:
    """A Lease store with the API server's optimistic concurrency, for the election algorithm."""

    namespace = "image-sync"

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.lock = threading.Lock()

    def read_lease(self, name: str, timeout: float | None = None) -> dict[str, Any] | None:
        with self.lock:
            return json.loads(json.dumps(self.lease)) if self.lease else None

    def write_lease(
        self, lease: dict[str, Any], create: bool, timeout: float | None = None
    ) -> bool:
        with self.lock:
            if create and self.lease is not None:
                return False
            if not create and (
                self.lease is None
                or lease["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]
            ):
                return False
            self.version += 1
            self.lease = json.loads(json.dumps(lease))
            self.lease["metadata"]["resourceVersion"] = str(self.version)
            return True


def test_lease_election_takeover_only_after_expiry() -> None:
    leases, clock = FakeLeases(), StepClock()
    settings = LeaseSettings(lease_duration=15, renew_deadline=10, retry_period=2)
    a = LeaderElector(leases, "a", clock=clock, settings=settings)  # type: ignore[arg-type]
    b = LeaderElector(leases, "b", clock=clock, settings=settings)  # type: ignore[arg-type]
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    spec = leases.lease["spec"]  # type: ignore[index]
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
    assert spec["renewTime"] == micro_time(clock.t)
    clock.t += 10
    assert a.try_acquire_or_renew()  # renewing keeps it
    assert not b.try_acquire_or_renew()  # b sees a fresh record, starts its own timer
    clock.t += 14
    assert not b.try_acquire_or_renew()  # not yet 15 s since b saw it change
    clock.t += 2
    assert b.try_acquire_or_renew()  # a went quiet: b takes over
    spec = leases.lease["spec"]  # type: ignore[index]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == micro_time(clock.t)
    assert not a.try_acquire_or_renew()


def test_lease_release_lets_the_other_replica_in_at_once() -> None:
    leases, clock = FakeLeases(), StepClock()
    a = LeaderElector(leases, "a", clock=clock)  # type: ignore[arg-type]
    b = LeaderElector(leases, "b", clock=clock)  # type: ignore[arg-type]
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew()
