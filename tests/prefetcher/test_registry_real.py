"""The catalog client and reader against a real distribution registry (TLS, htpasswd)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imagesync.config import load_config
from imagesync.quantities import parse_duration
from imagesync.sources import parse_rules
from prefetcher.registry.client import RegistryClient, RegistryError
from prefetcher.registry.credentials import Credentials, dockerconfigjson
from prefetcher.sources.catalog import CatalogReader
from tests.prefetcher.realregistry import (
    PASSWORD,
    USER,
    RealRegistry,
    start_registry,
    stop_registry,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: Any) -> Iterator[RealRegistry]:
    running = start_registry(Path(tmp_path_factory.mktemp("registry")))
    try:
        for age, tag in ((30, "1.0"), (20, "1.1"), (10, "1.2"), (1, "2.0")):
            running.push_image("team/app", tag, created=NOW - timedelta(days=age))
        running.push_image(
            "team/multi", "v1", created=NOW - timedelta(days=2), archs=("amd64", "arm64")
        )
        running.push_image("team/old", "0.1", created=NOW - timedelta(days=400))
        running.push_image("other/tool", "1", created=NOW)
        yield running
    finally:
        stop_registry(running)


def client(registry: RealRegistry, **kw: Any) -> RegistryClient:
    kw.setdefault("credentials", Credentials(USER, PASSWORD))
    kw.setdefault("ca_file", registry.ca_file)
    return RegistryClient(registry.url, kw.pop("credentials"), **kw)


def test_lists_and_reads_through_basic_auth_over_tls(registry: RealRegistry) -> None:
    reader = client(registry)
    assert reader.repositories() == ["other/tool", "team/app", "team/multi", "team/old"]
    assert sorted(reader.tags("team/app")) == ["1.0", "1.1", "1.2", "2.0"]  # in no set order
    facts = reader.facts("team/multi", reader.digest("team/multi", "v1"))
    assert facts.platforms == ("linux/amd64", "linux/arm64")
    assert facts.created == NOW - timedelta(days=2)
    assert 2048 < facts.compressed_size < 4096  # config + one 2 KiB layer
    single = reader.facts("team/app", reader.digest("team/app", "1.2"))
    assert single.platforms == ("linux/amd64",)


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({"credentials": None}, "unauthorized"),
        ({"credentials": Credentials(USER, "wrong")}, "unauthorized"),
        ({"ca_file": ""}, "tls"),  # its CA is not among the system's
    ],
)
def test_failures_have_kinds(registry: RealRegistry, settings: dict[str, Any], kind: str) -> None:
    with pytest.raises(RegistryError) as error:
        client(registry, **settings).tags("team/app")
    assert error.value.kind == kind, error.value


def test_unknown_repository_is_not_found(registry: RealRegistry) -> None:
    with pytest.raises(RegistryError) as error:
        client(registry).tags("team/nope")
    assert error.value.kind == "not-found"


def test_reader_wants_the_newest_tags_within_the_age_limit(registry: RealRegistry) -> None:
    host = registry.host
    config = load_config(environ={"IMAGE_SYNC_REGISTRIES": f"{host},nvcr.io/nvidia"})
    rules = parse_rules(
        [
            {
                "prefix": f"{host}/team",
                "from": ["catalog"],
                "tags": 2,
                "maxAge": "90d",
                "endpoint": registry.url,
                "caFile": registry.ca_file,
            },
            # A registry that is down: reported for its prefix, the other one is read.
            {"prefix": "nvcr.io/nvidia", "from": ["catalog"], "endpoint": "https://127.0.0.1:9"},
        ],
        parse_duration,
    )
    config = dataclasses.replace(config, sources=rules, image_pull_secrets=("pull",))
    secret = {
        "metadata": {"name": "pull"},
        "data": {
            ".dockerconfigjson": base64.b64encode(
                dockerconfigjson({host: Credentials(USER, PASSWORD)}).encode()
            ).decode()
        },
    }

    class Clock:
        def now(self) -> float:
            return NOW.timestamp()

        def wait(self, event: Any, seconds: float) -> bool:
            return bool(event.wait(0))

        def monotonic(self) -> float:
            return self.now()

    reader = CatalogReader(
        config,
        clock=Clock(),
        read_secret=lambda name: secret if name == "pull" else None,
        wanted=lambda: [],
    )
    reader.read_once()
    listed = {str(p): v for p, v in reader.listed().items()}
    assert sorted(listed[f"{host}/team"] or {}) == [
        f"{host}/team/app:1.2",
        f"{host}/team/app:2.0",
        f"{host}/team/multi:v1",
    ]  # team/old is older than 90 days; other/ is outside the prefix
    assert listed["nvcr.io/nvidia"] is None
    [problem] = reader.problems()
    assert (problem.prefix, problem.kind) == ("nvcr.io/nvidia", "unreachable")
    multi = (listed[f"{host}/team"] or {})[f"{host}/team/multi:v1"]
    assert multi.status["platforms"] == ["linux/amd64", "linux/arm64"]
