"""The scenario a measured run replays: shipped by name or a file that extends one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from simulator.scenario import Scenario


def load_run_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a file; a file may say `extends: NAME` to reuse one's
    nodes and registries (the evaluation's scenarios vary only the workload and events)."""
    from simulator.scenario import load_scenario, parse_scenario, read_scenario_file

    path = Path(name_or_path)
    if not path.exists():
        return load_scenario(name_or_path)
    return parse_scenario(read_scenario_file(path), path.stem)


def scenario_extra(name_or_path: str, key: str) -> Any:
    """A key of a scenario file the simulator ignores (e.g. the evaluation's `staticList`)."""
    path = Path(name_or_path)
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    return data.get(key) if isinstance(data, dict) else None


def replay_length(scenario: Scenario) -> float:
    """Simulated seconds from the workload's start to its last pod creation or node event."""
    ends = [item.at + max(0, item.replicas - 1) * item.interval for item in scenario.workload]
    ends += [event.at for event in scenario.events]
    return max(ends, default=0.0)
