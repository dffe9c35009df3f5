"""The simulated registries over HTTP: the OCI distribution API a catalog client reads.

Each registry of a scenario is served on a loopback port of its own:

- `GET /v2/`, `GET /v2/_catalog`, `GET /v2/<name>/tags/list` (paginated with `n`, `last`
  and a `Link` header), `HEAD`/`GET /v2/<name>/manifests/<tag or digest>` (an OCI image
  index whose entries are the image's platforms, and each platform's manifest: a config blob
  and one layer of the platform's compressed size), `GET /v2/<name>/blobs/<config digest>`;
- authentication when the scenario gives the registry `credentials`: a `Bearer` challenge
  whose token endpoint (`/token`) takes those credentials (Docker, Harbor, NGC), or `Basic`
  (`auth: basic`), on every request but `/token`;
- faults: 503 during an outage, 429 with `Retry-After` past `rateLimit` requests per
  simulated minute, 401 for repositories under `unauthorized` without credentials, 404 for
  what does not exist.

Digests are the catalogue's own (`fake_digest`), not hashes of the served bytes: a client
trusts `Docker-Content-Digest`, and the kubelet's pulls never go through here.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

from simulator.registry import CatalogImage, Platform, Registry, RegistrySet, fake_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_SIZE = 1469


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message}]})
    return Response(body, status=status, mimetype="application/json", headers=headers or {})


def config_digest(image: CatalogImage, platform: Platform) -> str:
    return fake_digest("config", image.repository, image.tag, platform.arch)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(items: list[str]) -> tuple[list[str], str]:
    """`n`/`last` pagination: the page and the query of the next one ("" at the end)."""
    last = request.args.get("last", "")
    n = int(request.args.get("n") or 100)
    rest = [i for i in sorted(items) if i > last] if last else sorted(items)
    page = rest[:n]
    more = f"n={n}&last={page[-1]}" if len(rest) > n else ""
    return page, more


def registry_app(registry: Registry, registries: RegistrySet, now: Callable[[], float]) -> Flask:
    """The distribution API of one simulated registry."""
    app = Flask(f"registry-{registry.host}")
    credentials = registry.credentials
    tokens: set[str] = set()
    window: list[float] = []  # request times in the current simulated minute
    lock = threading.Lock()

    def path(image: CatalogImage) -> str:
        return image.repository.split("/", 1)[1]

    def images(name: str) -> list[CatalogImage]:
        moment = now()
        return [i for i in registry.images.values() if path(i) == name and i.pushed(moment)]

    def authorized() -> bool:
        header = request.headers.get("Authorization", "")
        if registry.auth == "basic" and header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode() == credentials
        return header.startswith("Bearer ") and header[7:] in tokens

    def challenge(scope: str) -> Response:
        if registry.auth == "basic":
            value = f'Basic realm="{registry.host}"'
        else:
            realm = f"{request.host_url}token"
            value = f'Bearer realm="{realm}",service="{registry.host}"'
            if scope:
                value += f',scope="{scope}"'
        return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": value})

    @app.before_request
    def gate() -> Response | None:
        moment = now()
        if registries.is_down(registry.host, moment):
            return _error(503, "UNAVAILABLE", "registry is down")
        if registry.rate_limit:
            with lock:
                window[:] = [t for t in window if moment - t < 60.0]
                if len(window) >= registry.rate_limit:
                    return _error(
                        429, "TOOMANYREQUESTS", "rate limit exceeded", {"Retry-After": "60"}
                    )
                window.append(moment)
        if request.path == "/token":
            return None
        name = request.path[len("/v2/") :].split("/manifests/")[0].split("/blobs/")[0]
        name = name.removesuffix("/tags/list")
        # With credentials: a private registry, or only its `unauthorized` repositories.
        protected = bool(credentials) and (
            not registry.unauthorized
            or any(name == p or name.startswith(p + "/") for p in registry.unauthorized)
        )
        if protected and not authorized():
            scope = "registry:catalog:*" if name == "_catalog" else f"repository:{name}:pull"
            return challenge("" if request.path == "/v2/" else scope)
        return None

    @app.get("/token")
    def token() -> Response:
        if request.authorization is None or (
            f"{request.authorization.username}:{request.authorization.password}" != credentials
        ):
            return _error(401, "UNAUTHORIZED", "bad credentials")
        value = secrets.token_hex(16)
        tokens.add(value)
        return Response(
            json.dumps({"token": value, "expires_in": 300}), mimetype="application/json"
        )

    @app.get("/v2/")
    def base() -> Response:
        return Response("{}", mimetype="application/json")

    @app.get("/v2/_catalog")
    def catalog() -> Response:
        moment = now()
        listed = {path(i) for i in registry.images.values() if i.pushed(moment)}
        page, more = _page(sorted(listed))
        headers = {"Link": f'</v2/_catalog?{more}>; rel="next"'} if more else {}
        return Response(
            json.dumps({"repositories": page}), mimetype="application/json", headers=headers
        )

    @app.get("/v2/<path:name>/tags/list")
    def tags(name: str) -> Response:
        found = images(name)
        if not found:
            return _error(404, "NAME_UNKNOWN", f"repository {name} not known")
        page, more = _page([i.tag for i in found])
        headers = {"Link": f'</v2/{name}/tags/list?{more}>; rel="next"'} if more else {}
        body = {"name": name, "tags": page}
        return Response(json.dumps(body), mimetype="application/json", headers=headers)

    def index(image: CatalogImage) -> dict[str, Any]:
        return {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": p.digest,
                    "size": 480,
                    "platform": {"os": p.os, "architecture": p.arch},
                }
                for p in image.platforms
            ],
        }

    def manifest(image: CatalogImage, platform: Platform) -> dict[str, Any]:
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_digest(image, platform),
                "size": CONFIG_SIZE,
            },
            "layers": [
                {
                    "mediaType": OCI_LAYER,
                    "digest": fake_digest("layer", platform.digest),
                    "size": max(0, platform.compressed_size - CONFIG_SIZE),
                }
            ],
        }

    @app.route("/v2/<path:name>/manifests/<reference>", methods=["GET", "HEAD"])
    def manifests(name: str, reference: str) -> Response:
        for image in images(name):
            if reference in (image.tag, image.digest):
                body, digest, kind = index(image), image.digest, OCI_INDEX
                break
            platform = next((p for p in image.platforms if p.digest == reference), None)
            if platform is not None:
                body, digest, kind = manifest(image, platform), platform.digest, OCI_MANIFEST
                break
        else:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest {name}:{reference} not known")
        text = json.dumps(body)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(len(text))}
        return Response("" if request.method == "HEAD" else text, mimetype=kind, headers=headers)

    @app.get("/v2/<path:name>/blobs/<digest>")
    def blobs(name: str, digest: str) -> Response:
        for image in images(name):
            for platform in image.platforms:
                if config_digest(image, platform) == digest:
                    config = {
                        "architecture": platform.arch,
                        "os": platform.os,
                        "created": _iso(image.created or registries.epoch),
                        "rootfs": {"type": "layers", "diff_ids": []},
                    }
                    return Response(json.dumps(config), mimetype=OCI_CONFIG)
        return _error(404, "BLOB_UNKNOWN", f"blob {digest} not known")

    return app


class RegistryServers:
    """Every registry of a RegistrySet on a loopback port of its own; `urls[host]`."""

    def __init__(
        self, registries: RegistrySet, now: Callable[[], float], host: str = "127.0.0.1"
    ) -> None:
        self.registries = registries
        self.now = now
        self.host = host
        self.urls: dict[str, str] = {}
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(self) -> dict[str, str]:
        for registry in self.registries.registries.values():
            app = registry_app(registry, self.registries, self.now)
            server = make_server(self.host, 0, app, threaded=True)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"registry-{registry.host}",
                daemon=True,
            )
            thread.start()
            self._servers.append((server, thread))
            self.urls[registry.host] = f"http://{self.host}:{server.server_port}"
        return dict(self.urls)

    def stop(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            thread.join(timeout=5)
            server.server_close()
        self._servers.clear()
