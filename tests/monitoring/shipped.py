"""What the monitoring overlay ships, read from the rendered kustomization (as `kubectl apply -k` would)."""

from __future__ import annotations

import json
from typing import Any

from tests.manifests.render import find, render

OVERLAY = "overlays/monitoring"
COMPONENT = "components/monitoring"
DASHBOARD_CONFIGMAP = "image-sync-dashboard"
DASHBOARD_FILE = "image-sync-dashboard.json"


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule's groups: a Prometheus rule file's content."""
    groups: list[dict[str, Any]] = find(render(OVERLAY), "PrometheusRule")["spec"]["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    configmap = find(render(OVERLAY), "ConfigMap", DASHBOARD_CONFIGMAP)
    result: dict[str, Any] = json.loads(configmap["data"][DASHBOARD_FILE])
    return result


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included (rows themselves left out)."""
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels") or [])
        else:
            out.append(panel)
    return out


def queries() -> dict[str, str]:
    """Where → PromQL, for every alert and every panel target."""
    out = {f"alert {a['alert']}": str(a["expr"]) for a in alerts()}
    for panel in panels():
        for target in panel.get("targets") or []:
            out[f"panel {panel['title']!r} {target['refId']}"] = str(target["expr"])
    return out
