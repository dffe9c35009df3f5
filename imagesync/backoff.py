"""One jittered exponential backoff for every retry loop, so replicas never retry in step.

The parameters follow apimachinery's `wait.Backoff` (as the kubernetes client's
`kubernetes.utils.retry.Backoff` names them: a first `duration`, a `factor`, a `jitter`
fraction added on top, a `cap`); its retry helpers block in a loop of their own, while our
loops (informers, the controller) wait on their clock between attempts and reset after a
success, so this keeps just the delay sequence.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays `duration`, `duration * factor`, ... up to `cap`, each plus up to `jitter` of
    itself at random."""

    duration: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.2
    random: Callable[[], float] = random.random
    _current: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.duration < 0 or self.cap < self.duration or self.factor < 1 or self.jitter < 0:
            raise ValueError(f"invalid backoff {self!r}")
        self._current = self.duration

    def next(self) -> float:
        """The delay before the next attempt; each call grows the one after."""
        delay = self._current
        self._current = min(self._current * self.factor, self.cap)
        return delay + self.random() * self.jitter * delay

    def reset(self) -> None:
        """After a success: the next failure waits `duration` again."""
        self._current = self.duration
