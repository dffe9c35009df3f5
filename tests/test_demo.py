"""`image-sync demo --once` end to end: the summary a newcomer sees must hold sane numbers.

The demo starts the simulator, the real webhook and the real prefetcher as the console
script does, so this is the widest test of the project. It checks what the figures mean,
never how long anything took.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "image-sync"

# Two replays of 45 simulated minutes each: about two minutes of wall time, more on a busy CI.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict[str, object]]]:
    """One `demo --once` run, shared by the checks below (it takes a couple of minutes)."""
    assert SCRIPT.exists(), "the image-sync console script is not installed: run make install"
    workdir = tmp_path_factory.mktemp("demo")
    summary = workdir / "summary.json"
    result = subprocess.run(
        [str(SCRIPT), "demo", "--once", "--summary-json", str(summary), "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, json.loads(summary.read_text())


def test_summary_names_every_figure(demo: tuple[str, dict[str, dict[str, object]]]) -> None:
    out, _ = demo
    for label in (
        "pods started",
        "images already on the node",
        "image wait p50",
        "image wait p95",
        "new node warm after",
        "bytes pulled from registries",
    ):
        assert re.search(rf"^\s+{label}\s+\S", out, re.M), f"{label!r} missing from:\n{out}"
    assert re.search(r"Prefetch report: http://127\.0\.0\.1:\d+/", out)
    # One progress line per step, with the elapsed time.
    assert re.search(r"^\[\s*\d+\.\d+s\] \[image-sync\] webhook \(gunicorn, TLS\)", out, re.M)


def test_every_pod_started_in_both_runs(demo: tuple[str, dict[str, dict[str, object]]]) -> None:
    _, figures = demo
    for run in ("without", "with"):
        created = figures[run]["pods_created"]
        assert isinstance(created, int) and created > 20
        assert figures[run]["pods_started"] == created


def test_image_sync_puts_more_images_on_nodes_ahead_of_pods(
    demo: tuple[str, dict[str, dict[str, object]]],
) -> None:
    _, figures = demo
    without, with_ = figures["without"], figures["with"]
    for run in (without, with_):
        rate = run["hit_rate"]
        assert isinstance(rate, float) and 0.0 <= rate <= 1.0
        p50, p95 = run["wait_p50"], run["wait_p95"]
        assert isinstance(p50, float) and isinstance(p95, float)
        assert not math.isnan(p95) and 0.0 <= p50 <= p95
        assert isinstance(run["bytes_pulled"], int) and run["bytes_pulled"] > 0
    assert isinstance(with_["hit_rate"], float) and isinstance(without["hit_rate"], float)
    assert with_["hit_rate"] > without["hit_rate"]


def test_the_new_node_is_warmed(demo: tuple[str, dict[str, dict[str, object]]]) -> None:
    _, figures = demo
    joined = figures["with"]["joined"]
    assert isinstance(joined, list) and len(joined) == 1
    node = joined[0]
    assert node["wanted"] >= 2
    assert node["present"] == node["wanted"]
    assert isinstance(node["warm_seconds"], float) and node["warm_seconds"] > 0
