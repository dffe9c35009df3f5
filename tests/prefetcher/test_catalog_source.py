"""The Catalog source from reading a registry to CachedImage writes, against the simulator's
registries over HTTP; and pull secrets as the kubelet reads them."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from imagesync.cachedimage import source_object_name
from imagesync.config import load_config
from imagesync.quantities import parse_duration
from imagesync.sources import parse_rules
from prefetcher.metrics import Metrics
from prefetcher.registry.credentials import (
    Credentials,
    CredentialsError,
    dockerconfigjson,
    from_secret,
    merge,
)
from prefetcher.sources.catalog import CatalogReader
from prefetcher.sources.sync import SourceSync
from simulator.registry import catalog_image, registries_from_spec
from simulator.registryserver import RegistryServers

EPOCH = 1_800_000_000.0
HOST = "harbor.example.internal"
SPEC = [
    {
        "host": HOST,
        "credentials": {"username": "robot", "password": "pw"},
        "rateLimit": 30,
        "images": [
            {"image": "library/app:1.0", "compressed": "48MB", "age": "3d"},
            {"image": "library/app:1.1", "compressed": "49MB", "age": "2d"},
            {"image": "library/api:2.4.0", "compressed": "310MB", "age": "1d"},
            {"image": "team/tool:1", "compressed": "5MB", "age": "1d"},
        ],
        "outages": [{"start": 7200, "duration": 600}],
    }
]


class Clock:
    def __init__(self) -> None:
        self.at = EPOCH

    def now(self) -> float:
        return self.at

    def wait(self, event: Any, seconds: float) -> bool:
        return bool(event.wait(0))

    def monotonic(self) -> float:
        return self.at


def secret(auths: dict[str, Credentials], name: str = "pull") -> dict[str, Any]:
    text = base64.b64encode(dockerconfigjson(auths).encode()).decode()
    return {"metadata": {"name": name}, "data": {".dockerconfigjson": text}}


@pytest.fixture
def harbor() -> Iterator[tuple[Any, RegistryServers, Clock]]:
    clock = Clock()
    registries = registries_from_spec(SPEC, epoch=EPOCH)
    servers = RegistryServers(registries, clock.now)
    servers.start()
    try:
        yield registries, servers, clock
    finally:
        servers.stop()


def reader_for(
    servers: RegistryServers,
    clock: Clock,
    wanted: list[dict[str, Any]] | None = None,
    read_secret: Any = lambda name: secret({HOST: Credentials("robot", "pw")}),
) -> CatalogReader:
    rules = parse_rules(
        [
            {
                "prefix": f"{HOST}/library",
                "from": ["catalog", "learned"],
                "tags": 1,
                "endpoint": servers.urls[HOST],
            }
        ],
        parse_duration,
    )
    config = dataclasses.replace(
        load_config(environ={"IMAGE_SYNC_REGISTRIES": f"{HOST},nvcr.io/nvidia"}),
        sources=rules,
        image_pull_secrets=("pull",),
    )
    return CatalogReader(
        config,
        clock=clock,
        read_secret=read_secret,
        wanted=lambda: wanted or [],
        metrics=Metrics(),
    )


def stored(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "uid": "u"}, "status": status}


def test_a_new_tag_replaces_the_old_one_and_an_outage_deletes_nothing(harbor: Any) -> None:
    registries, servers, clock = harbor
    reader = reader_for(servers, clock)
    sync = SourceSync(reader.config, reader)
    reader.read_once()
    now = datetime.fromtimestamp(clock.at, UTC)
    first = sync.writes([], [], now)
    names = sorted(b["spec"]["image"] for b in first.creates)
    assert names == [f"{HOST}/library/api:2.4.0", f"{HOST}/library/app:1.1"]
    objects = [
        stored(b, dict(p)) for b, (_, p) in zip(first.creates, first.status_patches, strict=False)
    ]
    assert not sync.writes([], objects, now)  # converged

    registries.registries[HOST].add(
        catalog_image(f"{HOST}/library/app:1.2", compressed="50MB", disk="140MB", created=EPOCH)
    )
    clock.at += 900
    reader.read_once()
    later = sync.writes([], objects, datetime.fromtimestamp(clock.at, UTC))
    assert [b["spec"]["image"] for b in later.creates] == [f"{HOST}/library/app:1.2"]
    assert [n for n, _ in later.deletes] == [
        source_object_name(f"{HOST}/library/app:1.1", "Catalog")
    ]

    clock.at = EPOCH + 7300  # the registry is down
    reader.read_once()
    assert not sync.writes([], objects, datetime.fromtimestamp(clock.at, UTC)).deletes
    problem = reader.report()["prefixes"][f"{HOST}/library"]["lastError"]
    assert problem["kind"] == "server-error" and "503" in problem["message"]


def test_a_rate_limited_prefix_waits_for_retry_after(harbor: Any) -> None:
    _, servers, clock = harbor
    reader = reader_for(servers, clock)
    for _ in range(20):  # 30 requests a simulated minute: a few rounds use them up
        reader.read_once()
        if reader.report()["prefixes"][f"{HOST}/library"]["lastError"]:
            break
    state = reader.report()["prefixes"][f"{HOST}/library"]
    assert state["lastError"]["kind"] == "rate-limited" and state["retryAt"]
    rounds = reader.rounds
    reader.read_once()  # before Retry-After: no request at all
    assert reader.rounds == rounds + 1
    assert reader.report()["prefixes"][f"{HOST}/library"]["retryAt"] == state["retryAt"]
    clock.at += 61
    reader.read_once()
    assert reader.report()["prefixes"][f"{HOST}/library"]["lastError"] is None


def test_size_lookups_fill_learned_images(harbor: Any) -> None:
    _, servers, clock = harbor
    learned = {
        "metadata": {"name": "harbor-app", "uid": "u"},
        "spec": {"image": f"{HOST}/library/app:1.0", "source": "Learned"},
        "status": {"useCount": 3},
    }
    reader = reader_for(servers, clock, wanted=[learned])
    reader.read_once()
    writes = SourceSync(reader.config, reader).writes(
        [], [learned], datetime.fromtimestamp(clock.at, UTC)
    )
    [patch] = [p for n, p in writes.status_patches if n == "harbor-app"]
    assert patch["compressedSize"] == 48_000_000 and patch["platforms"] == ["linux/amd64"]


def test_a_missing_pull_secret_is_reported(harbor: Any) -> None:
    _, servers, clock = harbor
    reader = reader_for(servers, clock, read_secret=lambda name: None)
    reader.read_once()
    report = reader.report()
    assert "pull secret pull not found" in report["credentialsError"]
    assert report["prefixes"][f"{HOST}/library"]["lastError"]["kind"] == "unauthorized"


def test_pull_secrets_as_the_kubelet_reads_them() -> None:
    hub = from_secret(secret({"https://index.docker.io/v1/": Credentials("me", "a:b")}))
    assert hub == {"docker.io": Credentials("me", "a:b")}  # a password may hold colons
    old = {
        "metadata": {"name": "old"},
        "data": {
            ".dockercfg": base64.b64encode(
                json.dumps(
                    {"https://nvcr.io": {"username": "$oauthtoken", "password": "k"}}
                ).encode()
            ).decode()
        },
    }
    assert from_secret(old) == {"nvcr.io": Credentials("$oauthtoken", "k")}
    first = from_secret(secret({"nvcr.io": Credentials("first", "1")}))
    second = from_secret(secret({"nvcr.io": Credentials("second", "2")}))
    assert merge([first, second])["nvcr.io"].username == "first"
    with pytest.raises(CredentialsError, match="pull secret broken"):
        from_secret({"metadata": {"name": "broken"}, "data": {".dockerconfigjson": "%%"}})
