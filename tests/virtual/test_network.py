"""Registry bandwidth: max-min fair shares, node caps, and outages failing transfers."""

from __future__ import annotations

import pytest

from simulator.registry import Registry, RegistrySet
from simulator.virtual.loop import EventLoop
from simulator.virtual.network import Network, max_min_fair


def test_max_min_fair_gives_capped_flows_their_cap_and_splits_the_rest() -> None:
    assert max_min_fair(100.0, [10.0, 100.0, 100.0]) == pytest.approx([10.0, 45.0, 45.0])
    assert max_min_fair(100.0, [60.0, 60.0]) == pytest.approx([50.0, 50.0])
    assert max_min_fair(100.0, []) == []


def network(outages: list[tuple[float, float]] | None = None) -> tuple[EventLoop, Network]:
    loop = EventLoop()
    registries = RegistrySet([Registry("r.example", bandwidth=100.0, outages=outages or [])])
    return loop, Network(loop, registries)


def test_two_transfers_share_then_the_survivor_speeds_up() -> None:
    loop, net = network()
    ends: dict[str, float] = {}
    net.start("r.example", "a", "workload", 100, 1000.0, lambda ok: ends.setdefault("a", loop.now))
    net.start("r.example", "b", "workload", 300, 1000.0, lambda ok: ends.setdefault("b", loop.now))
    loop.run(100.0)
    # 50 B/s each: a ends at 2 s with b at 100 sent; b's last 200 B at 100 B/s: 4 s.
    assert ends == {"a": pytest.approx(2.0), "b": pytest.approx(4.0)}
    assert [t.sent for t in net.log] == [100, 300]


def test_a_node_cap_limits_one_transfer_and_frees_bandwidth_for_the_other() -> None:
    loop, net = network()
    ends: dict[str, float] = {}
    net.start(
        "r.example", "slow", "prefetch", 20, 10.0, lambda ok: ends.setdefault("slow", loop.now)
    )
    net.start(
        "r.example", "fast", "workload", 90, 1000.0, lambda ok: ends.setdefault("fast", loop.now)
    )
    loop.run(100.0)
    assert ends["fast"] == pytest.approx(1.0)  # 90 B/s: the capped flow takes only 10
    assert ends["slow"] == pytest.approx(2.0)


def test_an_outage_fails_the_transfers_in_flight() -> None:
    loop, net = network(outages=[(1.0, 5.0)])
    outcome: list[tuple[float, bool]] = []
    net.start("r.example", "a", "workload", 1000, 1000.0, lambda ok: outcome.append((loop.now, ok)))
    loop.run(10.0)
    assert outcome == [(1.0, False)]
    assert net.log[0].sent == 100
