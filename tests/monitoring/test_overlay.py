"""The monitoring overlay: the base unchanged plus scrape configuration, rules and a dashboard."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from certs.names import service_dns_names
from imagesync import names
from tests.manifests.render import MANIFESTS, ROOT, all_of, find, render
from tests.monitoring.shipped import COMPONENT, DASHBOARD_CONFIGMAP, OVERLAY
from tests.skips import skip_without

RELEASE_LABEL = "release"


def added(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {(o["kind"], o["metadata"]["name"]) for o in render("base")}
    return [o for o in objects if (o["kind"], o["metadata"]["name"]) not in base]


def test_overlay_is_the_base_plus_monitoring_objects() -> None:
    objects = render(OVERLAY)
    assert Counter(o["kind"] for o in added(objects)) == {
        "ServiceMonitor": 2,
        "PrometheusRule": 1,
        "ConfigMap": 1,
    }
    base = render("base")
    kept = [o for o in objects if o in base]
    assert len(kept) == len(base), "the overlay leaves the base's objects as they are"


def test_service_monitors_scrape_each_component_metrics_port() -> None:
    objects = render(OVERLAY)
    monitors = {m["metadata"]["name"]: m for m in all_of(objects, "ServiceMonitor")}
    assert set(monitors) == {"image-sync-prefetcher", "image-sync-webhook"}
    for name, monitor in monitors.items():
        service = find(objects, "Service", name)
        selector = monitor["spec"]["selector"]["matchLabels"]
        matching = [
            s["metadata"]["name"]
            for s in all_of(objects, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert matching == [name]
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
        assert endpoint["path"] == "/metrics"


def test_webhook_is_scraped_over_tls_with_its_own_ca() -> None:
    objects = render(OVERLAY)
    [endpoint] = find(objects, "ServiceMonitor", "image-sync-webhook")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert tls["ca"]["secret"] == {"name": names.WEBHOOK_TLS_SECRET, "key": "ca.crt"}
    assert tls["serverName"] in service_dns_names(names.WEBHOOK_SERVICE, names.NAMESPACE_DEFAULT)
    assert "insecureSkipVerify" not in tls


def test_both_components_serve_metrics_where_scraped() -> None:
    from imagesync.config import Config
    from webhook.app import create_app

    routes = {rule.rule for rule in create_app(Config()).url_map.iter_rules()}
    assert "/metrics" in routes
    server = (ROOT / "prefetcher" / "server.py").read_text()
    assert re.search(r'path == "/metrics"', server)


def test_the_operator_and_grafana_find_the_objects() -> None:
    objects = render(OVERLAY)
    selected = all_of(objects, "ServiceMonitor") + all_of(objects, "PrometheusRule")
    releases = {o["metadata"]["labels"][RELEASE_LABEL] for o in selected}
    assert releases == {"kube-prometheus-stack"}, "one release label to patch"
    configmap = find(objects, "ConfigMap", DASHBOARD_CONFIGMAP)
    assert configmap["metadata"]["name"] == DASHBOARD_CONFIGMAP, "no hash suffix: a stable name"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def kustomize(directory: Path, kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """Render an admin's own kustomization (paths relative to `directory`)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        skip_without("kubectl", "run scripts/ensure-kubectl (make install does)")
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def test_the_component_adds_monitoring_to_another_overlay(tmp_path: Path) -> None:
    """An admin's own overlay: cert-manager certificates plus the monitoring component."""
    objects = kustomize(
        tmp_path,
        {
            "resources": [os.path.relpath(MANIFESTS / "overlays/cert-manager", tmp_path)],
            "components": [os.path.relpath(MANIFESTS / COMPONENT, tmp_path)],
        },
    )
    cert_manager = render("overlays/cert-manager")
    assert [o for o in objects if o in cert_manager] == cert_manager
    assert sorted(o["kind"] for o in objects if o not in cert_manager) == [
        "ConfigMap",
        "PrometheusRule",
        "ServiceMonitor",
        "ServiceMonitor",
    ]
    for obj in objects:
        # image-sync's own namespace, or the pod namespace of puller and keeper pods
        assert obj["metadata"].get("namespace", "image-sync") in ("image-sync", "image-sync-cache")


def test_the_readme_patches_change_a_duration_and_the_release_label(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Change a threshold or a duration") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", 10)]
    patches = yaml.safe_load(block)["patches"]
    objects = kustomize(
        tmp_path,
        {"resources": [os.path.relpath(MANIFESTS / OVERLAY, tmp_path)], "patches": patches},
    )
    rule = find(objects, "PrometheusRule")
    [coverage] = [
        r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "ImageSyncCoverageLow"
    ]
    assert coverage["for"] == "3h"
    for obj in [*all_of(objects, "ServiceMonitor"), rule]:
        assert obj["metadata"]["labels"][RELEASE_LABEL] == "monitoring"
