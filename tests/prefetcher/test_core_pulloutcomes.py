"""Each puller's outcome is reported once, never lost, across incremental passes and sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.config import Config
from prefetcher.model import Plan, PullOutcome
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pulloutcomes import PullOutcomes, ReportedOutcomes
from tests.prefetcher.test_core_fixtures import GB, image, node
from tests.prefetcher.test_core_incremental import EVENTS, TwinWorld, _apply
from tests.prefetcher.test_core_properties import POOL, configs, images_st, nodes_st

Key = tuple[str, str]  # (puller uid, image)


@dataclass
class ReportingWorld(TwinWorld):
    """A TwinWorld whose every plan, incremental or a sweep's, goes to the controller's
    `ReportedOutcomes`, as the executor hands it on."""

    reported: ReportedOutcomes = field(default_factory=ReportedOutcomes)
    counted: list[Key] = field(default_factory=list)  # each outcome reported, in order
    seen: set[Key] = field(default_factory=set)  # each outcome any plan held

    def plan(self) -> Plan:
        return self._report(super().plan())

    def sweep(self) -> Plan:
        assert self.planner is not None
        return self._report(self.planner.full(self.snapshot()))

    def _report(self, result: Plan) -> Plan:
        live = {p.uid for p in self.pods.values()}
        fresh = self.reported.new(result.outcomes, live)
        self.counted += [(o.pod_uid, o.image) for o in fresh]
        self.seen |= {(o.pod_uid, o.image) for o in result.outcomes}
        # never lost: every outcome of this plan is reported by now
        assert self.seen <= set(self.counted), self.seen - set(self.counted)
        return result


def _once(w: ReportingWorld) -> None:
    assert len(w.counted) == len(set(w.counted)), "an outcome was reported twice"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(nodes_st(), images_st(), configs, st.data())
def test_each_outcome_is_reported_once_across_passes_and_sweeps(
    nodes: Any, images: Any, cfg: Any, data: Any
) -> None:
    w = ReportingWorld(nodes=list(nodes), images=list(images), config=cfg)
    w.planner = IncrementalPlanner(cfg)
    for _ in range(data.draw(st.integers(1, 12))):
        for event in data.draw(st.lists(st.sampled_from([*EVENTS, "report sweep"]), max_size=3)):
            if event == "report sweep":
                w.sweep()
            else:
                _apply(w, event, data.draw(st.integers(0, 1000)), data)
        w.step(advance=timedelta(minutes=data.draw(st.sampled_from([0, 1, 5]))))
    _once(w)


def test_finished_pullers_hand_on_the_same_outcomes_pass_after_pass() -> None:
    """A finished puller that stays (no keepers here): every pass, and the sweep, hands on its
    outcomes as the same tuple, reported once."""
    w = ReportingWorld(
        nodes=[node("a"), node("b")],
        images=[image(ref, uses=10 + i) for i, ref in enumerate(POOL[:3])],
        config=Config(keeper_enabled=False),
    )
    w.planner = IncrementalPlanner(w.config)
    for _ in range(6):
        w.step()
    first = w.plan().outcomes
    assert isinstance(first, PullOutcomes) and first.groups
    again, swept = w.plan().outcomes, w.sweep().outcomes
    assert isinstance(again, PullOutcomes) and isinstance(swept, PullOutcomes)
    assert all(a is b for a, b in zip(first.groups, again.groups, strict=True))
    assert all(a is b for a, b in zip(first.groups, swept.groups, strict=True))
    assert len(w.counted) == len(first) == len({(o.pod_uid, o.image) for o in first})
    _once(w)


def test_a_plan_made_by_hand_is_reported_one_outcome_at_a_time() -> None:
    outcome = PullOutcome("a", POOL[0], "p", "uid-1", False, "ErrImagePull", "", None, GB, "")
    other = outcome._replace(image=POOL[1])
    reported = ReportedOutcomes()
    assert reported.new((outcome,), {"uid-1"}) == [outcome]
    assert reported.new((outcome, other), {"uid-1"}) == [other]
    assert reported.new(PullOutcomes([(outcome, other)]), {"uid-1"}) == []
    # a puller gone is forgotten
    assert reported.new((), set()) == []
    assert reported.new((outcome,), {"uid-1"}) == [outcome]
