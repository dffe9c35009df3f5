"""Where wanted images come from, per registry prefix: the `sources` setting, parsed and applied.

An image is wanted because of one of four sources, each a `spec.source` of a CachedImage:

- `Declared`: a CachedImage a person applied;
- `Learned`: the webhook saw a pod use it (or the prefetcher found one running at start);
- `Observed`: some node's `status.images` lists it; wanted on the nodes of the same pool;
- `Catalog`: the registry lists it (newest tags of each repository); wanted everywhere.

The `sources` setting says, per prefix, which of them count (the longest prefix that matches
an image decides; `defaultSources` covers managed images no rule names):

    sources:
    - prefix: harbor.example.internal/library
      from: [catalog, learned]      # every Harbor image everywhere, plus what pods use
      tags: 3                       # newest 3 tags of each repository...
      maxAge: 30d                   # ...pushed within 30 days
    - prefix: nvcr.io/nvidia
      from: [learned, declared]     # learn the NGC ones
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from imagesync.matching import RegistryPrefix, parse_prefix
from imagesync.names import SOURCE_CATALOG, SOURCE_DECLARED, SOURCE_LEARNED, SOURCE_OBSERVED
from imagesync.reference import InvalidReference, parse_reference

# Config spelling (lower case) → CachedImage spec.source.
SOURCE_NAMES: Mapping[str, str] = {
    "declared": SOURCE_DECLARED,
    "learned": SOURCE_LEARNED,
    "observed": SOURCE_OBSERVED,
    "catalog": SOURCE_CATALOG,
}
ALL_SOURCES = tuple(SOURCE_NAMES.values())
DEFAULT_SOURCES = (SOURCE_DECLARED, SOURCE_LEARNED)
UNMANAGED_SOURCES = (SOURCE_DECLARED, SOURCE_LEARNED)
# Best first: a declared image outranks a learned one, which outranks what nodes merely hold.
DEFAULT_SOURCE_ORDER = (SOURCE_DECLARED, SOURCE_LEARNED, SOURCE_OBSERVED, SOURCE_CATALOG)
DEFAULT_CATALOG_TAGS = 3
_RULE_KEYS = frozenset({"prefix", "from", "tags", "maxAge", "endpoint", "caFile", "repositories"})


@dataclass(frozen=True, slots=True)
class SourceRule:
    """Which sources count for images under `prefix`, and how its registry catalog is read."""

    prefix: RegistryPrefix
    sources: tuple[str, ...]
    tags: int | None = None  # newest tags per repository; None: the `catalogTags` setting
    max_age: float | None = None  # seconds; None: the `catalogMaxAge` setting; 0: no limit
    endpoint: str = ""  # https://host[:port] the registry API is reached at; "": from the prefix
    ca_file: str = ""  # PEM bundle that signs the registry's certificate; "": system CAs
    repositories: tuple[str, ...] = ()  # list these instead of /v2/_catalog (NGC, Docker Hub)

    @property
    def catalog(self) -> bool:
        return SOURCE_CATALOG in self.sources

    @property
    def url(self) -> str:
        """The registry's base URL, without a trailing slash."""
        return (self.endpoint or f"https://{self.prefix.domain}").rstrip("/")


def parse_source_names(value: Any) -> tuple[str, ...]:
    """`[catalog, learned]` (or "catalog,learned") as CachedImage source values, in order."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"expected a list of sources, got {value!r}")
    out: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if name not in SOURCE_NAMES:
            raise ValueError(f"unknown source {item!r}; expected some of {', '.join(SOURCE_NAMES)}")
        if SOURCE_NAMES[name] not in out:
            out.append(SOURCE_NAMES[name])
    return tuple(out)


def _rule(index: int, raw: Any, seconds: Callable[[Any], float]) -> SourceRule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"[{index}]: expected a mapping with prefix and from, got {raw!r}")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ValueError(f"[{index}]: unknown key(s) {', '.join(unknown)}")
    if "prefix" not in raw or "from" not in raw:
        raise ValueError(f"[{index}]: prefix and from are required")
    try:
        prefix = parse_prefix(str(raw["prefix"]))
        sources = parse_source_names(raw["from"])
        tags = raw.get("tags")
        if tags is not None and (isinstance(tags, bool) or not isinstance(tags, int) or tags < 1):
            raise ValueError(f"tags: expected a whole number >= 1, got {tags!r}")
        max_age = None if raw.get("maxAge") is None else seconds(raw["maxAge"])
        endpoint = str(raw.get("endpoint") or "").strip()
        if endpoint and not endpoint.startswith(("https://", "http://")):
            raise ValueError(f"endpoint: expected an http(s):// URL, got {endpoint!r}")
        repositories = raw.get("repositories") or []
        if not isinstance(repositories, list) or not all(
            isinstance(r, str) and r for r in repositories
        ):
            raise ValueError(f"repositories: expected a list of names, got {repositories!r}")
    except ValueError as exc:
        raise ValueError(f"[{index}] ({raw.get('prefix')}): {exc}") from None
    return SourceRule(
        prefix=prefix,
        sources=sources,
        tags=tags,
        max_age=max_age,
        endpoint=endpoint,
        ca_file=str(raw.get("caFile") or "").strip(),
        repositories=tuple(r.strip("/") for r in repositories),
    )


def parse_rules(value: Any, seconds: Callable[[Any], float]) -> tuple[SourceRule, ...]:
    """The `sources` list (YAML, or the same as a JSON string from the environment);
    `seconds` parses a duration (`maxAge`)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ValueError("expected a JSON list of {prefix, from} rules") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of {{prefix, from}} rules, got {value!r}")
    rules = tuple(_rule(i, raw, seconds) for i, raw in enumerate(value))
    seen: set[RegistryPrefix] = set()
    for rule in rules:
        if rule.prefix in seen:
            raise ValueError(f"prefix {rule.prefix} is named twice")
        seen.add(rule.prefix)
    return rules


def rule_for(
    image: str, rules: Iterable[SourceRule], registries: Iterable[RegistryPrefix]
) -> SourceRule | None:
    """The rule for a managed image: the longest matching rule prefix; None when no rule
    names it (`defaultSources` apply) or when it is not managed at all."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return None
    if not any(p.matches(ref) for p in registries):
        return None
    matching = [r for r in rules if r.prefix.matches(ref)]
    return max(matching, key=lambda r: len(r.prefix.segments), default=None)


def sources_for(
    image: str,
    rules: Iterable[SourceRule],
    registries: Iterable[RegistryPrefix],
    default: tuple[str, ...],
) -> tuple[str, ...]:
    """The sources that count for `image`. An image outside the managed registries counts
    when declared or learned (a person may declare any image; a prefix removed from
    `registries` leaves its learned images until they age out), never when observed or
    listed by a catalog."""
    registries = tuple(registries)
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return UNMANAGED_SOURCES
    if not any(p.matches(ref) for p in registries):
        return UNMANAGED_SOURCES
    rule = rule_for(image, rules, registries)
    return rule.sources if rule is not None else default


def under_registries(rule: SourceRule, registries: Iterable[RegistryPrefix]) -> bool:
    """True when every image under the rule's prefix is managed (one registry prefix covers it)."""
    return any(
        p.domain == rule.prefix.domain and rule.prefix.segments[: len(p.segments)] == p.segments
        for p in registries
    )


def source_rank(source: str, order: tuple[str, ...]) -> int:
    """Position of `source` in `order` (smaller ranks first); unknown sources last."""
    return order.index(source) if source in order else len(order)
