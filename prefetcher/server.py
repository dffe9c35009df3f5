"""The prefetcher's HTTP face: the report (JSON and HTML), Prometheus metrics and a health check.

A plain WSGI app (four read-only GET endpoints need no framework) served by waitress, a
production WSGI server that runs in this process beside the controller: a bounded pool of
worker threads, a cap on open connections, and idle connections closed after a timeout, so a
slow or hostile client cannot pile up threads or memory. Metrics may get a listener of their
own (`--metrics-bind`), so the report can stay on an internal interface while Prometheus
scrapes another.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import waitress.server
from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore

from prefetcher.report_query import ReportQuery, parse_query

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def create_app(
    *,
    report_json: Callable[[ReportQuery], bytes | Sequence[bytes]],
    report_html: Callable[[ReportQuery], str],
    healthy: Callable[[], tuple[bool, str]],
    registry: CollectorRegistry | None,
) -> WsgiApp:
    """GET /report (JSON), / (HTML), /metrics (Prometheus, unless `registry` is None: served
    elsewhere), /healthz.

    The report endpoints take the filters of `prefetcher.report_query` from the query string;
    a malformed one is answered with 400 and what is wrong.
    """
    metrics_app = make_wsgi_app(registry) if registry is not None else None

    def respond(
        start: StartResponse,
        status: str,
        body: bytes | Sequence[bytes],
        content_type: str,
    ) -> Iterable[bytes]:
        """The response; a body in parts is sent part by part, not joined into a copy."""
        chunks = [body] if isinstance(body, bytes) else list(body)
        start(
            status,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(sum(len(c) for c in chunks))),
                ("Cache-Control", "no-store"),
            ],
        )
        return chunks

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return respond(start, "405 Method Not Allowed", b"GET only\n", "text/plain")
        try:
            if path == "/metrics" and metrics_app is not None:
                return metrics_app(environ, start)  # type: ignore[no-any-return]
            if path == "/healthz":
                ok, why = healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                return respond(start, status, (why or "ok").encode() + b"\n", "text/plain")
            if path in ("/report", "/", "/index.html"):
                try:
                    query = parse_query(environ.get("QUERY_STRING") or "")
                except ValueError as exc:
                    return respond(start, "400 Bad Request", f"{exc}\n".encode(), "text/plain")
                if path == "/report":
                    return respond(start, "200 OK", report_json(query), "application/json")
                html = report_html(query).encode()
                return respond(start, "200 OK", html, "text/html; charset=utf-8")
        except Exception:
            log.exception("serving %s failed", path)
            return respond(start, "500 Internal Server Error", b"internal error\n", "text/plain")
        return respond(start, "404 Not Found", b"not found\n", "text/plain")

    return app


def metrics_only_app(registry: CollectorRegistry) -> WsgiApp:
    """GET /metrics alone, for a listener of its own."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") or "/") == "/metrics":
            return metrics_app(environ, start)  # type: ignore[no-any-return]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: this listener serves /metrics only\n"]

    return app


# Worker threads, open connections and idle seconds per connection: a browser, a scrape and
# a probe at once need a few threads; nothing here needs long-lived connections.
THREADS = 4
CONNECTION_LIMIT = 64
CHANNEL_TIMEOUT = 30
# A whole report at 1,000 x 200 is 23 MB. Sent 16 kB at a time (the socket's default send
# buffer) from a temporary file (waitress spills a response past 1 MB to disk), each of its
# 1,400 sends waited for the interpreter behind a busy pass: 13 s under load. In memory and
# in 4 MB sends it is a handful of them.
SEND_BUFFER = 4 << 20
RESPONSE_IN_MEMORY = 64 << 20


class ReportServer:
    """The app on a background thread; `port` is the bound one (useful with port 0)."""

    def __init__(
        self,
        app: WsgiApp,
        host: str,
        port: int,
        name: str = "report",
        channel_timeout: int = CHANNEL_TIMEOUT,
    ) -> None:
        self._server = waitress.server.create_server(
            app,
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=channel_timeout,
            cleanup_interval=max(1, channel_timeout // 3),
            ident="image-sync",
            clear_untrusted_proxy_headers=True,
            outbuf_overflow=RESPONSE_IN_MEMORY,
            outbuf_high_watermark=RESPONSE_IN_MEMORY,
        )
        listening = getattr(self._server, "socket", None)
        if isinstance(listening, socket.socket):  # accepted connections inherit it (Linux)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.name = name
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=f"{name}-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving the %s on http://%s:%d/", self.name, self.host, self.port)

    def stop(self) -> None:
        """Close every connection on the server's own thread, then the trigger once nothing
        can pull it.

        Closed from another thread, a socket can still be in the loop's select(), which then
        fails with EBADF and ends the thread with an error (Pylons/waitress#468, fixed after
        3.0.2): the trigger runs the close inside the loop, which ends once its map is empty.
        The trigger itself stays open until the loop and the request threads have ended:
        the loop may run the close before this thread's own pull of it returns (woken by a
        request thread's pull), and request threads pull it as they finish."""
        trigger = self._server.trigger
        if self._thread.is_alive():
            trigger.pull_trigger(self._close_connections)
            self._thread.join(timeout=5)
        if self._thread.is_alive() or self._thread.ident is None:  # stuck, or never started
            self._server.close()
        self._server.task_dispatcher.shutdown()
        trigger.close()

    def _close_connections(self) -> None:
        """Every socket but the trigger closed, and the trigger taken out of the loop's map."""
        server = self._server
        for channel in list(server._map.values()):
            if channel is server:  # (its own close() would close the trigger too)
                wasyncore.dispatcher.close(server)
            elif channel is not server.trigger:
                channel.close()
        server.trigger.del_channel()


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `[::1]:PORT` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
