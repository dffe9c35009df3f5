"""Certificates as files in a directory, replaced atomically so a reader never sees half a file.

Layout: `ca.crt` (the CA bundle: current CA first, then retired CAs still valid), `tls.crt`,
`tls.key`, and `ca.key`, which the next run needs to renew the serving certificate under the
same CA. Keys are 0600, certificates 0644.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from certs.material import Existing, Material, existing_from_pem

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
KEY_MODE = 0o600
CERT_MODE = 0o644


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    A rename within one directory is atomic, so a process that opens `path` gets either the
    old or the new content; the mode is set before any byte is written, so a key is never
    readable by others, not even for an instant.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_existing(directory: Path) -> Existing:
    """What a previous run left in `directory` (nothing when it does not exist)."""
    return existing_from_pem(
        ca_cert=_read(directory / CA_CERT),
        ca_key=_read(directory / CA_KEY),
        tls_cert=_read(directory / TLS_CERT),
        tls_key=_read(directory / TLS_KEY),
    )


def write_material(directory: Path, material: Material) -> list[Path]:
    """Store `material` in `directory`, creating it (0700 when new); returns the files written.

    Order matters for a server that reloads when `tls.crt` changes: the bundle and the keys
    land first, the serving certificate last.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = [
        (directory / CA_CERT, material.bundle_pem, CERT_MODE),
        (directory / CA_KEY, material.ca.key_pem, KEY_MODE),
        (directory / TLS_KEY, material.serving.key_pem, KEY_MODE),
        (directory / TLS_CERT, material.serving.cert_pem, CERT_MODE),
    ]
    written = []
    for path, data, mode in files:
        if _read(path) == data and (path.stat().st_mode & 0o777) == mode:
            continue
        atomic_write(path, data, mode)
        written.append(path)
    return written
