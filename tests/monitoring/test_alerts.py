"""The shipped alerts: `promtool check rules`, and `promtool test rules` fires each one when it should."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import promtool
from tests.monitoring.shipped import alerts, rule_groups

TESTS = Path(__file__).with_name("alerts_test.yaml")
RULES_FILE = "image-sync.rules.yaml"  # the name alerts_test.yaml loads


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    """The rules as a Prometheus rule file beside a copy of the unit tests."""
    path = directory / RULES_FILE
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(TESTS, directory / TESTS.name)
    return path


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, rule_groups())
    output = promtool.run("check", "rules", str(rules))
    assert f"SUCCESS: {len(alerts())} rules found" in output


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups())
    assert "SUCCESS" in promtool.run("test", "rules", TESTS.name, cwd=tmp_path)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    names = {a["alert"] for a in alerts()}
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert names - fires == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


def test_a_changed_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: a rule that fires later breaks them."""
    groups = rule_groups()
    [coverage] = [r for g in groups for r in g["rules"] if r.get("alert") == "ImageSyncCoverageLow"]
    coverage["expr"] = coverage["expr"].replace("< 0.9", "< 0.4")
    write_rules(tmp_path, groups)
    with pytest.raises(AssertionError, match="ImageSyncCoverageLow"):
        promtool.run("test", "rules", TESTS.name, cwd=tmp_path)


def test_alerts_carry_what_an_on_call_person_needs() -> None:
    for alert in alerts():
        name = alert["alert"]
        assert name.startswith("ImageSync"), name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert.get("for"), f"{name} fires on a single evaluation"
        assert {"summary", "description"} <= set(alert["annotations"]), name
