"""Configuration: YAML file, IMAGE_SYNC_* overrides, and errors that name the key."""

from pathlib import Path

import pytest

from imagesync.config import ConfigError, load_config
from imagesync.quantities import parse_duration, parse_size


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config.mode == "opt-out"
    assert config.sweep_interval == 1800
    assert [str(p) for p in config.registries] == ["nvcr.io/nvidia"]
    assert config.namespace == "image-sync"


def test_file_then_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path, "registries: [harbor.example.internal, nvcr.io/nvidia]\nsweepInterval: 10m\n"
    )
    config = load_config(
        path, environ={"IMAGE_SYNC_SWEEP_INTERVAL": "1h30m", "POD_NAMESPACE": "ops"}
    )
    assert [str(p) for p in config.registries] == ["harbor.example.internal", "nvcr.io/nvidia"]
    assert config.sweep_interval == 5400
    assert config.namespace == "ops"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "mode: opt-in\n")
    assert load_config(None, environ={"IMAGE_SYNC_CONFIG": path}).mode == "opt-in"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("mode: sometimes\n", {}, "mode: expected one of opt-out, opt-in"),
        ("sweepInterval: soon\n", {}, "sweepInterval: expected a duration"),
        ("registries: [nvidia/cuda]\n", {}, "registries: [0]: registry prefix 'nvidia/cuda'"),
        ("sweepIntreval: 5m\n", {}, "unknown config key(s) sweepIntreval"),
        ("- a\n", {}, "must hold a mapping"),
        (
            "registryBandwidth: {harbor.example.com: fast}\n",
            {},
            "registryBandwidth: harbor.example.com: expected a bandwidth",
        ),
        ("registryBandwidth: [a]\n", {}, "registryBandwidth: expected a map"),
        ("prefetchBandwidthShare: 1.5\n", {}, "prefetchBandwidthShare"),
        (
            "",
            {"IMAGE_SYNC_REWRITE_LATEST": "maybe"},
            "IMAGE_SYNC_REWRITE_LATEST: expected true or false",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "absent.yaml"), environ={})


def test_units() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("14d") == 14 * 86400
    assert parse_duration(90) == 90
    assert parse_size("512Mi") == 512 * 1024**2
    assert parse_size("9.5GB") == 9_500_000_000
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_registry_bandwidth_from_file_and_environment(tmp_path: Path) -> None:
    text = 'registryBandwidth: {"Harbor.example.com": "10Gbit/s", "nvcr.io": "250MB/s"}\n'
    config = load_config(write(tmp_path, text), environ={})
    assert config.registry_bandwidth == (("harbor.example.com", 1.25e9), ("nvcr.io", 2.5e8))
    assert config.prefetch_bandwidth_share == 0.5
    env = {"IMAGE_SYNC_REGISTRY_BANDWIDTH": '{"nvcr.io": "2Gbps"}'}
    assert load_config(None, environ=env).registry_bandwidth == (("nvcr.io", 2.5e8),)
