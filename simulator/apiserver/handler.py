"""HTTP/1.1 in front of `Core`: routing, content negotiation (JSON, Table, metadata-only,
the few protobuf bodies kubectl sends), chunked watch streams, fault injection, the
`/sim/faults` admin endpoint — on a threaded stdlib server with keep-alive."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
import yaml

from . import discovery, errors, openapi, protobuf, tables
from .api import JSON, Core, Result
from .errors import ApiError
from .faults import NO_FAULT, FaultRule, Faults, FaultTarget
from .resources import ResourceDef
from .watch import WatchStream

Obj = dict[str, Any]
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    rd: ResourceDef
    namespace: str | None
    name: str
    subresource: str
    watch_path: bool


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- plumbing ------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _send_json(
        self, code: int, body: Any, headers: dict[str, str] | None = None, data: bytes = b""
    ) -> None:
        data = data or json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        headers = {}
        if err.retry_after is not None:
            headers["Retry-After"] = str(err.retry_after)
        self._send_json(err.code, err.status(), headers)

    def _alive(self) -> bool:
        """False once the client has closed its end (checked while a watch is idle)."""
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            return True
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return True
            return bool(conn.recv(1, socket.MSG_PEEK) != b"")
        except (OSError, ValueError):
            return False

    def _stream(self, stream: WatchStream, form: str, drop_after: int | None) -> None:
        """Write a watch as chunked JSON lines; `form` is "", "table" or "metadata"."""
        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        sent = 0
        first_table = True
        stream.alive = self._alive
        try:
            if drop_after == 0:
                raise ConnectionAbortedError
            for event in stream.events():
                if form and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    if form == "metadata":
                        obj = tables.partial(obj)
                    else:
                        rv = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                        obj = tables.table(
                            stream.rd, [obj], rv, self.server.core.clock(), first_table
                        )
                        first_table = False
                    event = {"type": event["type"], "object": obj}
                if "resourceVersion" in event["object"].get("metadata", {}) and not form:
                    obj_bytes = self.server.core.store.encode(stream.rd.key, event["object"])
                    kind = event["type"].encode()
                    data = b'{"type":"' + kind + b'","object":' + obj_bytes + b"}\n"
                else:
                    data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    raise ConnectionAbortedError
            self.wfile.write(b"0\r\n\r\n")
        except ConnectionAbortedError:
            self.close_connection = True  # an injected drop: cut the stream without its end
            stream.close()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            stream.close()

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            body = self._body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            self._dispatch(method, path, query, body)
        except ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # an internal error must still answer like the real server
            LOG.exception("%s %s failed", method, self.path)
            self._send_error(errors.internal(repr(e)))

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        srv = self.server
        if path.startswith("/sim/"):
            self._admin(method, path, body)
            return
        if path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if method == "GET":
            doc = self._discovery(path)
            if doc is not None:
                self._send_json(200, doc)
                return
        route = self._route(path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.watch_path:
            query = {**query, "watch": "true"}
        verb = self._verb(method, route, query)
        decision = NO_FAULT
        if srv.faults.rules:
            target = FaultTarget(
                route.rd.plural,
                route.rd.group,
                route.rd.kind,
                route.name,
                body if verb == "create" else b"",
            )
            decision = srv.faults.decide(verb, path, target)
        if decision.latency:
            time.sleep(decision.latency)
        if decision.error is not None:
            raise decision.error
        result = self._serve(method, verb, route, query, body)
        if result.stream is not None:
            accept = self.headers.get("Accept") or ""
            form = "table" if tables.wants_table(accept) else ""
            form = "metadata" if tables.wants_metadata(accept) else form
            self._stream(result.stream, form, decision.drop_watch_after)
            return
        if result.key and result.body is not None:
            if isinstance(result.body.get("items"), list):
                data = self._encode_list(result.key, result.body, result.bare_items)
            else:
                data = self.server.core.store.encode(result.key, result.body)
            self._send_json(result.code, None, data=data)
            return
        self._send_json(result.code, result.body)

    def _encode_list(self, key: str, listed: Obj, bare: bool) -> bytes:
        head = json.dumps({k: v for k, v in listed.items() if k != "items"}, separators=(",", ":"))
        store = self.server.core.store
        items = b",".join(store.encode(key, o, bare=bare) for o in listed["items"])
        return head[:-1].encode() + b',"items":[' + items + b"]}"

    def _discovery(self, path: str) -> Obj | None:
        reg = self.server.core.registry
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if path == "/version":
            return discovery.version()
        if parts == ["api"]:
            host = self.server.server_address[0]
            host = host.decode() if isinstance(host, bytes) else host
            return discovery.core_versions(f"{host}:{self.server.server_address[1]}")
        if parts == ["api", "v1"]:
            return discovery.resource_list(reg, "", "v1")
        if parts == ["apis"]:
            return discovery.group_list(reg)
        if len(parts) == 2 and parts[0] == "apis":
            doc = discovery.group(reg, parts[1])
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return doc
        if len(parts) == 3 and parts[0] == "apis":
            doc = discovery.resource_list(reg, parts[1], parts[2])
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return doc
        if parts == ["openapi", "v3"]:
            return openapi.index(reg)
        if len(parts) > 2 and parts[:2] == ["openapi", "v3"]:
            doc = openapi.group_version(reg, "/".join(parts[2:]))
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return doc
        if parts and parts[0] == "openapi":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return None

    def _route(self, path: str) -> Route | None:
        core = self.server.core
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch_path = bool(rest) and rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and core.registry.lookup(group, version, rest[2]) is not None
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        rd = core.registry.lookup(group, version, rest[0])
        if rd is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not rd.namespaced:
            return None
        name = rest[1] if len(rest) >= 2 else ""
        sub = rest[2] if len(rest) == 3 else ""
        if rd.binding and sub in ("log", "exec", "attach", "portforward", "proxy"):
            raise errors.bad_request(
                f"pods/{sub} is not available: simulated kubelets run no containers"
            )
        if sub and not (
            (sub == "status" and rd.status)
            or (sub in ("binding", "eviction") and rd.binding)
            or (rd.kind == "Namespace" and sub == "finalize")
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Route(rd, namespace, name, sub, watch_path)

    @staticmethod
    def _verb(method: str, route: Route, query: dict[str, str]) -> str:
        watching = query.get("watch") in ("true", "1")
        if method == "GET":
            if watching:
                return "watch"
            return "get" if route.name else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "delete" if route.name else "deletecollection"
        return method.lower()

    def _serve(
        self, method: str, verb: str, route: Route, query: dict[str, str], raw: bytes
    ) -> Result:
        core = self.server.core
        rd, ns, name, sub = route.rd, route.namespace, route.name, route.subresource
        dry_run = query.get("dryRun") == "All"
        if dry_run is False and query.get("dryRun") not in (None, ""):
            raise errors.bad_request(f"unsupported dryRun value {query.get('dryRun')!r}")
        if rd.review and verb != "create":
            raise errors.method_not_allowed()
        if rd.namespaced and ns is None and verb not in ("list", "watch"):
            if verb == "get" or name:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            raise errors.method_not_allowed()
        nsv = ns or ""
        accept = self.headers.get("Accept") or ""
        if verb == "watch":
            if name:
                query = {
                    **query,
                    "fieldSelector": ",".join(
                        filter(None, [query.get("fieldSelector", ""), f"metadata.name={name}"])
                    ),
                }
            return Result(200, stream=core.watch(rd, ns, query))
        if verb == "list":
            listed = core.list(rd, ns, query)
            if tables.wants_table(accept):
                return Result(
                    200, tables.table(rd, listed["items"], listed["metadata"], core.clock())
                )
            if tables.wants_metadata(accept):
                return Result(200, tables.partial_list(listed))
            return Result(200, listed, key=rd.key, bare_items=not rd.custom)
        if verb == "get":
            obj = core.get(rd, nsv, name)
            if tables.wants_table(accept) and not sub:
                return Result(
                    200,
                    tables.table(
                        rd,
                        [obj],
                        {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                        core.clock(),
                    ),
                )
            if tables.wants_metadata(accept) and not sub:
                return Result(200, tables.partial(obj))
            return Result(200, obj, key=rd.key)
        body = (
            self._decode(raw, self.headers.get("Content-Type") or "") if verb != "patch" else None
        )
        if verb == "create":
            if sub == "binding":
                return Result(201, core.bind(rd, nsv, name, body))
            if sub == "eviction":
                return Result(201, core.evict(rd, nsv, name, body))
            if name:
                raise errors.method_not_allowed()
            return Result(201, core.create(rd, nsv, body, dry_run=dry_run), key=rd.key)
        if verb == "update":
            if sub == "finalize":
                sub = ""
            return Result(
                200, core.update(rd, nsv, name, body, subresource=sub, dry_run=dry_run), key=rd.key
            )
        if verb == "patch":
            code, obj = core.patch(
                rd,
                nsv,
                name,
                self.headers.get("Content-Type") or "",
                raw,
                subresource=sub,
                dry_run=dry_run,
                field_manager=query.get("fieldManager", ""),
                force=query.get("force") == "true",
            )
            return Result(code, obj, key=rd.key)
        if verb in ("delete", "deletecollection"):
            options: Obj = body if isinstance(body, dict) else {}
            for key in ("gracePeriodSeconds", "propagationPolicy", "orphanDependents"):
                if key in query:
                    value: Any = query[key]
                    if key == "gracePeriodSeconds":
                        value = int(value)
                    elif key == "orphanDependents":
                        value = value == "true"
                    options[key] = value
            if verb == "delete":
                return Result(200, core.delete(rd, nsv, name, options, dry_run=dry_run))
            return Result(200, core.delete_collection(rd, ns, query, options, dry_run=dry_run))
        raise errors.method_not_allowed()

    @staticmethod
    def _decode(raw: bytes, content_type: str) -> Any:
        if content_type.split(";")[0].strip() == protobuf.PROTOBUF:
            return protobuf.decode(raw, content_type)
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except ValueError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise errors.bad_request(f"error decoding body: {e}") from e

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        faults = self.server.faults
        if path == "/sim/faults":
            if method == "GET":
                self._send_json(200, faults.to_json())
                return
            if method == "DELETE":
                faults.clear()
                self._send_json(200, faults.to_json())
                return
            if method in ("POST", "PUT"):
                try:
                    data = json.loads(raw or b"{}")
                    rules = [FaultRule.from_json(r) for r in data.get("rules") or []]
                except (ValueError, TypeError, AttributeError) as e:
                    raise errors.bad_request(f"invalid fault rules: {e}") from e
                faults.set(rules, int(data.get("seed", 0)))
                self._send_json(200, faults.to_json())
                return
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], core: Core, faults: Faults) -> None:
        super().__init__(address, Handler)
        self.core = core
        self.faults = faults

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are normal (watch consumers do it all the time): stay quiet."""
        return
