"""Sampling profiles of the bench's processes with py-spy, summarized as where the CPU went.

py-spy samples a running process from outside (no change to the code it profiles), so the
prefetcher is profiled as it runs in a cluster. The summary is the share of samples each
function and each module was on top of the stack in (its own time), busiest first.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hotspot:
    """A function or module and the share of the profile's samples it was running in."""

    name: str
    share: float


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    functions: tuple[Hotspot, ...]
    modules: tuple[Hotspot, ...]


def _frame_parts(frame: str) -> tuple[str, str]:
    """(function, module) of a py-spy frame such as `step (simulator/kubelet.py:150)`."""
    function, _, rest = frame.partition(" (")
    path = rest.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        for top in ("simulator/", "prefetcher/", "imagesync/", "bench/"):
            if top in path:
                path = top + path.split(top, 1)[1]
                break
    return f"{function} ({path})", path


def summarize(collapsed: str, top: int = 10) -> ProfileSummary:
    """Own time per function and per module from py-spy's `raw` (collapsed stacks) output of
    the thread holding the GIL (`--gil`): what ran Python code, not threads waiting."""
    functions: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        function, module = _frame_parts(stack.rsplit(";", 1)[-1])
        functions[function] += int(count)
        modules[module] += int(count)
        total += int(count)

    def shares(counter: Counter[str]) -> tuple[Hotspot, ...]:
        return tuple(Hotspot(name, n / total) for name, n in counter.most_common(top))

    return (
        ProfileSummary(total, shares(functions), shares(modules))
        if total
        else ProfileSummary(0, (), ())
    )


class Recorder:
    """`py-spy record` on one process until stopped (see `available`)."""

    def __init__(self, pid: int, out: Path, rate: int = 50) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                str(pyspy_path()),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--gil",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> ProfileSummary:
        """Stop sampling (py-spy writes its file on SIGINT) and summarize."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return summarize(self.out.read_text() if self.out.exists() else "")


def pyspy_path() -> Path | str:
    """py-spy next to this interpreter (the dev extra installs it), else on PATH."""
    import sys

    local = Path(sys.executable).parent / "py-spy"
    return local if local.exists() else shutil.which("py-spy") or "py-spy"


def available() -> bool:
    path = pyspy_path()
    return Path(path).exists() or shutil.which(str(path)) is not None
