"""The shipped configuration is valid and reaches both components through file and environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync import config as config_module
from imagesync import names
from tests.manifests.reading import (
    NS,
    OUR_IMAGE,
    container,
    env_of,
    load_shipped_config,
    pod_spec,
    workloads,
)
from tests.manifests.render import ROOT, find, render


def test_environment_variables_are_ones_the_code_reads(base: list[dict[str, Any]]) -> None:
    import dataclasses

    source = "".join(
        p.read_text()
        for d in ("webhook", "prefetcher", "imagesync", "certs")
        for p in (ROOT / d).glob("*.py")
    )
    known = {config_module.CONFIG_ENV, "POD_NAMESPACE"} | {
        config_module.env_name(f.name) for f in dataclasses.fields(config_module.Config)
    }
    for workload in workloads(base):
        for c in pod_spec(workload)["containers"]:
            for name in env_of(c):
                assert name in known or f'"{name}"' in source, f"{name} is read by no code"


@pytest.mark.parametrize("name", ["image-sync-webhook", "image-sync-prefetcher"])
def test_config_file_and_namespace_reach_the_components(
    base: list[dict[str, Any]], name: str
) -> None:
    deployment = find(base, "Deployment", name)
    c = container(base, "Deployment", name)
    env = env_of(c)
    [mount] = [m for m in c["volumeMounts"] if m["name"] == "config"]
    assert env[config_module.CONFIG_ENV]["value"] == f"{mount['mountPath']}/config.yaml"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "config"]
    configmap = find(base, "ConfigMap", "image-sync-config")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "config.yaml" in configmap["data"]


def test_shipped_config_is_valid(base: list[dict[str, Any]], tmp_path: Path) -> None:
    config = load_shipped_config(base, tmp_path)
    assert config.mode == "opt-out"
    prefixes = {str(p) for p in config.registries}
    raw = yaml.safe_load(find(base, "ConfigMap", "image-sync-config")["data"]["config.yaml"])
    assert raw["registries"] == ["harbor.example.internal", "nvcr.io/nvidia"]
    assert len(prefixes) == 2
    assert config.namespace == NS
    assert config.sweep_interval == 1800


def test_config_names_the_shipped_priority_class_and_image(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = load_shipped_config(base, tmp_path)
    priority = find(base, "PriorityClass")
    assert priority["metadata"]["name"] == names.KEEPER_PRIORITY_CLASS
    assert (
        getattr(config, "keeper_priority_class", names.KEEPER_PRIORITY_CLASS)
        == names.KEEPER_PRIORITY_CLASS
    )
    assert getattr(config, "tools_image", OUR_IMAGE) == OUR_IMAGE
    for workload in workloads(base):
        for c in pod_spec(workload)["containers"]:
            assert c["image"] == OUR_IMAGE


def test_opt_in_overlay_changes_only_the_mode(tmp_path: Path) -> None:
    base, opt_in = render("base"), render("overlays/opt-in")
    assert load_shipped_config(opt_in, tmp_path).mode == "opt-in"
    base_config = yaml.safe_load(
        find(base, "ConfigMap", "image-sync-config")["data"]["config.yaml"]
    )
    opt_config = yaml.safe_load(
        find(opt_in, "ConfigMap", "image-sync-config")["data"]["config.yaml"]
    )
    assert {**opt_config, "mode": "opt-out"} == base_config

    def without_config(objects: list[dict[str, Any]]) -> str:
        name = find(objects, "ConfigMap", "image-sync-config")["metadata"]["name"]
        kept = [o for o in objects if o["kind"] != "ConfigMap"]
        return yaml.safe_dump(kept).replace(name, "CONFIGMAP")

    assert without_config(base) == without_config(opt_in)
