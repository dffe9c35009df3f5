"""Installing as a user would, on a real kube-apiserver: every kustomization is accepted, and
the CachedImage schema is enforced by the server itself."""

from __future__ import annotations

import json

import pytest

from imagesync import names
from tests.manifests.render import KUSTOMIZATIONS, render
from tests.realk8s.components import get_json, kubectl
from tests.realk8s.conftest import NEEDS_IMAGE, Installed, manifest_text, own_objects

# Kinds of Kubernetes 1.30+ (the admission-policy overlay), which an older control plane does
# not serve: left out of its dry run; test_validate.py checks their schema for 1.31+.
NEWER_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def served_kinds(installed: Installed) -> set[str]:
    """The kinds the control plane serves (the last column of `kubectl api-resources`)."""
    listing = kubectl(installed.control_plane, "api-resources", "--no-headers").stdout
    return {line.split()[-1] for line in listing.splitlines() if line.strip()}


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_every_kustomization_passes_a_server_side_dry_run(
    installed: Installed, target: str
) -> None:
    objects = own_objects(render(target))
    unserved = NEWER_KINDS - served_kinds(installed)
    left_out = {o["kind"] for o in objects if o["kind"] in unserved}
    assert not left_out or target == "overlays/admission-policy", left_out
    objects = [o for o in objects if o["kind"] not in unserved]
    result = kubectl(
        installed.control_plane,
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=manifest_text(objects),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), result.stdout


def test_base_is_applied_except_what_runs_the_image(installed: Installed) -> None:
    plane = installed.control_plane
    applied = [o for o in installed.objects if o["kind"] not in NEEDS_IMAGE]
    assert {"Namespace", "CustomResourceDefinition", "ClusterRole", "Role", "PriorityClass",
            "Service", "PodDisruptionBudget", "MutatingWebhookConfiguration"} <= {
        o["kind"] for o in applied
    }  # fmt: skip
    for obj in applied:
        namespace = obj["metadata"].get("namespace")
        scope = ["-n", namespace] if namespace else []
        found = get_json(plane, obj["kind"].lower(), obj["metadata"]["name"], *scope)
        assert found["metadata"]["uid"], obj["metadata"]["name"]
    namespace = get_json(plane, "namespace", names.NAMESPACE_DEFAULT)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _cached_image(name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": names.API_VERSION,
            "kind": names.CACHED_IMAGE_KIND,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"image": 42, "source": "Declared"}, "spec.image"),
        ({"image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "source": "Guessed"}, "spec.source"),
        ({"image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "source": "Declared",
          "nodeSelector": {"pool": 7}}, "spec.nodeSelector.pool"),
        ({"source": "Declared"}, "spec.image"),
        ({"image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "source": "Learned",
          "profiles": [{"requests": {"nvidia.com/gpu": "lots"}}]},
         "spec.profiles[0].requests.nvidia.com/gpu"),
    ],
)  # fmt: skip
def test_the_server_refuses_a_cached_image_against_the_schema(
    installed: Installed, spec: dict[str, object], field: str
) -> None:
    result = kubectl(
        installed.control_plane,
        "create",
        "--validate=false",
        "-f",
        "-",
        stdin=_cached_image("schema-probe", spec),
        check=False,
    )
    assert result.returncode != 0, "the server accepted an invalid CachedImage"
    assert "is invalid" in result.stderr and f"{field}:" in result.stderr, result.stderr


def test_a_declared_cached_image_is_accepted(installed: Installed) -> None:
    plane = installed.control_plane
    body = _cached_image(
        "declared-probe",
        {
            "image": "harbor.example.internal/library/api:2.4.0",
            "source": names.SOURCE_DECLARED,
            "nodeSelector": {"pool": "cpu"},
        },
    )
    kubectl(plane, "create", "--dry-run=server", "-f", "-", stdin=body)


def test_learned_requests_are_kept_as_written(installed: Installed) -> None:
    """The optional `requests` of a profile survives the server's pruning, text or number."""
    requests = {"cpu": "500m", "memory": "256Gi", "nvidia.com/gpu": 8}
    body = _cached_image(
        "requests-probe",
        {
            "image": "nvcr.io/nvidia/pytorch:24.08-py3",
            "source": names.SOURCE_LEARNED,
            "profiles": [{"gpu": True, "namespace": "ml", "requests": requests}],
        },
    )
    result = kubectl(
        installed.control_plane, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=body
    )
    assert json.loads(result.stdout)["spec"]["profiles"][0]["requests"] == requests
