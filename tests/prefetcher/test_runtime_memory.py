"""Memory a pass freed goes back to the operating system (glibc's malloc_trim)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from prefetcher.memory import NEVER, YOUNG_THRESHOLD, FreedMemory, keep_collections_out_of_passes


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_memory_goes_back_after_a_pass() -> None:
    freed = FreedMemory(every=0.0)
    if not freed.available or not Path("/proc/self/status").exists():
        pytest.skip("no glibc malloc_trim here")
    # 8 kB blocks (glibc's, not Python's small-object arenas); every 16th stays alive, so
    # the heap cannot shrink from its top and keeps the freed pages until trimmed.
    blocks = [bytes(8192) for _ in range(25_000)]
    kept = blocks[::16]
    del blocks
    before = _rss_kib()
    freed.release()
    after = _rss_kib()
    assert freed.trims == 1
    assert before - after > 100_000, (before, after)  # KiB: most of the 200 MB freed
    assert len(kept) == 1563


def test_trims_at_most_every_so_often() -> None:
    freed = FreedMemory(every=3600.0)
    if not freed.available:
        pytest.skip("no malloc_trim here")
    freed.release()
    freed.release()
    assert freed.trims == 1
    soon = FreedMemory(every=0.0)
    soon.release()
    time.sleep(0.001)
    soon.release()
    assert soon.trims == 2


def test_the_log_says_when_the_prefetcher_runs_on_pythons_own_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefetcher.memory import ALLOCATOR_ENV, allocator_note

    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    assert "PYTHONMALLOC=malloc" in allocator_note()
    monkeypatch.setenv("PYTHONMALLOC", ALLOCATOR_ENV["PYTHONMALLOC"])
    assert allocator_note() == ""


def test_a_trim_skipped_during_a_burst_is_made_once_the_passes_stop() -> None:
    freed = FreedMemory(every=3600.0)
    if not freed.available:
        pytest.skip("no malloc_trim here")
    freed.settle()
    assert freed.trims == 0  # nothing freed yet: nothing owed
    freed.release()  # the burst's first pass trims
    freed.release()  # the next ones, too soon, owe one
    freed.release()
    assert freed.trims == 1
    freed.settle()  # idle: the owed trim
    freed.settle()
    assert freed.trims == 2
    freed.release(force=True)  # a relist trims whatever the time
    assert freed.trims == 3


def test_collections_are_kept_out_of_passes() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        keep_collections_out_of_passes()
        young, middle, oldest = gc.get_threshold()
        assert (young, middle, oldest) == (YOUNG_THRESHOLD, 10, NEVER)
    finally:
        gc.set_threshold(*before)
