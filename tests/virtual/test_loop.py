"""The event loop: time order, ties in scheduling order, cancellation."""

from __future__ import annotations

from simulator.virtual.loop import EventLoop


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    loop.at(5.0, lambda: seen.append((loop.now, "b")))
    loop.at(1.0, lambda: seen.append((loop.now, "a")))
    loop.at(5.0, lambda: seen.append((loop.now, "c")))
    loop.run(10.0)
    assert seen == [(1.0, "a"), (5.0, "b"), (5.0, "c")]
    assert loop.now == 10.0


def test_an_event_may_schedule_more_and_run_stops_at_until() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def tick() -> None:
        seen.append(loop.now)
        loop.after(2.0, tick)

    loop.at(0.0, tick)
    loop.run(5.0)
    assert seen == [0.0, 2.0, 4.0]
    assert loop.pending() == 1


def test_cancelled_timers_do_not_run() -> None:
    loop = EventLoop()
    seen: list[str] = []
    timer = loop.at(1.0, lambda: seen.append("cancelled"))
    loop.at(2.0, lambda: seen.append("kept"))
    timer.cancel()
    loop.run(3.0)
    assert seen == ["kept"]


def test_a_moment_in_the_past_runs_now() -> None:
    loop = EventLoop()
    loop.run(10.0)
    seen: list[float] = []
    loop.at(3.0, lambda: seen.append(loop.now))
    loop.run(11.0)
    assert seen == [10.0]
