"""`image-sync prefetcher` under tracemalloc: where its memory is, for the scale bench's `--heap`.

    python bench/traced_prefetcher.py OUT.txt prefetcher --kubeconfig FILE ...

It runs the real command in this process with tracemalloc on; each SIGUSR2 writes the
live allocations grouped by line (largest first), by file, and the objects the garbage
collector tracks counted by type (with their own sizes, `sys.getsizeof`) to OUT.txt.
Tracing slows the process (about twice the CPU), so its figures of time are not the bench's.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

TOP = 40


def dump(out: Path) -> None:
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
    lines += ["", "by type (objects the collector tracks, their own size):"]
    lines += [
        f"  {size / 2**20:8.1f} MiB {count:9,d} objects  {name}"
        for name, (count, size) in by_type()[:TOP]
    ]
    written = out.with_suffix(".part")  # the reader waits for the whole file
    written.write_text("\n".join(lines) + "\n")
    written.replace(out)


def by_type() -> list[tuple[str, tuple[int, int]]]:
    """Objects the garbage collector tracks, counted and sized by type, largest first (an
    object's own size: a dict's table, a tuple's slots; not what they point to)."""
    totals: dict[str, tuple[int, int]] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        count, size = totals.get(name, (0, 0))
        totals[name] = (count + 1, size + sys.getsizeof(obj))
    return sorted(totals.items(), key=lambda item: -item[1][1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="where each SIGUSR2 writes the allocations")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="image-sync's arguments")
    args = parser.parse_args()
    out: Path = args.out
    tracemalloc.start(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        dump(out)

    signal.signal(signal.SIGUSR2, on_signal)
    from imagesync.cli import main as cli

    sys.argv = ["image-sync", *args.command]
    result = cli()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
