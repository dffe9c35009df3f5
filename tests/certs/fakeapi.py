"""A minimal Kubernetes API for the two resources `certs --apply` touches, over real HTTP.

Enough of the semantics to test idempotence and races: resourceVersion on every write,
409 on a stale PUT or a duplicate POST, JSON patch with `test` operations (422 on failure).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonpatch

SECRETS = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/?]+))?$")
MWC = re.compile(
    r"^/apis/admissionregistration\.k8s\.io/v1/mutatingwebhookconfigurations/([^/?]+)$"
)


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        # Answer this many writes with 409, as if another writer had been quicker.
        self.conflicts = 0

    def put(self, kind: str, namespace: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.version += 1
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
            self.objects[(kind, namespace, obj["metadata"]["name"])] = obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}  # fmt: skip


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _route(self) -> tuple[str, str, str | None] | None:
            path = self.path.split("?")[0]
            if match := SECRETS.match(path):
                return "Secret", match.group(1), match.group(2)
            if match := MWC.match(path):
                return "MutatingWebhookConfiguration", "", match.group(1)
            return None

        def _handle(self) -> None:
            api.requests.append((self.command, self.path.split("?")[0]))
            route = self._route()
            if route is None:
                self._send(404, _status(404, "NotFound", f"no route {self.path}"))
                return
            kind, namespace, name = route
            with api.lock:
                current = api.objects.get((kind, namespace, name or ""))
            if self.command == "GET":
                if current is None:
                    self._send(404, _status(404, "NotFound", f"{kind} {name} not found"))
                else:
                    self._send(200, current)
                return
            body = self._body()
            if api.conflicts:
                api.conflicts -= 1
                self._send(409, _status(409, "Conflict", "the object has been modified"))
                return
            if self.command == "POST":
                name = body["metadata"]["name"]
                if api.get(kind, namespace, name) is not None:
                    self._send(409, _status(409, "AlreadyExists", f"{name} already exists"))
                    return
                api.put(kind, namespace, body)
                self._send(201, body)
            elif self.command == "PUT":
                if current is None:
                    self._send(404, _status(404, "NotFound", f"{name} not found"))
                    return
                if (
                    body["metadata"].get("resourceVersion")
                    != current["metadata"]["resourceVersion"]
                ):
                    self._send(409, _status(409, "Conflict", "the object has been modified"))
                    return
                api.put(kind, namespace, body)
                self._send(200, body)
            elif self.command == "PATCH":
                assert self.headers["Content-Type"] == "application/json-patch+json"
                if current is None:
                    self._send(404, _status(404, "NotFound", f"{name} not found"))
                    return
                try:
                    patched = jsonpatch.apply_patch(current, body)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    self._send(422, _status(422, "Invalid", str(exc)))
                    return
                api.put(kind, namespace, patched)
                self._send(200, patched)

        do_GET = do_POST = do_PUT = do_PATCH = _handle

    return Handler


@contextmanager
def running_fake_api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    """The fake API on loopback and a kubeconfig file that points at it."""
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield api, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
