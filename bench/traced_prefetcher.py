"""`image-sync prefetcher` under tracemalloc: where its memory is, for the scale bench's `--heap`.

    python bench/traced_prefetcher.py OUT.txt prefetcher --kubeconfig FILE ...

It runs the real command in this process with tracemalloc on; each SIGUSR2 writes the
live allocations grouped by line (largest first), by file, and the objects the garbage
collector tracks counted by type (with their own sizes, `sys.getsizeof`) to OUT.txt.
Tracing slows the process (two to five times the CPU), so its figures of time are not the
bench's. With `--no-trace` the process runs untraced and each SIGUSR2 writes only what the
C library's malloc holds (in use, free, mapped: `mallinfo2`) and the objects by type: what
of the RSS is live, and what the allocator keeps. SIGUSR1 writes malloc's figures alone
(cheap). `--profile-plans DIR` writes a cProfile of every plan into DIR (numbered in the
order of the pass log's lines).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

TOP = 40


class MallInfo(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later): every arena's figures, summed."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_lines() -> list[str]:
    """What malloc holds: in use, free inside its heaps, and mapped apart (large blocks)."""
    name = ctypes.util.find_library("c")
    try:
        call = ctypes.CDLL(name).mallinfo2
    except (OSError, AttributeError, TypeError):
        return ["malloc: no mallinfo2 in this C library"]
    call.restype = MallInfo
    info = call()
    mib = 2**20
    return [
        f"malloc: {info.uordblks / mib:.1f} MiB in use in its heaps, {info.fordblks / mib:.1f} "
        f"MiB free in them ({info.arena / mib:.1f} MiB of heaps), {info.hblkhd / mib:.1f} MiB "
        f"in {info.hblks} blocks mapped apart",
        f"VmRSS: {_status('VmRSS')}, VmHWM: {_status('VmHWM')}, threads: {_status('Threads')}",
    ]


def _status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return " ".join(line.split()[1:])
    return "?"


def dump(out: Path, full: bool, garbage: bool = False) -> None:
    """Write malloc's figures to `out`; `full`: the traced allocations and the objects by
    type too (a walk of every object: seconds, and a list of them all for a moment);
    `garbage`: first the objects in reference cycles that nothing reaches, by type, and
    what collecting them gave back (the prefetcher collects them at sweeps only)."""
    lines = malloc_lines()
    if not full:
        _write(out, lines)
        return
    if garbage:
        lines += collected()
    if tracemalloc.is_tracing():
        lines += _traced()
    lines += ["", "by type (objects the collector tracks, their own size):"]
    lines += [
        f"  {size / 2**20:8.1f} MiB {count:9,d} objects  {name}"
        for name, (count, size) in by_type()[:TOP]
    ]
    _write(out, lines)


def collected() -> list[str]:
    """Collect the unreachable cycles now, saying what they were and what malloc got back."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    counts: dict[str, int] = {}
    for obj in found:
        counts[type(obj).__qualname__] = counts.get(type(obj).__qualname__, 0) + 1
    del found
    gc.collect()
    top = sorted(counts.items(), key=lambda item: -item[1])[:15]
    return [
        f"unreachable cycles: {sum(counts.values()):,} objects; after collecting them:",
        *malloc_lines(),
        *(f"  {count:9,d} {name}" for name, count in top),
    ]


def _write(out: Path, lines: list[str]) -> None:
    written = out.with_suffix(".part")  # the reader waits for the whole file
    written.write_text("\n".join(lines) + "\n")
    written.replace(out)


def _traced() -> list[str]:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines = [f"traced: {total / 2**20:.1f} MiB live", "", "by line:"]
    lines += [
        f"  {stat.size / 2**20:8.1f} MiB {stat.count:9,d} blocks  {stat.traceback[0]}"
        for stat in snapshot.statistics("lineno")[:TOP]
    ]
    lines += ["", "by file:"]
    lines += [
        f"  {stat.size / 2**20:8.1f} MiB  {stat.traceback[0].filename}"
        for stat in snapshot.statistics("filename")[:TOP]
    ]
    return lines


def by_type() -> list[tuple[str, tuple[int, int]]]:
    """Objects the garbage collector tracks, counted and sized by type, largest first (an
    object's own size: a dict's table, a tuple's slots; not what they point to)."""
    totals: dict[str, tuple[int, int]] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        count, size = totals.get(name, (0, 0))
        totals[name] = (count + 1, size + sys.getsizeof(obj))
    return sorted(totals.items(), key=lambda item: -item[1][1])


def profile_plans(into: Path) -> None:
    """Profile every plan of the incremental planner (cProfile: about twice the CPU), each
    into its own `plan-NNNN.prof` under `into`, in the order the passes log them."""
    import cProfile
    import functools
    import itertools

    from prefetcher.planning.incremental import IncrementalPlanner

    into.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count(1)

    def profiled(method: Any) -> Any:
        @functools.wraps(method)
        def run(self: IncrementalPlanner, snapshot: Any) -> Any:
            profile = cProfile.Profile()
            try:
                return profile.runcall(method, self, snapshot)
            finally:
                profile.dump_stats(into / f"plan-{next(numbers):04d}.prof")

        return run

    # A sweep's `full` forgets and calls `plan`: every pass's plan is one `plan` call.
    IncrementalPlanner.plan = profiled(IncrementalPlanner.plan)  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="where each SIGUSR2 writes the allocations")
    parser.add_argument("--no-trace", action="store_true", help="malloc's figures only")
    parser.add_argument(
        "--garbage", action="store_true", help="SIGUSR2 collects the unreachable cycles first"
    )
    parser.add_argument(
        "--profile-plans", type=Path, metavar="DIR", help="a cProfile of every plan, into DIR"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="image-sync's arguments")
    args = parser.parse_args()
    out: Path = args.out
    if args.profile_plans:
        profile_plans(args.profile_plans)
    if not args.no_trace:
        tracemalloc.start(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        dump(out, full=signum == signal.SIGUSR2, garbage=args.garbage)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    from imagesync.cli import main as cli

    sys.argv = ["image-sync", *args.command]
    result = cli()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
