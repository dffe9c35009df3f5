"""Render the kustomizations once per test session with the real `kubectl kustomize`."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.skips import skip_without

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = (
    "base",
    "overlays/cert-manager",
    "overlays/opt-in",
    "overlays/monitoring",
    "overlays/startup-taint",
    "overlays/admission-policy",
)


@functools.cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        skip_without("kubectl", "run scripts/ensure-kubectl (make install does)")
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(target: str) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k manifests/<target>` would apply (a fresh copy)."""
    import copy

    return copy.deepcopy(list(_render(target)))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`; else a generated name it is the prefix of)."""
    of_kind = [o for o in objects if o["kind"] == kind]
    found = [o for o in of_kind if name is None or o["metadata"]["name"] == name] or [
        o for o in of_kind if name is not None and o["metadata"]["name"].startswith(name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
