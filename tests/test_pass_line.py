"""The scale bench reads each pass's figures from the prefetcher's pass log line."""

from __future__ import annotations

from bench.prefetcher_process import PASS_LINE


def test_the_pass_line_gives_the_plans_wall_and_cpu_seconds() -> None:
    line = (
        "pass (sweep): 0 writes planned, done {}, 0 already done, 0 API errors, "
        "0.412s (plan 0.149s, 0.052s CPU)"
    )
    match = PASS_LINE.search(line)
    assert match is not None
    assert (match["trigger"], match["seconds"], match["plan"], match["plan_cpu"]) == (
        "sweep",
        "0.412",
        "0.149",
        "0.052",
    )


def test_the_pass_line_gives_the_other_threads_cpu_during_the_plan() -> None:
    line = (
        "pass (new image): 200 writes planned, done {}, 0 already done, 0 API errors, "
        "0.412s (plan 0.149s, 0.052s CPU, 0.080s other threads; snapshot 0.010s, report 0.120s)"
    )
    match = PASS_LINE.search(line)
    assert match is not None
    assert (match["plan"], match["plan_cpu"], match["plan_others"]) == ("0.149", "0.052", "0.080")


def test_a_line_without_the_cpu_seconds_still_reads() -> None:
    match = PASS_LINE.search("pass (pod changed): 3 writes planned, done {}, 0.2s (plan 0.1s)")
    assert match is not None
    assert (match["plan"], match["plan_cpu"]) == ("0.1", None)
