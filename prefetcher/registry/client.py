"""A client of the OCI distribution API: list repositories and tags, read an image's facts.

Speaks what Harbor, NGC, Docker Hub and the CNCF distribution registry speak:

- `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, following `Link: <...>; rel="next"`;
- `HEAD /v2/<name>/manifests/<tag>` for the digest (a HEAD does not count against Docker
  Hub's pull limit), then, for a digest not seen before, `GET` of the manifest or image index,
  of each platform's manifest (compressed size = config + layers) and of one config blob
  (when the image was built);
- authentication as the registry asks for it in its `WWW-Authenticate` challenge: `Basic`
  with the pull secret's user and password, or `Bearer` (a token from the realm it names,
  fetched with those credentials, or anonymously without them), cached per scope.

Every failure becomes a `RegistryError` with a short `kind` the report and metrics group by.
Digests the registry gives are trusted as the kubelet's pull will verify the content.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import requests

from prefetcher.observe import parse_timestamp
from prefetcher.registry.credentials import Credentials

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
USER_AGENT = "image-sync/0.1.0"
PAGE_SIZE = 1000
# Token lifetime when the token endpoint does not say (the distribution spec's default).
DEFAULT_TOKEN_SECONDS = 60.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A registry request that failed; `kind` is one of unauthorized, not-found,
    rate-limited, unreachable, tls, server-error, invalid."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class ImageFacts:
    """What the registry says about one tag."""

    digest: str  # of the manifest or image index the tag points at
    platforms: tuple[str, ...]  # os/arch[/variant]
    compressed_size: int  # bytes a pull downloads on the largest platform
    created: datetime | None  # from the image config; None when it does not say

    def status(self) -> dict[str, Any]:
        """As CachedImage status fields."""
        out: dict[str, Any] = {
            "digest": self.digest,
            "compressedSize": self.compressed_size,
            "platforms": list(self.platforms),
        }
        if self.created is not None:
            out["imageCreated"] = self.created.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` → ("bearer", {realm, service})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _registry_message(response: requests.Response) -> str:
    """The registry's own words: `errors[0].message` (with its code), else the body's start."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return response.text[:200].strip()


def _error(response: requests.Response, what: str) -> RegistryError:
    status = response.status_code
    detail = _registry_message(response)
    message = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return RegistryError("unauthorized", message)
    if status == 404:
        return RegistryError("not-found", message)
    if status == 429:
        retry = response.headers.get("Retry-After", "")
        after = float(retry) if retry.isdigit() else None
        return RegistryError("rate-limited", message, retry_after=after)
    if status >= 500:
        return RegistryError("server-error", message)
    return RegistryError("invalid", message)


