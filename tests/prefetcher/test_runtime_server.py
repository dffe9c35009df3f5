"""The report server: idle connections closed, bounded resources, metrics on a listener of their own."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests

from prefetcher.server import ReportServer, create_app
from tests.prefetcher.conftest import Running


def hello(environ: dict[str, Any], start: Any) -> list[bytes]:
    start("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


def test_an_idle_connection_is_closed_and_never_holds_a_worker() -> None:
    server = ReportServer(hello, "127.0.0.1", 0, channel_timeout=1)
    server.start()
    try:
        # More silent clients than worker threads: a half-sent request each.
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
        for sock in idle:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        # Others are still served at once.
        assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "ok\n"
        # And the silent ones are cut after the channel timeout (a few cleanup rounds).
        deadline = time.monotonic() + 15
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            while sock.recv(1024):  # a timeout here (socket.timeout) fails the test
                pass
            sock.close()
    finally:
        server.stop()


def test_metrics_can_have_a_listener_of_their_own(sim: Any) -> None:
    from prefetcher.__main__ import Prefetcher
    from tests.prefetcher.conftest import sim_config

    running = Running(sim)
    prefetcher = Prefetcher(
        sim.api_client(),
        sim_config(),
        bind=("127.0.0.1", 0),
        metrics_bind=("127.0.0.1", 0),
    )
    running.started.append(prefetcher)
    prefetcher.start()
    try:
        assert prefetcher.server is not None and prefetcher.metrics_server is not None
        report_url = f"http://127.0.0.1:{prefetcher.server.port}"
        metrics_url = f"http://127.0.0.1:{prefetcher.metrics_server.port}"
        assert requests.get(f"{report_url}/metrics", timeout=10).status_code == 404
        assert requests.get(f"{report_url}/healthz", timeout=10).status_code == 200
        scrape = requests.get(f"{metrics_url}/metrics", timeout=10)
        assert scrape.status_code == 200 and "image_sync_prefetcher_leader" in scrape.text
        assert requests.get(f"{metrics_url}/report", timeout=10).status_code == 404
    finally:
        running.stop_all()


def test_without_a_metrics_listener_metrics_stay_beside_the_report() -> None:
    from prometheus_client import CollectorRegistry

    app = create_app(
        report_json=lambda query: b"{}",
        report_html=lambda query: "",
        healthy=lambda: (True, "ok"),
        registry=CollectorRegistry(),
    )
    server = ReportServer(app, "127.0.0.1", 0)
    server.start()
    try:
        assert requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_report_in_parts_is_sent_as_one_body_without_a_copy_of_it() -> None:
    # The whole report is the JSON prepared for the plan, sent part by part (not joined
    # into a 24 MB copy per request at 1,000 x 200).
    import orjson

    from bench.report_scale import synthetic_plan
    from prefetcher.report_cache import ReportCache
    from prefetcher.report_query import ReportQuery

    cache = ReportCache()
    plan = synthetic_plan(50, 20)
    cache.prepare(plan)
    parts = cache.json_chunks(plan, None, ReportQuery(), {"runtime": {"passes": 3}})
    _, tail = cache._serialized(plan)
    assert any(part is tail for part in parts)  # the prepared JSON itself, not a copy
    app = create_app(
        report_json=lambda query: cache.json_chunks(plan, None, query, {"runtime": {}}),
        report_html=lambda query: "",
        healthy=lambda: (True, "ok"),
        registry=None,
    )
    server = ReportServer(app, "127.0.0.1", 0)
    server.start()
    try:
        answer = requests.get(f"http://127.0.0.1:{server.port}/report", timeout=10)
        assert answer.status_code == 200
        assert int(answer.headers["Content-Length"]) == len(answer.content)
        assert answer.content == cache.json(plan, None, ReportQuery(), {"runtime": {}})
        assert orjson.loads(answer.content)["runtime"] == {}
    finally:
        server.stop()


def test_stopping_the_server_ends_its_thread_without_an_error() -> None:
    """Closing the sockets from the stopping thread raced the loop's select() (EBADF, the
    thread died with an error on some stops); they are closed on the loop's own thread."""
    errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        for _ in range(30):
            server = ReportServer(hello, "127.0.0.1", 0)
            server.start()
            assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "ok\n"
            server.stop()
            assert not server._thread.is_alive()
    finally:
        threading.excepthook = previous
    assert errors == []


class BodyThatEndsAfterStop:
    """A response whose close() (on the request thread, after its body was sent) waits for
    the server's loop to end and then wakes it, as a request thread does when it finishes."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.server: ReportServer | None = None
        self.stopping = threading.Event()
        self.errors: list[OSError] = []

    def __call__(self, environ: dict[str, Any], start: Any) -> BodyThatEndsAfterStop:
        start("200 OK", [("Content-Length", str(len(self.body)))])
        return self

    def __iter__(self) -> Any:
        return iter([self.body])

    def close(self) -> None:
        assert self.server is not None and self.stopping.wait(10)
        self.server._thread.join(10)
        try:
            self.server._server.pull_trigger()
        except OSError as exc:
            self.errors.append(exc)


def test_a_request_thread_that_ends_after_the_loop_can_still_wake_it() -> None:
    """The trigger stays open until the request threads have ended: closed with the
    connections, a thread finishing its response wrote to a closed (or reused) descriptor."""
    app = BodyThatEndsAfterStop(b"x" * 65536)  # past waitress's send_bytes: sent at once
    server = app.server = ReportServer(app, "127.0.0.1", 0)
    server.start()
    assert len(requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).content) == 65536
    app.stopping.set()
    server.stop()
    assert not server._thread.is_alive()
    assert app.errors == []
