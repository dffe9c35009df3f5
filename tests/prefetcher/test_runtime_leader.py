"""Leader election against the simulated API server when Lease calls hang: one leader at a time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from imagesync.config import ConfigError, load_config
from prefetcher.__main__ import lease_client
from prefetcher.informer import SystemClock
from prefetcher.kube import Kube
from prefetcher.leader import LeaderElector, LeaseSettings
from tests.prefetcher.conftest import NAMESPACE, api_client_for
from tests.waiting import wait_for

# Short real-time timings: renew every 0.2 s, step down 1.5 s after the last renewal, a
# standby takes over 3 s after it last saw the Lease change.
SETTINGS = LeaseSettings(name="hang-test", lease_duration=3, renew_deadline=1.5, retry_period=0.2)


class Partition:
    """A TCP relay to the API server that can be cut: while cut, it keeps the connections
    open and forwards nothing, so requests through it hang as over a broken network."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while not self.flowing.wait(0.05):
                    if self.closed.is_set():
                        return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()


class Watched:
    """An elector in its own thread (on the Lease client the prefetcher uses), with the
    moments its leadership began and ended as `leading()` — what gates every write — says."""

    def __init__(self, url: str, identity: str) -> None:
        configuration = client.Configuration()
        configuration.host = url
        kube = Kube(lease_client(client.ApiClient(configuration)), NAMESPACE)
        self.elector = LeaderElector(kube, identity, clock=SystemClock(), settings=SETTINGS)
        self.elector.release_on_stop = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.leading_since: float | None = None
        self.leading_until: float | None = None
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self.thread.start()
        self._sampler.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            if self.elector.leading():
                if self.leading_since is None:
                    self.leading_since = now
                self.leading_until = None
            elif self.leading_since is not None and self.leading_until is None:
                self.leading_until = now
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_a_leader_cut_off_mid_renewal_stops_before_a_standby_takes_over(api_server: Any) -> None:
    partition = Partition(api_server.url)
    a = Watched(partition.url, "replica-a")
    b = Watched(api_server.url, "replica-b")
    try:
        a.start()
        wait_for(lambda: a.leading_since is not None, timeout=10, what="a leads")
        b.start()
        time.sleep(1.0)
        assert b.leading_since is None
        # a's requests now hang (a partition): its renewal cannot complete.
        cut_at = time.monotonic()
        partition.flowing.clear()
        wait_for(lambda: b.leading_since is not None, timeout=30, what="b takes over")
        assert a.leading_until is not None, "a still leads while b does"
        # a stopped within the renew deadline of its last renewal, and before b began.
        assert a.leading_until - cut_at < SETTINGS.renew_deadline + 0.5
        assert b.leading_since is not None and a.leading_until < b.leading_since
        # The elector thread comes back from the hung calls (each is bounded) to keep trying.
        assert a.thread.is_alive()
    finally:
        partition.close()
        a.close()
        b.close()


def test_a_lease_held_by_another_ends_leadership_at_once(api_server: Any) -> None:
    a = Watched(api_server.url, "replica-a")
    try:
        a.start()
        wait_for(lambda: a.leading_since is not None, timeout=10, what="a leads")
        coordination = client.CoordinationV1Api(api_client_for(api_server.url))
        lease: Any = coordination.read_namespaced_lease(SETTINGS.name, NAMESPACE)
        lease.spec.holder_identity = "intruder"
        coordination.replace_namespaced_lease(SETTINGS.name, NAMESPACE, lease)
        stolen_at = time.monotonic()
        wait_for(lambda: a.leading_until is not None, timeout=10, what="a steps down")
        assert a.leading_until is not None
        assert a.leading_until - stolen_at < SETTINGS.renew_deadline
    finally:
        a.close()


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [("10s", "10s", "2s"), ("15s", "10s", "10s"), ("5s", "10s", "2s")],
)
def test_lease_timings_must_nest(duration: str, deadline: str, retry: str) -> None:
    environ = {
        "IMAGE_SYNC_LEASE_DURATION": duration,
        "IMAGE_SYNC_LEASE_RENEW_DEADLINE": deadline,
        "IMAGE_SYNC_LEASE_RETRY_PERIOD": retry,
    }
    with pytest.raises(ConfigError, match=r"leaseDuration .* > leaseRenewDeadline"):
        load_config(environ=environ)
