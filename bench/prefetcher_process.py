"""`image-sync prefetcher` as a child process, read from the outside as an operator would.

Its /metrics, its pass log (one line per pass), and its CPU and memory from /proc: the
benchmarks never reach into the prefetcher's objects, so what they measure is what runs in
a cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "image_sync_prefetcher"
WRITE_VERBS = ("create", "update", "patch", "delete")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

PASS_LINE = re.compile(
    r"pass \((?P<trigger>[^)]*)\): (?P<writes>\d+) writes planned.* (?P<seconds>[\d.]+)s "
    r"\(plan (?P<plan>[\d.]+)s(?:, (?P<plan_cpu>[\d.]+)s CPU)?"
    r"(?:, (?P<plan_others>[\d.]+)s other threads)?"
    r"(?:; snapshot (?P<snapshot>[\d.]+)s, report (?P<report>[\d.]+)s)?"
)


@dataclass(frozen=True)
class PassLine:
    """One planning pass as its log line tells it."""

    trigger: str
    writes: int
    seconds: float
    plan: float
    plan_cpu: float | None = None  # the planning thread's CPU seconds (None: not logged)
    # The process's other threads' CPU seconds during the plan (None: not logged).
    plan_others: float | None = None
    snapshot: float | None = None  # seconds of the pass's snapshot of the caches
    report: float | None = None  # seconds of preparing the plan's report


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status in KiB: VmRSS (now) or VmHWM (peak)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


class PrefetcherProcess:
    """The real `image-sync prefetcher` command against a kubeconfig, with its log in a file."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "prefetcher.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text().splitlines()[-20:]
            raise SystemExit("the prefetcher exited:\n" + "\n".join(tail))

    def metrics(self) -> Samples:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        self.check()
        text = requests.get(f"{self.url}/metrics", timeout=60).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def timed_get(self, path: str) -> tuple[float, int]:
        """Wall seconds and bytes of one GET, by curl in a process of its own when there is
        one: a client in the busy simulator's process would time its own wait for the
        interpreter too."""
        if shutil.which("curl"):
            out = subprocess.run(
                [
                    "curl",
                    "-sf",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total} %{size_download}",
                    "--max-time",
                    "60",
                    f"{self.url}{path}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            return float(out[0]), int(float(out[1]))
        started = time.perf_counter()
        response = requests.get(f"{self.url}{path}", timeout=60)
        response.raise_for_status()
        return time.perf_counter() - started, len(response.content)

    def passes(self) -> list[PassLine]:
        out = []
        for line in self.log_path.read_text().splitlines():
            match = PASS_LINE.search(line)
            if match:
                out.append(
                    PassLine(
                        match["trigger"],
                        int(match["writes"]),
                        float(match["seconds"]),
                        float(match["plan"]),
                        float(match["plan_cpu"]) if match["plan_cpu"] else None,
                        float(match["plan_others"]) if match["plan_others"] else None,
                        float(match["snapshot"]) if match["snapshot"] else None,
                        float(match["report"]) if match["report"] else None,
                    )
                )
        return out

    def request_sweep(self) -> None:
        """SIGHUP: the prefetcher sweeps now instead of at its next interval."""
        self.process.send_signal(signal.SIGHUP)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def memory_kib(self, field: str = "VmRSS") -> int:
        return proc_memory_kib(self.pid, field)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every sample whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def by_label(
    samples: Samples, name: str, label: str, *, skip: Callable[[dict[str, str]], bool] | None = None
) -> dict[str, float]:
    """`name` summed by one label's value (samples `skip` names are left out)."""
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        found = dict(labels)
        if sample == name and label in found and not (skip and skip(found)):
            out[found[label]] = out.get(found[label], 0.0) + value
    return out


def api_requests(samples: Samples) -> dict[str, float]:
    """API requests so far by verb, the Lease's own renewals left out."""
    return by_label(
        samples,
        f"{PREFIX}_api_requests_total",
        "verb",
        skip=lambda labels: labels.get("resource") == "leases",
    )


def actions(samples: Samples) -> dict[str, float]:
    """Writes carried out so far, by kind (start pull, create keeper, delete pod, ...)."""
    return by_label(samples, f"{PREFIX}_actions_total", "kind")


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    """What grew between two readings of a counter family, by key."""
    return {
        key: int(value - before.get(key, 0.0))
        for key, value in sorted(after.items())
        if value - before.get(key, 0.0)
    }


def writes(requests_by_verb: dict[str, Any]) -> int:
    return int(sum(requests_by_verb.get(verb, 0) for verb in WRITE_VERBS))
