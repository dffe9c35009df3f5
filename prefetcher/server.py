"""The prefetcher's HTTP face: the report (JSON and HTML), Prometheus metrics and a health check.

A plain WSGI app on a threaded stdlib server: four read-only GET endpoints need no framework,
and a scrape or a browser never waits behind another request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from prefetcher.report_query import ReportQuery, parse_query

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def create_app(
    *,
    report_json: Callable[[ReportQuery], bytes],
    report_html: Callable[[ReportQuery], str],
    healthy: Callable[[], tuple[bool, str]],
    registry: CollectorRegistry,
) -> WsgiApp:
    """GET /report (JSON), / (HTML), /metrics (Prometheus), /healthz.

    The report endpoints take the filters of `prefetcher.report_query` from the query string;
    a malformed one is answered with 400 and what is wrong.
    """
    metrics_app = make_wsgi_app(registry)

    def respond(start: StartResponse, status: str, body: bytes, content_type: str) -> list[bytes]:
        start(
            status,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return respond(start, "405 Method Not Allowed", b"GET only\n", "text/plain")
        try:
            if path == "/metrics":
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


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class ReportServer:
    """The app on a background thread; `port` is the bound one (useful with port 0)."""

    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        self._server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="report-server", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving the report on http://%s:%d/", self.host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `[::1]:PORT` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
