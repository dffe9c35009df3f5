"""`image-sync replay` through the console script's entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesync.cli import main

TRACE = """\
{"time": 0, "namespace": "ml", "owner": "Job/train", "image": "nvcr.io/nvidia/pytorch:24.08-py3", "gpus": 4, "cpu": "16", "memory": "128Gi", "nodeSelector": {"nvidia.com/gpu.present": "true"}, "duration": 600}
{"time": 60, "owner": "ReplicaSet/web-1", "images": ["harbor.example.internal/shop/web:3.1"]}
{"time": 900, "namespace": "ml", "owner": "Job/train-2", "image": "nvcr.io/nvidia/pytorch:24.08-py3", "gpus": 4, "cpu": "16", "memory": "128Gi", "nodeSelector": {"nvidia.com/gpu.present": "true"}, "duration": 600}
"""


def test_replay_prints_the_tables_for_the_chosen_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "pods.jsonl"
    trace.write_text(TRACE)
    assert main(["replay", str(trace), "--policies", "none,image-sync,oracle"]) == 0
    out, err = capsys.readouterr()
    assert "| gpu-cluster | none | 3/3 |" in out
    assert "| gpu-cluster | oracle |" in out and "first use" in out
    assert "1 trace image(s) not in the scenario's registries" in err  # shop/web:3.1


def test_replay_names_the_bad_line_and_the_unknown_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "pods.jsonl"
    trace.write_text(TRACE + '{"time": 5}\n')
    assert main(["replay", str(trace)]) == 2
    assert f"{trace}:4: give `image` or `images`" in capsys.readouterr().err
    assert main(["replay", str(trace), "--policies", "none,magic"]) == 2
    assert "unknown policies magic" in capsys.readouterr().err