class RegistryClient:
    """One registry, reached at `url` (https://host[:port]), with optional credentials."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        ca_file: str = "",
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # Passed on every request: REQUESTS_CA_BUNDLE in the environment would override a
        # session-wide setting.
        self.verify: str | bool = ca_file or True
        self._tokens: dict[str, tuple[str, float]] = {}  # scope → (token, monotonic expiry)
        self._basic = False
        self._lock = threading.Lock()
        self.requests = 0

    # --- plumbing -------------------------------------------------------------------------

    def _auth(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        return {}

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        self.requests += 1
        try:
            return self.session.request(
                method,
                url,
                headers=dict(headers or {}),
                params=params,
                auth=auth,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=True,
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryError("tls", f"{what}: TLS failed: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise RegistryError("unreachable", f"{what}: {type(exc).__name__}: {exc}") from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        accept: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """A request that answers the registry's authentication challenge once."""
        url = path if path.startswith(("http://", "https://")) else self.url + path
        headers = {"Accept": accept} if accept else {}
        basic = self._basic_auth() if self._basic else None
        response = self._send(
            method,
            url,
            what=what,
            headers={**headers, **self._auth(scope)},
            params=params,
            auth=basic,
        )
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and challenge:
            scheme, fields = parse_challenge(challenge)
            if scheme == "basic" and self.credentials is not None and basic is None:
                self._basic = True
                basic = self._basic_auth()
                response = self._send(
                    method, url, what=what, headers=headers, params=params, auth=basic
                )
            elif scheme == "bearer" and fields.get("realm"):
                token = self._token(fields, scope, what)
                response = self._send(
                    method,
                    url,
                    what=what,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                    params=params,
                )
        if response.status_code >= 400:
            raise _error(response, what)
        return response

    def _basic_auth(self) -> tuple[str, str] | None:
        return (self.credentials.username, self.credentials.password) if self.credentials else None

    def _token(self, challenge: Mapping[str, str], scope: str, what: str) -> str:
        """A Bearer token for `scope` from the challenge's realm (Docker, Harbor, NGC)."""
        params = {"service": challenge.get("service", "")}
        params["scope"] = challenge.get("scope") or scope
        auth = self._basic_auth()
        response = self._send(
            "GET", challenge["realm"], what=f"{what}: token", params=params, auth=auth
        )
        if response.status_code >= 400:
            raise _error(response, f"{what}: token from {challenge['realm']}")
        try:
            body = response.json()
            token = str(body.get("token") or body.get("access_token") or "")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = "", 0.0
        if not token:
            raise RegistryError("invalid", f"{what}: the token endpoint gave no token")
        with self._lock:
            # Renew 10 s before it expires.
            self._tokens[scope] = (token, time.monotonic() + max(0.0, lifetime - 10.0))
        return token

    def _json(self, response: requests.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise RegistryError("invalid", f"{what}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise RegistryError("invalid", f"{what}: the answer is not a JSON object")
        return body

    def _pages(self, path: str, key: str, scope: str, what: str) -> Iterator[str]:
        """Every item of a paginated list (`Link: <next>; rel="next"`)."""
        url: str | None = path
        params: dict[str, Any] | None = {"n": PAGE_SIZE}
        while url is not None:
            response = self._request("GET", url, scope=scope, what=what, params=params)
            for item in self._json(response, what).get(key) or []:
                yield str(item)
            following = response.links.get("next", {}).get("url")
            url = urljoin(self.url + "/", following) if following else None
            params = None  # the next link carries them

    # --- the API --------------------------------------------------------------------------

    def ping(self) -> None:
        """`GET /v2/`: reachable, speaks the API, and our credentials (if any) are accepted."""
        self._request("GET", "/v2/", scope="", what="GET /v2/")

    def repositories(self) -> list[str]:
        """Every repository the registry lists to us (`/v2/_catalog`)."""
        return list(
            self._pages("/v2/_catalog", "repositories", "registry:catalog:*", "GET /v2/_catalog")
        )

    def tags(self, repository: str) -> list[str]:
        path = f"/v2/{repository}/tags/list"
        return list(self._pages(path, "tags", f"repository:{repository}:pull", f"GET {path}"))

    def digest(self, repository: str, reference: str) -> str:
        """`HEAD` of a manifest: the digest the tag points at now."""
        path = f"/v2/{repository}/manifests/{reference}"
        response = self._request(
            "HEAD",
            path,
            scope=f"repository:{repository}:pull",
            what=f"HEAD {path}",
            accept=", ".join(MANIFEST_TYPES),
        )
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest:
            raise RegistryError("invalid", f"HEAD {path}: no Docker-Content-Digest header")
        return digest

    def _manifest(self, repository: str, reference: str) -> dict[str, Any]:
        path = f"/v2/{repository}/manifests/{reference}"
        what = f"GET {path}"
        response = self._request(
            "GET",
            path,
            scope=f"repository:{repository}:pull",
            what=what,
            accept=", ".join(MANIFEST_TYPES),
        )
        body = self._json(response, what)
        body.setdefault("mediaType", response.headers.get("Content-Type", "").split(";")[0])
        return body

    def _config(self, repository: str, digest: str) -> dict[str, Any]:
        path = f"/v2/{repository}/blobs/{digest}"
        response = self._request(
            "GET", path, scope=f"repository:{repository}:pull", what=f"GET {path}"
        )
        return self._json(response, f"GET {path}")

    def facts(self, repository: str, digest: str) -> ImageFacts:
        """Platforms, compressed size and build time of the manifest (or index) `digest`."""
        top = self._manifest(repository, digest)
        if top.get("mediaType") in INDEX_TYPES or "manifests" in top:
            entries = [
                m
                for m in top.get("manifests") or []
                if (m.get("platform") or {}).get("os") not in (None, "unknown")
            ]
        else:
            entries = [{"digest": digest, "manifest": top}]
        platforms: list[str] = []
        sizes: list[int] = []
        created: datetime | None = None
        for entry in entries:
            manifest = entry.get("manifest") or self._manifest(repository, str(entry["digest"]))
            config = manifest.get("config") or {}
            layers = manifest.get("layers") or []
            sizes.append(
                int(config.get("size") or 0) + sum(int(x.get("size") or 0) for x in layers)
            )
            platform = entry.get("platform")
            if platform is None or created is None:
                blob = self._config(repository, str(config.get("digest"))) if config else {}
                created = created or parse_timestamp(blob.get("created"))
                platform = platform or {
                    "os": blob.get("os"),
                    "architecture": blob.get("architecture"),
                }
            parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
            platforms.append("/".join(str(p) for p in parts if p))
        return ImageFacts(
            digest=digest,
            platforms=tuple(sorted(set(platforms))),
            compressed_size=max(sizes, default=0),
            created=created,
        )
