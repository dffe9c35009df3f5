"""The Catalog source: the newest tags of each repository under a prefix, read from its registry.

`CatalogReader` runs on a thread of its own (leader only), every `catalogInterval`:

1. credentials: the `imagePullSecrets` (dockerconfigjson Secrets in our namespace);
2. for each `sources` rule with `catalog`: the repositories under its prefix (`/v2/_catalog`,
   or the rule's `repositories` where the registry does not list them to robot accounts or
   at all: NGC, Docker Hub), the tags of each, and per tag its digest (`HEAD`) and, once per
   digest, its facts (platforms, compressed size, build time); the newest `tags` tags built
   within `maxAge` are wanted on every eligible node;
3. size lookups: wanted images under any `sources` prefix whose CachedImage has no
   `compressedSize` yet get one (so a puller's deadline fits a 9.5 GB NGC image).

A failure is kept per prefix (report, `source_errors_total`, a log line) and leaves that
prefix's objects as they are; other prefixes and sources go on. A repository that vanished
between listing and reading (404) is skipped. A 429 waits for its `Retry-After`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imagesync.config import Config
from imagesync.kubeclient import KubeError
from imagesync.matching import RegistryPrefix
from imagesync.names import SOURCE_CATALOG
from imagesync.reference import InvalidReference, parse_reference
from imagesync.sources import SourceRule, rule_for
from prefetcher.informer import Clock
from prefetcher.metrics import Metrics
from prefetcher.observe import normalize_or_keep
from prefetcher.registry.client import ImageFacts, RegistryClient, RegistryError
from prefetcher.registry.credentials import Credentials, CredentialsError, from_secret, merge
from prefetcher.registry.credentials import registry_key as credential_key
from prefetcher.sources.model import SourcedImage, SourceProblem

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
# Size lookups per round, so a fresh install with thousands of learned images spreads them.
SIZE_LOOKUPS_PER_ROUND = 100
# Clock seconds between leadership checks of a standby.
LEADER_CHECK = 5.0


def newest_tags(
    facts: Mapping[str, ImageFacts], count: int, max_age: float, now: datetime
) -> list[str]:
    """The `count` most recently built tags, built within `max_age` seconds (0: any age).

    A tag whose build time is unknown counts only without an age limit, as the oldest."""
    floor = datetime.min.replace(tzinfo=UTC)
    eligible = [
        (f.created or floor, tag)
        for tag, f in facts.items()
        if max_age <= 0 or (f.created is not None and (now - f.created).total_seconds() <= max_age)
    ]
    return [tag for _, tag in sorted(eligible, reverse=True)[:count]]


def catalog_limits(rule: SourceRule, config: Config) -> tuple[int, float]:
    """How many newest tags of each repository the rule wants, and their age limit (seconds)."""
    count = rule.tags or config.catalog_tags
    return count, config.catalog_max_age if rule.max_age is None else rule.max_age


def listed_images(
    rule: SourceRule,
    listing: Mapping[str, Mapping[str, ImageFacts]],
    count: int,
    max_age: float,
    now: datetime,
) -> dict[str, SourcedImage]:
    """What a catalog rule wants from its registry's listing (repository → tag → facts): the
    newest tags of each repository, wanted on every eligible node."""
    images: dict[str, SourcedImage] = {}
    for repository, facts in listing.items():
        for tag in newest_tags(facts, count, max_age, now):
            image = f"{rule.prefix.domain}/{repository}:{tag}"
            images[image] = SourcedImage(image, SOURCE_CATALOG, (), facts[tag].status())
    return images


def under(prefix: RegistryPrefix, repository: str) -> bool:
    """True when `repository` (a path in the registry) lies under the prefix's path."""
    return tuple(repository.split("/"))[: len(prefix.segments)] == prefix.segments


@dataclass
class PrefixState:
    """What the report shows about one prefix's catalog or size lookups."""

    prefix: str
    images: dict[str, SourcedImage] | None = None  # None: no complete listing since the last error
    repositories: int = 0
    last_success: datetime | None = None
    problem: SourceProblem | None = None
    problem_at: datetime | None = None
    retry_at: datetime | None = None
    skipped: list[str] = field(default_factory=list)  # repositories that vanished (404)

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": None if self.images is None else len(self.images),
            "repositories": self.repositories,
            "lastSuccess": _stamp(self.last_success),
            "lastError": None
            if self.problem is None
            else {
                "kind": self.problem.kind,
                "message": self.problem.message,
                "at": _stamp(self.problem_at),
            },
            "retryAt": _stamp(self.retry_at),
            "skippedRepositories": self.skipped,
        }


