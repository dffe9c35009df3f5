"""Certificates on disk: modes, atomic replacement, and writing only what changed."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import files
from certs.material import Existing, ensure
from certs.names import service_dns_names

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DNS = service_dns_names("image-sync-webhook", "image-sync")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "certs"
    material = ensure(Existing(), DNS, now=NOW).material
    written = files.write_material(out, material)
    assert sorted(p.name for p in written) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert _mode(out) == 0o700
    assert _mode(out / "tls.key") == 0o600 and _mode(out / "ca.key") == 0o600
    assert _mode(out / "tls.crt") == 0o644 and _mode(out / "ca.crt") == 0o644
    assert (out / "tls.crt").read_bytes() == material.serving.cert_pem
    assert (out / "ca.crt").read_bytes() == material.bundle_pem
    assert sorted(os.listdir(out)) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]  # no temp files


def test_round_trip_and_no_rewrite(tmp_path: Path) -> None:
    material = ensure(Existing(), DNS, now=NOW).material
    files.write_material(tmp_path, material)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    existing = files.read_existing(tmp_path)
    assert not existing.problems
    outcome = ensure(existing, DNS, now=NOW + timedelta(days=1))
    assert not outcome.changed
    assert files.write_material(tmp_path, outcome.material) == []
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_a_loosened_key_mode_is_restored(tmp_path: Path) -> None:
    material = ensure(Existing(), DNS, now=NOW).material
    files.write_material(tmp_path, material)
    (tmp_path / "tls.key").chmod(0o644)
    assert [p.name for p in files.write_material(tmp_path, material)] == ["tls.key"]
    assert _mode(tmp_path / "tls.key") == 0o600


def test_missing_directory_reads_as_nothing(tmp_path: Path) -> None:
    assert files.read_existing(tmp_path / "absent") == Existing()


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    """Replace tls.crt over and over while another thread reads it: every read is whole."""
    big_a = b"A" * 300_000
    big_b = b"B" * 300_000
    target = tmp_path / "tls.crt"
    files.atomic_write(target, big_a, 0o644)
    stop = threading.Event()
    bad: list[int] = []

    def read() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in (big_a, big_b):
                bad.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for index in range(200):
            files.atomic_write(target, big_b if index % 2 else big_a, 0o644)
    finally:
        stop.set()
        reader.join()
    assert bad == []
    assert [p.name for p in tmp_path.iterdir()] == ["tls.crt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tls.key"
    files.atomic_write(target, b"old", 0o600)

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        files.atomic_write(target, b"new", 0o600)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["tls.key"]


def test_key_is_never_world_readable_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode is set on the temporary file before the key bytes go in."""
    seen: list[int] = []
    real_fdopen = os.fdopen

    def spy(fd: int, *args: object, **kwargs: object):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "fdopen", spy)
    files.atomic_write(tmp_path / "tls.key", b"secret", 0o600)
    assert seen == [0o600]
