"""Simulated registries: what exists, how big it is, and how a pull of it fails.

A pull asks the registry set to resolve a reference for a node's architecture; the answer is
either the image (with its compressed and on-disk size) or the error text containerd would
give, which the kubelet copies into the container status as the real one does. Bandwidth is
shared by the pulls in flight, so ten nodes pulling 9.5 GB from one registry see a tenth each.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesync.quantities import parse_bandwidth, parse_duration, parse_size
from imagesync.reference import ImageReference, InvalidReference, parse_reference


def fake_digest(*parts: str) -> str:
    """A stable `sha256:` digest for catalogue entries that do not give one."""
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform of an image: its manifest digest and sizes."""

    arch: str
    compressed_size: int
    disk_size: int
    digest: str
    os: str = "linux"


@dataclass(frozen=True, slots=True)
class CatalogImage:
    """A tag in a registry; `digest` is the repo digest (manifest list) the kubelet reports."""

    repository: str
    tag: str
    digest: str
    platforms: tuple[Platform, ...]
    created: float | None = None  # epoch seconds it was built (served in its config)
    pushed_at: float | None = None  # epoch seconds it was pushed; None: there from the start

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    def pushed(self, at: float) -> bool:
        """Whether the tag exists at `at` (epoch seconds): listed and pullable from then on."""
        return self.pushed_at is None or self.pushed_at <= at

    def platform(self, arch: str, os: str = "linux") -> Platform | None:
        for platform in self.platforms:
            if platform.arch == arch and platform.os == os:
                return platform
        return None


def catalog_image(
    reference: str,
    *,
    compressed: Any,
    disk: Any,
    archs: Iterable[str] = ("amd64",),
    digest: str | None = None,
    created: float | None = None,
    pushed_at: float | None = None,
) -> CatalogImage:
    """A catalogue entry from a reference and sizes (`9.5GB`); same sizes for every arch."""
    ref = parse_reference(reference)
    tag = ref.tag or "latest"
    repository = ref.repository
    platforms = tuple(
        Platform(
            arch=arch,
            compressed_size=parse_size(compressed),
            disk_size=parse_size(disk),
            digest=fake_digest(repository, tag, arch),
        )
        for arch in archs
    )
    return CatalogImage(
        repository=repository,
        tag=tag,
        digest=digest or fake_digest(repository, tag),
        platforms=platforms,
        created=created,
        pushed_at=pushed_at,
    )


class PullErrorKind(enum.Enum):
    NOT_FOUND = "NotFound"
    UNAUTHORIZED = "Unauthorized"
    NO_PLATFORM = "NoMatchingPlatform"
    UNAVAILABLE = "RegistryUnavailable"
    NO_SPACE = "NoSpaceLeft"


