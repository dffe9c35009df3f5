"""The memory bench walks a small cluster from empty to converged through the real
prefetcher (its figures of memory are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_memory_bench_walks_a_cluster_to_converged(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    result = subprocess.run(
        [sys.executable, "bench/memory_scale.py", "--size", "6x4", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not settled" not in result.stdout, result.stdout
    figures = json.loads(out.read_text())
    steps = {step["name"][0]: step for step in figures["steps"]}
    assert sorted(steps) == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert steps["1"]["pods"] == {"pullers": 6, "keepers": 0}
    # half of every puller's containers run, and a seventh node joins with nothing yet
    assert steps["2"]["coverage"] == 12 / 28
    for name in ("4", "5", "6", "7"):
        assert steps[name]["pods"] == {"pullers": 0, "keepers": 7}
        assert steps[name]["coverage"] == 1.0
    assert figures["actions"]["create keeper"] == 8  # the nodes that joined at steps 2 and 8
    assert figures["actions"]["start pull"] == 16  # and the new image's, one per node
    assert all("in use in its heaps" in step["malloc"] for step in figures["steps"])
    assert figures["report_bytes"] > 0 and figures["page_bytes"] > 0
