"""The pod guard's rules: image-sync's own pods pass, every breach names the rule it breaks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imagesync.podguard import RULES, refusals
from tests.podguard_cases import BREACHES, Pod, breached, message, own_pods


def test_the_prefetchers_own_pods_pass() -> None:
    for pod in own_pods():
        assert refusals(pod) == [], pod["metadata"]["name"]


@pytest.mark.parametrize(("what", "rule", "make"), BREACHES, ids=[b[0] for b in BREACHES])
def test_each_breach_is_refused_with_its_rule(
    what: str, rule: int, make: Callable[[Pod], None]
) -> None:
    for pod in own_pods():
        assert refusals(breached(pod, make)) == [message(rule)], what


def test_every_rule_is_exercised() -> None:
    assert {rule for _, rule, _ in BREACHES} == set(range(len(RULES)))


def test_garbage_is_refused_not_crashed_on() -> None:
    assert len(refusals({})) >= 3
    assert refusals({"metadata": None, "spec": {"containers": "x", "volumes": [1]}})
