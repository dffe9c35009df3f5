"""The trace format: JSON lines and CSV, and errors that name the line."""

from __future__ import annotations

import pytest

from simulator.virtual.trace import TraceError, parse_trace, trace_lines

GOOD = """
# a comment
{"time": 0, "namespace": "ml", "owner": "Job/train", "image": "nvcr.io/nvidia/pytorch:24.08-py3", "gpus": 4, "cpu": "16", "memory": "128Gi", "nodeSelector": {"nvidia.com/gpu.present": "true"}, "duration": 600}
{"time": 30.5, "owner": "ReplicaSet/web-1", "images": ["harbor.example.internal/library/app:1.0"]}
"""


def test_json_lines_become_pods_in_time_order() -> None:
    pods = parse_trace(GOOD)
    assert [p.at for p in pods] == [0.0, 30.5]
    train, web = pods
    assert (train.owner_kind, train.owner, train.gpus, train.duration) == ("Job", "train", 4, 600.0)
    assert train.cpu == 16.0 and train.memory == 128 * 2**30
    assert any(t.get("key") == "nvidia.com/gpu" for t in train.tolerations)
    assert web.duration is None and web.namespace == "default"
    assert web.images == ("harbor.example.internal/library/app:1.0",)


def test_timestamps_count_from_the_earliest_line() -> None:
    text = (
        '{"time": "2026-03-01T10:00:30Z", "image": "busybox:1.36"}\n'
        '{"time": "2026-03-01T10:00:00Z", "image": "busybox:1.36"}\n'
    )
    assert [p.at for p in parse_trace(text)] == [0.0, 30.0]
    assert parse_trace(text)[0].images == ("docker.io/library/busybox:1.36",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"time": 1, "image": "a:1"', "not valid JSON"),
        ('{"image": "a:1"}', "`time` is required"),
        ('{"time": 1}', "give `image` or `images`"),
        ('{"time": 1, "image": "a:1", "cpu": "lots"}', "`cpu` is not a quantity"),
        ('{"time": -4, "image": "a:1"}', "must not be negative"),
        ('{"time": 1, "image": "a:1", "imagePullPolicy": "Sometimes"}', "imagePullPolicy"),
    ],
)
def test_a_bad_line_is_named_in_the_error(line: str, message: str) -> None:
    text = '{"time": 0, "image": "a:1"}\n\n' + line + "\n"
    with pytest.raises(TraceError) as error:
        parse_trace(text, "cluster.jsonl")
    assert str(error.value).startswith("cluster.jsonl:3: ")
    assert message in str(error.value)


def test_csv_traces_are_read_too() -> None:
    text = (
        "time,namespace,owner,images,nodeSelector,gpus,cpu,memory,duration\n"
        "0,ml,Job/train,nvcr.io/nvidia/pytorch:24.08-py3,nvidia.com/gpu.present=true,4,16,128Gi,600\n"
        "5,default,,busybox:1.36 harbor.example.internal/library/app:1.0,,,,,\n"
    )
    train, web = parse_trace(text, csv_format=True)
    assert train.node_selector == {"nvidia.com/gpu.present": "true"} and train.gpus == 4
    assert len(web.images) == 2 and web.duration is None


def test_written_lines_read_back_the_same() -> None:
    pods = parse_trace(GOOD)
    assert parse_trace("\n".join(trace_lines(pods))) == pods