@dataclass(frozen=True, slots=True)
class PullError:
    """Why a pull failed, with the message containerd gives (`rpc error: code = ...`)."""

    kind: PullErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference resolved for one platform: what to download and what the node will store."""

    reference: str
    image: CatalogImage
    platform: Platform

    @property
    def image_id(self) -> str:
        """`repo@sha256:...`, the `imageID` the kubelet reports for a container."""
        return f"{self.image.repository}@{self.image.digest}"


@dataclass
class Registry:
    """One registry host: its catalogue, bandwidth, outage windows and refused repositories."""

    host: str
    bandwidth: float = 1e9
    images: dict[str, CatalogImage] = field(default_factory=dict)
    outages: list[tuple[float, float]] = field(default_factory=list)
    unauthorized: tuple[str, ...] = ()
    pull_secrets: tuple[str, ...] = ()
    latency: float = 0.3
    # Its HTTP API (simulator.registryserver): "user:password" it asks for (every request, or
    # only `unauthorized` repositories when some are named), how, and requests per minute.
    credentials: str = ""
    auth: str = "bearer"
    rate_limit: int = 0

    def add(self, image: CatalogImage) -> None:
        self.images[image.reference] = image

    def find(self, ref: ImageReference) -> CatalogImage | None:
        if ref.tag is not None:
            found = self.images.get(f"{ref.repository}:{ref.tag}")
            if found is not None and (ref.digest is None or found.digest == ref.digest):
                return found
            if ref.digest is None:
                return None
        if ref.digest is not None:
            for image in self.images.values():
                if image.repository == ref.repository and (
                    image.digest == ref.digest
                    or any(p.digest == ref.digest for p in image.platforms)
                ):
                    return image
            return None
        return self.images.get(f"{ref.repository}:latest")

    def down(self, at: float) -> bool:
        return any(start <= at < end for start, end in self.outages)

    def refuses(self, ref: ImageReference, secrets: tuple[str, ...] = ()) -> bool:
        """True for a refused repository, unless the pull brings one of `pull_secrets`."""
        path = ref.path
        protected = any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in self.unauthorized
        )
        return protected and not set(secrets) & set(self.pull_secrets)


@functools.lru_cache(maxsize=4096)
def _parsed(reference: str) -> ImageReference:
    """parse_reference(), remembered: a simulated cluster pulls the same references again
    and again (a reference that does not parse raises each time)."""
    return parse_reference(reference)


class RegistrySet:
    """All simulated registries, the pulls in flight on each, and outage times relative to `epoch`.

    `needs_credentials` says whether a pull of a reference takes a pull secret (the kubelet's
    record of which credentials pulled an image, KEP-2535, depends on it).

    Not thread-safe: one kubelet loop owns it.
    """

    def __init__(self, registries: Iterable[Registry] = (), *, epoch: float = 0.0) -> None:
        self.registries: dict[str, Registry] = {r.host: r for r in registries}
        self.epoch = epoch
        self._active: dict[str, int] = {}

    def add(self, registry: Registry) -> None:
        self.registries[registry.host] = registry

    def registry_for(self, reference: str) -> Registry | None:
        try:
            return self.registries.get(parse_reference(reference).domain)
        except InvalidReference:
            return None

    def set_outage(self, host: str, start: float, end: float) -> None:
        """Make `host` unreachable between two absolute simulated times."""
        self.registries[host].outages.append((start - self.epoch, end - self.epoch))

    def is_down(self, host: str, now: float) -> bool:
        registry = self.registries.get(host)
        return registry is not None and registry.down(now - self.epoch)

    def needs_credentials(self, reference: str) -> bool:
        """True when an anonymous pull of `reference` would be refused (a private repository)."""
        try:
            ref = parse_reference(reference)
        except InvalidReference:
            return False
        registry = self.registries.get(ref.domain)
        return registry is not None and registry.refuses(ref)

    def resolve(
        self,
        reference: str,
        arch: str,
        now: float,
        os: str = "linux",
        *,
        secrets: tuple[str, ...] = (),
    ) -> Resolved | PullError:
        """What pulling `reference` on a `os/arch` node at `now` (with `secrets`) gets."""
        try:
            ref = _parsed(reference)
        except InvalidReference as exc:
            return PullError(PullErrorKind.NOT_FOUND, f"rpc error: code = Unknown desc = {exc}")
        normalized = ref.normalized()
        prefix = f'failed to pull and unpack image "{normalized}"'
        resolving = f'{prefix}: failed to resolve reference "{normalized}"'
        registry = self.registries.get(ref.domain)
        if registry is None:
            return PullError(
                PullErrorKind.NOT_FOUND,
                f"rpc error: code = NotFound desc = {resolving}: {normalized}: not found",
            )
        if registry.down(now - self.epoch):
            manifest = ref.tag or ref.digest or "latest"
            return PullError(
                PullErrorKind.UNAVAILABLE,
                f"rpc error: code = Unavailable desc = {resolving}: failed to do request: "
                f'Head "https://{ref.domain}/v2/{ref.path}/manifests/{manifest}": '
                f"dial tcp: lookup {ref.host}: i/o timeout",
            )
        if registry.refuses(ref, secrets):
            return PullError(
                PullErrorKind.UNAUTHORIZED,
                f"rpc error: code = Unknown desc = {resolving}: pull access denied, repository does "
                "not exist or may require authorization: server message: insufficient_scope: "
                "authorization failed",
            )
        image = registry.find(ref)
        if image is None or not image.pushed(now):
            return PullError(
                PullErrorKind.NOT_FOUND,
                f"rpc error: code = NotFound desc = {resolving}: {normalized}: not found",
            )
        platform = image.platform(arch, os)
        if platform is None:
            return PullError(
                PullErrorKind.NO_PLATFORM,
                f"rpc error: code = NotFound desc = {prefix}: no matching manifest for {os}/{arch} "
                "in the manifest list entries",
            )
        return Resolved(reference=normalized, image=image, platform=platform)

    def unavailable_error(self, reference: str) -> PullError:
        """The error a pull in flight gets when its registry goes away."""
        ref = parse_reference(reference)
        return PullError(
            PullErrorKind.UNAVAILABLE,
            f'rpc error: code = Unavailable desc = failed to pull and unpack image "{ref.normalized()}": '
            f"failed to copy: httpReadSeeker: failed open: failed to do request: "
            f'Get "https://{ref.domain}/v2/{ref.path}/blobs/...": dial tcp: lookup {ref.host}: i/o timeout',
        )

    def begin_transfer(self, host: str) -> None:
        self._active[host] = self._active.get(host, 0) + 1

    def end_transfer(self, host: str) -> None:
        left = self._active.get(host, 0) - 1
        if left > 0:
            self._active[host] = left
        else:
            self._active.pop(host, None)

    def active_transfers(self, host: str) -> int:
        return self._active.get(host, 0)

    def share(self, host: str) -> float:
        """Bytes per second each pull in flight from `host` gets (the registry's bandwidth ÷ pulls)."""
        registry = self.registries.get(host)
        if registry is None:
            return 0.0
        return registry.bandwidth / max(1, self._active.get(host, 0))


def _credentials(value: Any) -> str:
    """`{username, password}` as "user:password"; "" for none."""
    if not value:
        return ""
    if not isinstance(value, Mapping) or not value.get("username"):
        raise ValueError(f"registry credentials must be {{username, password}}, got {value!r}")
    return f"{value['username']}:{value.get('password', '')}"


def registries_from_spec(specs: Iterable[Mapping[str, Any]], *, epoch: float = 0.0) -> RegistrySet:
    """Build registries from scenario entries (see docs/simulator.md for the format)."""
    result = RegistrySet(epoch=epoch)
    for spec in specs:
        host = str(spec["host"])
        registry = Registry(
            host=host,
            bandwidth=parse_bandwidth(spec.get("bandwidth", "1GB/s")),
            unauthorized=tuple(str(p) for p in spec.get("unauthorized", ()) or ()),
            pull_secrets=tuple(str(p) for p in spec.get("pullSecrets", ()) or ()),
            latency=float(spec.get("latency", 0.3)),
            credentials=_credentials(spec.get("credentials")),
            auth=str(spec.get("auth", "bearer")),
            rate_limit=int(spec.get("rateLimit", 0)),
        )
        if registry.auth not in ("bearer", "basic"):
            raise ValueError(
                f"registry {host}: auth must be bearer or basic, got {registry.auth!r}"
            )
        for outage in spec.get("outages", ()) or ():
            start = float(outage["start"])
            registry.outages.append((start, start + float(outage["duration"])))
        for image in spec.get("images", ()) or ():
            reference = str(image["image"])
            if not reference.startswith(host + "/"):
                reference = f"{host}/{reference}"
            # A tag pushed during the run is built then, unless its age says otherwise.
            pushed = epoch + parse_duration(image["pushedAt"]) if "pushedAt" in image else None
            registry.add(
                catalog_image(
                    reference,
                    compressed=image["compressed"],
                    disk=image.get("disk", image["compressed"]),
                    archs=tuple(image.get("archs", ("amd64",))),
                    digest=image.get("digest"),
                    created=epoch - parse_duration(image["age"]) if "age" in image else pushed,
                    pushed_at=pushed,
                )
            )
        result.add(registry)
    return result
