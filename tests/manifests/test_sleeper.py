"""tools/sleeper.c, compiled as the Dockerfile compiles it: --exit, --install, SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.manifests.render import ROOT
from tests.skips import skip_without

SOURCE = ROOT / "tools" / "sleeper.c"


def dockerfile_gcc_flags() -> list[str]:
    """The flags of the Dockerfile's gcc line, so the test builds what the image builds."""
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"gcc ((?:-\S+ )+)-o \S+ \S*sleeper\.c", text)
    assert match, "the Dockerfile compiles tools/sleeper.c with gcc"
    return match.group(1).split()


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        skip_without("gcc", "install a C compiler")
    flags = dockerfile_gcc_flags()
    assert {"-static", "-Os"} <= set(flags)
    out = tmp_path_factory.mktemp("sleeper") / "image-sync-sleeper"
    result = subprocess.run(
        [gcc, *flags, "-o", str(out), str(SOURCE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def wait_exit(process: subprocess.Popen[bytes], timeout: float = 5) -> int:
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def program_header_types(binary: bytes) -> list[int]:
    """The p_type of every ELF program header (64-bit little-endian, as gcc builds here)."""
    assert binary[:4] == b"\x7fELF" and binary[4] == 2 and binary[5] == 1
    phoff = int.from_bytes(binary[32:40], "little")
    phentsize = int.from_bytes(binary[54:56], "little")
    phnum = int.from_bytes(binary[56:58], "little")
    return [
        int.from_bytes(binary[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
        for i in range(phnum)
    ]


def test_is_static_and_small(sleeper: Path) -> None:
    data = sleeper.read_bytes()
    pt_interp, pt_dynamic = 3, 2
    types = program_header_types(data)
    assert pt_interp not in types  # no dynamic loader: it runs in any image
    assert pt_dynamic not in types
    assert len(data) < 2_000_000


def test_exit_returns_at_once(sleeper: Path) -> None:
    started = time.monotonic()
    assert subprocess.run([str(sleeper), "--exit"], timeout=5, check=False).returncode == 0
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sleeps_until_signalled_then_exits_zero(sleeper: Path, sig: signal.Signals) -> None:
    process = subprocess.Popen([str(sleeper)])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
        process.send_signal(sig)
        assert wait_exit(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stops_on_sigterm_as_pid_1(sleeper: Path) -> None:
    """In a container it is PID 1, which ignores signals it has no handler for."""
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_without("unshare", "util-linux")
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        skip_without("unshare --pid", "this machine cannot create a PID namespace")
    process = subprocess.Popen([unshare, "--pid", "--fork", "--kill-child", str(sleeper)])
    try:
        child = None
        deadline = time.monotonic() + 5
        while child is None and time.monotonic() < deadline:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            child = int(pids[0]) if pids else None
            time.sleep(0.05)
        assert child is not None, "the sleeper did not start"
        time.sleep(0.2)
        assert process.poll() is None
        os.kill(child, signal.SIGTERM)
        assert wait_exit(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_install_copies_an_executable(sleeper: Path, tmp_path: Path) -> None:
    dest = tmp_path / "shared" / "image-sync-sleeper"
    dest.parent.mkdir()
    assert (
        subprocess.run([str(sleeper), "--install", str(dest)], timeout=5, check=False).returncode
        == 0
    )
    assert dest.read_bytes() == sleeper.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755  # any user of any image may run it
    assert sorted(p.name for p in dest.parent.iterdir()) == ["image-sync-sleeper"]
    assert subprocess.run([str(dest), "--exit"], timeout=5, check=False).returncode == 0
    # Installing again over a copy (a restarted init container) works too.
    assert (
        subprocess.run([str(sleeper), "--install", str(dest)], timeout=5, check=False).returncode
        == 0
    )


def test_install_into_a_missing_directory_fails(sleeper: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(sleeper), "--install", str(tmp_path / "missing" / "x")],
        capture_output=True, text=True, timeout=5, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "image-sync-sleeper" in result.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["--install"], ["--exit", "extra"], ["a", "b", "c"]])
def test_bad_arguments(sleeper: Path, args: list[str]) -> None:
    result = subprocess.run(
        [str(sleeper), *args], capture_output=True, text=True, timeout=5, check=False
    )
    assert result.returncode == 2
    assert "usage" in result.stderr