def _stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


class CatalogReader:
    """Reads registry catalogs and image sizes for the rules of `sources`; the controller
    reads its results (`CatalogView`) each pass."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        read_secret: Callable[[str], Obj | None],
        wanted: Callable[[], Iterable[Obj]],
        metrics: Metrics | None = None,
        on_change: Callable[[], None] = lambda: None,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.clock = clock
        self._read_secret = read_secret
        self._wanted = wanted
        self.metrics = metrics
        self._on_change = on_change
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, Credentials | None, str], RegistryClient] = {}
        self._known: dict[tuple[str, str], ImageFacts] = {}  # (repository URL, digest)
        self._tag_digests: dict[tuple[str, str], str] = {}  # (repository URL, tag) → digest
        self._sizes: dict[str, dict[str, Any]] = {}
        self._size_failed: dict[str, datetime] = {}
        self.states: dict[str, PrefixState] = {
            str(r.prefix): PrefixState(str(r.prefix)) for r in config.sources if r.catalog
        }
        self.size_problems: dict[str, PrefixState] = {}
        self.credentials_error = ""
        self.rounds = 0

    # --- CatalogView ----------------------------------------------------------------------

    def listed(self) -> dict[RegistryPrefix, dict[str, SourcedImage] | None]:
        with self._lock:
            return {
                r.prefix: (
                    None if (s := self.states[str(r.prefix)]).images is None else dict(s.images)
                )
                for r in self.config.sources
                if r.catalog
            }

    def sizes(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._sizes)

    def problems(self) -> list[SourceProblem]:
        with self._lock:
            states = [*self.states.values(), *self.size_problems.values()]
            return [s.problem for s in states if s.problem is not None]

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "prefixes": {p: s.as_dict() for p, s in sorted(self.states.items())},
                "sizeLookups": {
                    "known": len(self._sizes),
                    "errors": {p: s.as_dict()["lastError"] for p, s in self.size_problems.items()},
                },
                "credentialsError": self.credentials_error,
                "rounds": self.rounds,
            }

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Read every `catalogInterval` while leader, until `stop`."""
        while not stop.is_set():
            if not self._is_leader():
                self.clock.wait(stop, LEADER_CHECK)
                continue
            try:
                self.read_once()
            except Exception:  # the loop outlives any one bad round
                log.exception("reading registry catalogs failed")
            self.clock.wait(stop, self.config.catalog_interval)

    def read_once(self) -> None:
        """One round: every catalog prefix, then the size lookups; wakes the controller when
        what it would write changed."""
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        credentials = self._credentials()
        before = (self.listed(), self.sizes())
        for rule in self.config.sources:
            if rule.catalog:
                self._read_rule(rule, credentials, now)
        self._lookup_sizes(credentials, now)
        self.rounds += 1
        if (self.listed(), self.sizes()) != before:
            self._on_change()

    def _credentials(self) -> dict[str, Credentials]:
        secrets: list[dict[str, Credentials]] = []
        errors: list[str] = []
        for name in self.config.image_pull_secrets:
            try:
                secret = self._read_secret(name)
                if secret is None:
                    errors.append(f"pull secret {name} not found in {self.config.namespace}")
                    continue
                secrets.append(from_secret(secret))
            except (KubeError, CredentialsError) as exc:
                errors.append(str(exc))
        self.credentials_error = "; ".join(errors)
        if errors:
            log.warning("registry credentials: %s", self.credentials_error)
        return merge(secrets)

    def _client(self, rule: SourceRule, credentials: Mapping[str, Credentials]) -> RegistryClient:
        found = credentials.get(credential_key(rule.prefix.domain))
        key = (rule.url, found, rule.ca_file)
        client = self._clients.get(key)
        if client is None:
            client = RegistryClient(
                rule.url, found, ca_file=rule.ca_file, timeout=self.config.registry_timeout
            )
            self._clients[key] = client
        return client

    def _facts(
        self, client: RegistryClient, repository: str, tag: str, recheck: bool
    ) -> ImageFacts:
        """Facts of a tag; its digest is asked again only when `recheck` (or never asked)."""
        where = f"{client.url}/{repository}"
        digest = self._tag_digests.get((where, tag))
        if digest is None or recheck:
            digest = client.digest(repository, tag)
            self._tag_digests[(where, tag)] = digest
        facts = self._known.get((where, digest))
        if facts is None:
            facts = client.facts(repository, digest)
            self._known[(where, digest)] = facts
        return facts

    def _read_rule(
        self, rule: SourceRule, credentials: Mapping[str, Credentials], now: datetime
    ) -> None:
        prefix = str(rule.prefix)
        state = self.states[prefix]
        if state.retry_at is not None and now < state.retry_at:
            return
        client = self._client(rule, credentials)
        count, max_age = catalog_limits(rule, self.config)
        listing: dict[str, dict[str, ImageFacts]] = {}
        skipped: list[str] = []
        try:
            repositories = list(rule.repositories) or [
                r for r in client.repositories() if under(rule.prefix, r)
            ]
            for repository in repositories:
                try:
                    tags = client.tags(repository)
                    facts = {t: self._facts(client, repository, t, recheck=False) for t in tags}
                    # The chosen tags' digests are asked again (a tag may have moved).
                    listing[repository] = {
                        tag: self._facts(client, repository, tag, recheck=True)
                        for tag in newest_tags(facts, count, max_age, now)
                    }
                except RegistryError as exc:
                    if exc.kind != "not-found":
                        raise
                    skipped.append(repository)
        except RegistryError as exc:
            self._failed(state, "catalog", exc, now)
            return
        images = listed_images(rule, listing, count, max_age, now)
        with self._lock:
            state.images, state.repositories, state.skipped = images, len(repositories), skipped
            state.last_success, state.problem, state.retry_at = now, None, None
        if self.metrics is not None:
            self.metrics.source_images.labels("catalog", prefix).set(len(images))
            self.metrics.source_last_success.labels("catalog", prefix).set(now.timestamp())
        log.info(
            "catalog %s: %d images from %d repositories (%d requests so far)",
            prefix,
            len(images),
            len(repositories),
            client.requests,
            extra={"prefix": prefix, "images": len(images), "repositories": len(repositories)},
        )

    def _failed(self, state: PrefixState, source: str, error: RegistryError, now: datetime) -> None:
        problem = SourceProblem(state.prefix, source, error.kind, str(error))
        with self._lock:
            if source == "catalog":
                state.images = None
            state.problem, state.problem_at = problem, now
            state.retry_at = (
                datetime.fromtimestamp(now.timestamp() + error.retry_after, UTC)
                if error.retry_after
                else None
            )
        if self.metrics is not None:
            self.metrics.source_errors.labels(source, state.prefix, error.kind).inc()
        log.warning(
            "%s %s: %s: %s",
            source,
            state.prefix,
            error.kind,
            error,
            extra={"prefix": state.prefix, "source": source, "kind": error.kind},
        )

    def _lookup_sizes(self, credentials: Mapping[str, Credentials], now: datetime) -> None:
        """Facts for wanted images under a rule whose objects lack a compressedSize."""
        if not self.config.registry_size_lookup or not self.config.sources:
            return
        done = 0
        for obj in self._wanted():
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            image = normalize_or_keep(str(spec.get("image") or ""))
            if spec.get("source") == SOURCE_CATALOG or status.get("compressedSize"):
                continue
            failed_at = self._size_failed.get(image)
            retry = self.config.catalog_interval * 4
            if image in self._sizes or (failed_at and (now - failed_at).total_seconds() < retry):
                continue
            rule = rule_for(image, self.config.sources, self.config.registries)
            if rule is None or done >= SIZE_LOOKUPS_PER_ROUND:
                continue
            try:
                ref = parse_reference(image)
            except InvalidReference:
                continue
            state = self.size_problems.get(str(rule.prefix))
            if state is not None and state.retry_at is not None and now < state.retry_at:
                continue
            done += 1
            client = self._client(rule, credentials)
            try:
                if ref.digest is not None:
                    facts = client.facts(ref.path, ref.digest)
                else:
                    facts = self._facts(client, ref.path, ref.tag or "latest", recheck=True)
            except RegistryError as exc:
                self._size_failed[image] = now
                with self._lock:
                    state = self.size_problems.setdefault(
                        str(rule.prefix), PrefixState(str(rule.prefix))
                    )
                self._failed(state, "size", exc, now)
                continue
            with self._lock:
                self._sizes[image] = facts.status()
                self.size_problems.pop(str(rule.prefix), None)
