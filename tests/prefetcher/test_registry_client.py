"""The catalog client against the simulator's registries, served over HTTP on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from prefetcher.registry.client import RegistryClient, RegistryError
from prefetcher.registry.credentials import Credentials
from simulator.registry import registries_from_spec
from simulator.registryserver import RegistryServers

EPOCH = 1_800_000_000.0
SPEC: list[dict[str, Any]] = [
    {
        "host": "harbor.example.internal",
        "credentials": {"username": "robot$sync", "password": "s3cret"},
        "images": [
            {
                "image": f"library/app:1.{i}",
                "compressed": "48MB",
                "archs": ["amd64", "arm64"],
                "age": f"{10 - i}d",
            }
            for i in range(5)
        ]
        + [{"image": "ml/trainer:2.3", "compressed": "3.2GB", "age": "200d"}],
    },
    {
        "host": "basic.example.internal",
        "auth": "basic",
        "credentials": {"username": "reader", "password": "pw"},
        "images": [
            {"image": "team/tool:1", "compressed": "5MB"},
            {"image": "team/tool:2", "compressed": "5MB", "pushedAt": "1h"},
            {"image": "team/new:1", "compressed": "5MB", "pushedAt": "2h"},
        ],
    },
    {
        "host": "nvcr.io",
        "unauthorized": ["nvidia/private"],
        "credentials": {"username": "$oauthtoken", "password": "ngc-key"},
        "rateLimit": 40,
        "images": [
            {
                "image": "nvidia/pytorch:24.08-py3",
                "compressed": "9.5GB",
                "archs": ["amd64", "arm64"],
            },
            {"image": "nvidia/private/model:1", "compressed": "1GB"},
        ],
        "outages": [{"start": 3600, "duration": 600}],
    },
]


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registries() -> Iterator[tuple[dict[str, str], Clock]]:
    clock = Clock()
    servers = RegistryServers(registries_from_spec(SPEC, epoch=EPOCH), clock)
    try:
        yield servers.start(), clock
    finally:
        servers.stop()


def test_lists_repositories_and_tags_through_a_bearer_token(registries: Any) -> None:
    urls, _ = registries
    harbor = RegistryClient(urls["harbor.example.internal"], Credentials("robot$sync", "s3cret"))
    harbor.ping()
    assert harbor.repositories() == ["library/app", "ml/trainer"]
    assert harbor.tags("library/app") == [f"1.{i}" for i in range(5)]


def test_pagination_follows_the_link_header(registries: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("prefetcher.registry.client.PAGE_SIZE", 2)
    urls, _ = registries
    harbor = RegistryClient(urls["harbor.example.internal"], Credentials("robot$sync", "s3cret"))
    before = harbor.requests
    assert harbor.tags("library/app") == [f"1.{i}" for i in range(5)]
    assert harbor.requests - before >= 3  # three pages


def test_facts_give_digest_platforms_size_and_build_time(registries: Any) -> None:
    urls, _ = registries
    ngc = RegistryClient(urls["nvcr.io"], Credentials("$oauthtoken", "ngc-key"))
    digest = ngc.digest("nvidia/pytorch", "24.08-py3")
    facts = ngc.facts("nvidia/pytorch", digest)
    assert facts.digest == digest.lower() and digest.startswith("sha256:")
    assert facts.platforms == ("linux/amd64", "linux/arm64")
    assert facts.compressed_size == 9_500_000_000
    assert facts.created is not None and facts.created.timestamp() == EPOCH
    harbor = RegistryClient(urls["harbor.example.internal"], Credentials("robot$sync", "s3cret"))
    old = harbor.facts("ml/trainer", harbor.digest("ml/trainer", "2.3"))
    assert old.created is not None and EPOCH - old.created.timestamp() == 200 * 86400


def test_basic_auth_challenge_is_answered(registries: Any) -> None:
    urls, _ = registries
    client = RegistryClient(urls["basic.example.internal"], Credentials("reader", "pw"))
    assert client.tags("team/tool") == ["1"]
    with pytest.raises(RegistryError) as wrong:
        RegistryClient(urls["basic.example.internal"], Credentials("reader", "no")).tags(
            "team/tool"
        )
    assert wrong.value.kind == "unauthorized"


@pytest.mark.parametrize(
    ("credentials", "repository", "kind"),
    [
        (None, "library/app", "unauthorized"),  # a private Harbor without a pull secret
        (Credentials("robot$sync", "wrong"), "library/app", "unauthorized"),
        (Credentials("robot$sync", "s3cret"), "library/gone", "not-found"),
    ],
)
def test_errors_have_kinds(registries: Any, credentials: Any, repository: str, kind: str) -> None:
    urls, _ = registries
    client = RegistryClient(urls["harbor.example.internal"], credentials)
    with pytest.raises(RegistryError) as error:
        client.tags(repository)
    assert error.value.kind == kind, error.value


def test_only_protected_repositories_need_credentials(registries: Any) -> None:
    urls, _ = registries
    anonymous = RegistryClient(urls["nvcr.io"])
    assert anonymous.tags("nvidia/pytorch") == ["24.08-py3"]
    with pytest.raises(RegistryError, match="HTTP 401"):
        anonymous.tags("nvidia/private/model")


def test_rate_limit_and_outage(registries: Any) -> None:
    urls, clock = registries
    ngc = RegistryClient(urls["nvcr.io"])
    with pytest.raises(RegistryError) as limited:
        for _ in range(60):
            ngc.tags("nvidia/pytorch")
    assert limited.value.kind == "rate-limited" and limited.value.retry_after == 60
    clock.now = EPOCH + 3700
    with pytest.raises(RegistryError) as down:
        ngc.ping()
    assert down.value.kind == "server-error"


def test_a_registry_that_is_not_there_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RegistryClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(RegistryError) as error:
        client.ping()
    assert error.value.kind == "unreachable"


def test_tags_pushed_during_the_run_are_listed_from_then_on(registries: Any) -> None:
    urls, clock = registries
    client = RegistryClient(urls["basic.example.internal"], Credentials("reader", "pw"))
    assert (client.repositories(), client.tags("team/tool")) == (["team/tool"], ["1"])
    clock.now = EPOCH + 3600
    facts = client.facts("team/tool", client.digest("team/tool", "2"))
    assert facts.created is not None and facts.created.timestamp() == EPOCH + 3600
    assert client.tags("team/tool") == ["1", "2"]
    assert client.repositories() == ["team/tool"]
    clock.now = EPOCH + 7200
    assert client.repositories() == ["team/new", "team/tool"]
