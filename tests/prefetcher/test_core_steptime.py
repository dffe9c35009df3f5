"""A step's time splits into its own CPU and what the process's other threads took meanwhile."""

from __future__ import annotations

import threading

from prefetcher.steptime import Stopwatch


def _busy(rounds: int) -> None:
    total = 0
    for i in range(rounds):
        total += i * i


def test_the_other_threads_work_is_counted_apart_from_the_steps_own() -> None:
    worker = threading.Thread(target=_busy, args=(2_000_000,))
    with Stopwatch() as watch:
        worker.start()
        worker.join()  # the step itself waits: the other thread computes
    assert watch.took.others > watch.took.cpu
    assert watch.took.wall >= watch.took.cpu


def test_a_step_that_computes_alone_counts_its_own_cpu() -> None:
    with Stopwatch() as watch:
        _busy(2_000_000)
    assert watch.took.cpu > watch.took.others
