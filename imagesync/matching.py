"""Which images image-sync manages: registry prefixes matched on whole path segments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from imagesync.reference import (
    DEFAULT_DOMAIN,
    LEGACY_DEFAULT_DOMAIN,
    MAX_REFERENCE_LENGTH,
    ImageReference,
    InvalidReference,
    parse_reference,
)


@dataclass(frozen=True, slots=True)
class RegistryPrefix:
    """`domain[/path...]`; the domain (with its port, if any) is compared case-insensitively."""

    domain: str
    segments: tuple[str, ...] = ()

    def matches(self, ref: ImageReference) -> bool:
        if ref.domain != self.domain:
            return False
        path = tuple(ref.path.split("/"))
        return path[: len(self.segments)] == self.segments

    def __str__(self) -> str:
        return "/".join((self.domain, *self.segments))


def parse_prefix(text: str) -> RegistryPrefix:
    """Parse `harbor.example.internal`, `harbor:8443/team` or `nvcr.io/nvidia`.

    A prefix must name its registry host, so `nvidia/cuda` is refused rather than guessed.
    """
    cleaned = text.strip().rstrip("/")
    if not cleaned:
        raise ValueError("empty registry prefix")
    host, _, rest = cleaned.partition("/")
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not looks_like_host:
        raise ValueError(
            f"registry prefix {text!r} must start with a registry host "
            "(for example harbor.example.internal or nvcr.io/nvidia)"
        )
    try:
        # Validate with the reference grammar by parsing a reference inside the prefix.
        probe = parse_reference(f"{cleaned}/x" if rest else f"{cleaned}/x/x")
    except InvalidReference as exc:
        raise ValueError(f"invalid registry prefix {text!r}: {exc.reason}") from exc
    domain = probe.domain
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    segments = tuple(rest.split("/")) if rest else ()
    return RegistryPrefix(domain=domain, segments=segments)


def matching_prefix(
    ref: ImageReference, prefixes: Iterable[RegistryPrefix]
) -> RegistryPrefix | None:
    """The first prefix that covers `ref`, or None."""
    return next((p for p in prefixes if p.matches(ref)), None)


def is_managed(image: str, prefixes: Iterable[RegistryPrefix]) -> ImageReference | None:
    """The parsed reference when `image` is valid and under one of `prefixes`, else None."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return None
    return ref if matching_prefix(ref, prefixes) is not None else None


def pod_images(pod: Mapping[str, Any], prefixes: Iterable[RegistryPrefix]) -> set[str]:
    """The normalized managed images of a pod's init and regular containers."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return set()
    prefixes = tuple(prefixes)
    images: set[str] = set()
    for section in ("initContainers", "containers"):
        containers = spec.get(section)
        for container in containers if isinstance(containers, list) else ():
            image = container.get("image") if isinstance(container, Mapping) else None
            if isinstance(image, str) and len(image) <= MAX_REFERENCE_LENGTH:
                ref = is_managed(image, prefixes)
                if ref is not None:
                    images.add(ref.normalized())
    return images
