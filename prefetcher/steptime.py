"""What a step of a pass cost: its wall time, its own CPU and what the process's other threads
took meanwhile, so a slow plan tells whether it computed, waited for the interpreter or for
the machine.

The informers decode watch events and relists on threads of their own, and the report's
server answers on others; all of them share one interpreter lock with the pass. A plan's
wall time is then its own CPU, plus the CPU the other threads used while it waited for the
lock, plus the time the machine ran other processes. The two CPU figures are read from the
clocks of the thread and of the process (`CLOCK_THREAD_CPUTIME_ID`,
`CLOCK_PROCESS_CPUTIME_ID`): two system calls a step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class StepTime:
    """Seconds of one step: wall, the calling thread's CPU, the other threads' CPU meanwhile."""

    wall: float = 0.0
    cpu: float = 0.0
    others: float = 0.0


class Stopwatch:
    """Times one step: `with Stopwatch() as watch: ...`, then `watch.took`."""

    def __init__(self) -> None:
        self.took = StepTime()
        self._wall = self._thread = self._process = 0.0

    def __enter__(self) -> Self:
        self._wall = time.perf_counter()
        self._thread = time.thread_time()
        self._process = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        cpu = time.thread_time() - self._thread
        process = time.process_time() - self._process
        self.took = StepTime(
            wall=time.perf_counter() - self._wall, cpu=cpu, others=max(0.0, process - cpu)
        )
