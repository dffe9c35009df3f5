"""Registry bandwidth: max-min fair shares, node caps, and outages failing transfers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.registry import Registry, RegistrySet
from simulator.virtual.loop import EventLoop
from simulator.virtual.network import EPSILON_BYTES, Network, max_min_fair


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


# One registry of 100 B/s; node caps below, at and above an even share.
CAPS = st.sampled_from([10.0, 25.0, 40.0, 100.0, 1000.0])
STEPS = st.lists(
    st.tuples(st.sampled_from(["start", "cancel", "caps", "run"]), st.integers(1, 1000), CAPS),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_rates_are_always_the_max_min_fair_shares_of_the_transfers_in_flight(
    steps: list[tuple[str, int, float]],
) -> None:
    """Whatever starts, ends, fails or changes its cap, every transfer in flight has the rate
    a full recomputation gives it, bytes are never lost or invented, and each transfer that
    ended well got every byte."""
    loop, net = network(outages=[(30.0, 31.0)])
    for action, number, cap in steps:
        flows = net.active("r.example")
        if action == "start":
            net.start("r.example", f"n{number}", "workload", number, cap, lambda ok: None)
        elif action == "cancel" and flows:
            net.cancel(flows[number % len(flows)])
        elif action == "caps" and flows:
            net.set_caps([flows[number % len(flows)]], cap)
        else:
            loop.run(loop.now + number / 100.0)
        flows = net.active("r.example")
        rates = [flow.rate for flow in flows]
        assert rates == max_min_fair(100.0, [flow.cap for flow in flows])
        assert sum(rates) <= 100.0 + 1e-9
        for flow in flows:
            assert -EPSILON_BYTES <= flow.sent_by(loop.now) <= flow.size
    loop.run(loop.now + 1e6)
    assert net.active("r.example") == []
    for transfer in net.log:
        assert transfer.ended is not None
        if transfer.ok:
            assert transfer.sent == transfer.size
