"""The cluster a trace is replayed on: a scenario file or a shipped scenario's nodes,
registries and node events, completed with the images the trace uses.

A scenario file may say `extends: NAME` to take a shipped scenario and change some keys
(as bench/scenarios/ do), and may carry a `staticList` for the `static-list` policy. A trace
image the registries do not list is added to its registry (created if need be) with a
default size, so a trace from any cluster replays; give your registries and image sizes in a
scenario file for figures closer to your cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from imagesync.reference import InvalidReference, parse_reference
from simulator.scenario import (
    Scenario,
    load_scenario,
    parse_scenario,
    read_scenario_file,
)
from simulator.virtual.pods import PodSpec

DEFAULT_IMAGE_SIZE = 1_000_000_000  # compressed bytes of an image the scenario does not list
DISK_PER_COMPRESSED = 2.2  # unpacked size per compressed byte, a typical layer ratio
DEFAULT_BANDWIDTH = "1Gbps"


def load_cluster(name_or_path: str) -> tuple[Scenario, list[Any]]:
    """A shipped scenario by name, or a file (with optional `extends`); and its `staticList`."""
    path = Path(name_or_path)
    if not path.exists():
        return load_scenario(name_or_path), []
    data = read_scenario_file(path)
    static = list(data.pop("staticList", None) or [])
    return parse_scenario(data, path.stem), static


def with_trace_images(
    scenario: Scenario, pods: Sequence[PodSpec], size: int = DEFAULT_IMAGE_SIZE
) -> tuple[Scenario, list[str]]:
    """The scenario with every image of `pods` served; returns the images it had to add."""
    known = set(scenario.images())
    registries = [dict(r) for r in scenario.registries]
    by_host = {str(r["host"]): r for r in registries}
    added: list[str] = []
    for image in sorted({i for pod in pods for i in pod.images} - known):
        try:
            ref = parse_reference(image)
        except InvalidReference:
            continue  # the pull fails as on a real node (InvalidImageName)
        registry = by_host.get(ref.domain)
        if registry is None:
            registry = {"host": ref.domain, "bandwidth": DEFAULT_BANDWIDTH, "images": []}
            by_host[ref.domain] = registry
            registries.append(registry)
        entries: list[Mapping[str, Any]] = list(registry.get("images") or [])
        path = f"{ref.path}:{ref.tag or 'latest'}"
        entries.append(
            {
                "image": path,
                "compressed": size,
                "disk": int(size * DISK_PER_COMPRESSED),
                "archs": ["amd64", "arm64"],
            }
        )
        registry["images"] = entries
        added.append(image)
    if not added:
        return scenario, []
    return replace(scenario, registries=tuple(registries)), added
