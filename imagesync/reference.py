"""Image references parsed and normalized the way the container runtime resolves them.

Both components key everything on the normalized form, so `nginx`, `docker.io/library/nginx`
and `index.docker.io/library/nginx:latest` are one image to the webhook and the prefetcher.
The grammar is the Docker distribution reference grammar: ASCII only, every part matched
in full. A looser check (Unicode word characters, a `$` that accepts a trailing newline)
would let `x:tést` or `x\\n:1` through to be rewritten and learned, then fail on every node.
References longer than MAX_REFERENCE_LENGTH are refused before any pattern runs, so a
megabyte-long "image" costs a length check, not a regex scan or a cache entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255
# Name (255) + ":" + tag (128) + "@" + a sha512 digest (135) fits with room to spare.
MAX_REFERENCE_LENGTH = 1024

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# Explicit ASCII classes, compiled with re.ASCII as well, and always used with fullmatch.
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_KNOWN_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """An image reference that the container runtime would refuse too."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed reference; `domain` is lower-cased, `path` includes `library/` for Docker Hub."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path`: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def host(self) -> str:
        """The domain without its port (IPv6 brackets kept)."""
        if self.domain.startswith("["):
            return self.domain[: self.domain.index("]") + 1]
        return self.domain.split(":", 1)[0]

    @property
    def implicit_latest(self) -> bool:
        """True when Kubernetes treats the image as `:latest` (no tag, or the tag `latest`, and no digest)."""
        return self.digest is None and (self.tag is None or self.tag == DEFAULT_TAG)

    def normalized(self) -> str:
        """The full reference: `domain/path:tag`, `domain/path@digest` or both."""
        out = self.repository
        if self.tag is not None:
            out += f":{self.tag}"
        elif self.digest is None:
            out += f":{DEFAULT_TAG}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.normalized()


def _split_domain(reference: str, name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    looks_like_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
    if not sep or not looks_like_host:
        return DEFAULT_DOMAIN, name
    if not _DOMAIN_RE.fullmatch(first):
        raise InvalidReference(reference, f"invalid registry host {first!r}")
    return first.lower(), rest


def parse_reference(reference: str) -> ImageReference:
    """Parse and normalize `reference`; raise InvalidReference with the rule it breaks."""
    if not isinstance(reference, str) or not reference:
        raise InvalidReference(str(reference), "empty reference")
    if len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(
            reference[:64] + "...", f"longer than {MAX_REFERENCE_LENGTH} characters"
        )
    if not reference.isascii():
        raise InvalidReference(reference, "not ASCII")
    if reference != reference.strip():
        raise InvalidReference(reference, "leading or trailing white space")

    name, digest = reference, None
    if "@" in reference:
        name, _, digest = reference.partition("@")
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReference(reference, f"invalid digest {digest!r}")
        algorithm, _, encoded = digest.partition(":")
        expected = _KNOWN_DIGEST_LENGTHS.get(algorithm)
        if expected is not None and len(encoded) != expected:
            raise InvalidReference(
                reference, f"{algorithm} digest must have {expected} hex digits, not {len(encoded)}"
            )

    tag = None
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(reference, f"invalid tag {tag!r}")
    if not name:
        raise InvalidReference(reference, "missing repository name")

    domain, path = _split_domain(reference, name)
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if path != path.lower():
        raise InvalidReference(reference, f"repository name {path!r} must be lowercase")
    if not _PATH_RE.fullmatch(path):
        raise InvalidReference(reference, f"invalid repository path {path!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            reference, f"repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def normalize(reference: str) -> str:
    """`parse_reference(reference).normalized()`."""
    return parse_reference(reference).normalized()
