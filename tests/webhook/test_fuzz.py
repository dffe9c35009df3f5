"""Random AdmissionReviews and references, POSTed to the real webhook (gunicorn over TLS,
learning on against the simulator's API server): only 200 or 400, never an internal error,
and a patch touches nothing but `imagePullPolicy` of containers whose image is managed."""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesync.config import load_config
from imagesync.matching import is_managed
from imagesync.names import ANNOTATION_REWRITTEN
from simulator.testing import running_apiserver
from tests.webhook.conftest import Tls, WebhookProcess, start_webhook
from tests.webhook.pods import DIGEST, HARBOR, REGISTRIES
from tests.webhook.test_learning import crd_body
from webhook.app import INTERNAL_ERROR_WARNING

PREFIXES = load_config(environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES}).registries
POLICY_PATH = re.compile(r"/spec/(initContainers|containers)/(\d+)/imagePullPolicy")


@pytest.fixture(scope="module")
def learning_webhook(
    tmp_path_factory: pytest.TempPathFactory, tls: Tls
) -> Iterator[WebhookProcess]:
    from kubernetes import client

    from simulator.testing import kube_client

    directory = tmp_path_factory.mktemp("fuzz")
    with running_apiserver() as server:
        api = kube_client(server)
        extensions: Any = client.ApiextensionsV1Api(api)
        extensions.create_custom_resource_definition(crd_body())
        api.close()
        kubeconfig = server.write_kubeconfig(directory / "kubeconfig")
        webhook = start_webhook(
            directory,
            tls,
            workers=1,
            kubeconfig=str(kubeconfig),
            env={"IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "200ms"},
        )
        yield webhook
        assert webhook.stop() == 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
valid_references = st.sampled_from(
    [
        f"{HARBOR}/team/api:1.4",
        f"{HARBOR}/team/api",
        f"{HARBOR}/team/api:latest",
        f"{HARBOR}/team/api:1.4@{DIGEST}",
        "nvcr.io/nvidia/pytorch:24.08-py3",
        "registry.corp.example:5000/ml/trainer:3",
        "busybox:1.36",
    ]
)
spoiled_references = st.one_of(
    st.builds(lambda ref, junk: ref + junk, valid_references, st.text(max_size=3)),
    st.builds(lambda junk, ref: junk + ref, st.text(max_size=3), valid_references),
    st.text(max_size=40),
    st.sampled_from(["x:tést", "x:日本", "x\n:1", f"{HARBOR}/a:1\n", f"{HARBOR}/a:" + "1" * 1100]),
    json_values,
)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` three times in four: most reviews must get far enough to be patched."""
    return st.integers(0, 3).flatmap(lambda n: rare if n == 0 else common)


references = mostly(valid_references, spoiled_references)
policies = mostly(st.sampled_from([None, "Always", "IfNotPresent", "Never"]), json_values)


@st.composite
def containers(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    out: dict[str, Any] = {"name": draw(st.text(max_size=6)), "image": draw(references)}
    policy = draw(policies)
    if policy is not None or draw(st.booleans()):
        out["imagePullPolicy"] = policy
    if draw(st.booleans()):
        out["resources"] = draw(
            st.one_of(json_values, st.just({"limits": {"nvidia.com/gpu": "1"}}))
        )
    return out


container_lists = mostly(st.lists(containers(), min_size=1, max_size=4), json_values)


@st.composite
def pods(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    metadata: dict[str, Any] = {"generateName": "app-", "namespace": draw(st.text(max_size=5))}
    for key, values in (
        (
            "annotations",
            st.one_of(
                st.dictionaries(
                    st.sampled_from(
                        ["image-sync.io/enabled", "image-sync.io/pull-policy", "other"]
                    ),
                    st.one_of(st.sampled_from(["true", "false", "keep"]), json_values),
                ),
                json_values,
            ),
        ),
        (
            "ownerReferences",
            mostly(
                st.just([{"kind": "ReplicaSet", "name": "r", "controller": True}]),
                st.one_of(json_values, st.just({"kind": "ReplicaSet", "name": "r"})),
            ),
        ),
    ):
        if draw(st.booleans()):
            metadata[key] = draw(values)
    spec: dict[str, Any] = {"containers": draw(container_lists)}
    for key in ("initContainers", "ephemeralContainers", "tolerations", "nodeSelector", "affinity"):
        if draw(st.booleans()):
            spec[key] = draw(container_lists if key.endswith("Containers") else json_values)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    """Mostly Pod CREATE reviews; some with a field spoiled; a few random JSON documents."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": draw(st.sampled_from(["default", "shop", ""])),
        "object": draw(pods()),
        "dryRun": draw(st.booleans()),
    }
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(sorted(request)))
        request[key] = draw(json_values)
    return review


ESCAPED_MARK = ANNOTATION_REWRITTEN.replace("~", "~0").replace("/", "~1")


def check_patch(sent: Any, patch: list[dict[str, Any]]) -> None:
    pod = sent["request"]["object"]
    policy_ops = [op for op in patch if not op["path"].startswith("/metadata/annotations")]
    marks = [op for op in patch if op["path"].startswith("/metadata/annotations")]
    # At most one more operation: the annotation naming the rewritten containers.
    assert len(marks) <= 1 and (not marks or policy_ops), patch
    for mark in marks:
        value = mark["value"] if mark["path"].endswith("/" + ESCAPED_MARK) else None
        if value is None:
            assert mark["path"] == "/metadata/annotations", mark
            value = mark["value"][ANNOTATION_REWRITTEN]
        assert value == ",".join(
            pod["spec"][m.group(1)][int(m.group(2))]["name"]
            for m in (POLICY_PATH.fullmatch(op["path"]) for op in policy_ops)
            if m
        ), mark
    for op in policy_ops:
        match = POLICY_PATH.fullmatch(op["path"])
        assert match, op
        assert op["op"] in ("add", "replace") and op["value"] == "IfNotPresent", op
        container = pod["spec"][match.group(1)][int(match.group(2))]
        image = container["image"]
        assert isinstance(image, str) and image.isascii(), image
        assert is_managed(image, PREFIXES) is not None, image
    after = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
    annotations = after["metadata"].get("annotations")
    if marks and isinstance(annotations, dict):
        annotations.pop(ANNOTATION_REWRITTEN, None)
        if not isinstance(pod["metadata"].get("annotations"), dict):
            # The mark replaced a missing or null annotations map: put back what was there.
            if "annotations" in pod["metadata"]:
                after["metadata"]["annotations"] = pod["metadata"]["annotations"]
            else:
                del after["metadata"]["annotations"]
    for section in ("initContainers", "containers"):
        for spec in (after["spec"], pod["spec"]):
            containers = spec.get(section)
            for container in containers if isinstance(containers, list) else []:
                if isinstance(container, dict):
                    container.pop("imagePullPolicy", None)
    assert after == pod, "the patch changed more than imagePullPolicy"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies())
def test_random_reviews_get_200_or_400_and_patches_touch_only_pull_policies(
    learning_webhook: WebhookProcess, body: Any
) -> None:
    sent = copy.deepcopy(body)
    answer = learning_webhook.post(None, raw=json.dumps(body).encode())
    assert answer.status_code in (200, 400), (answer.status_code, answer.text)
    if answer.status_code == 400:
        assert answer.json()["error"]
        return
    response = answer.json()["response"]
    assert response["uid"] == sent["request"]["uid"] and response["allowed"] is True
    assert INTERNAL_ERROR_WARNING not in response.get("warnings", []), sent
    if "patch" in response:
        check_patch(sent, json.loads(base64.b64decode(response["patch"])))


def test_the_fuzzed_webhook_is_alive_and_answered_no_review_with_an_internal_error(
    learning_webhook: WebhookProcess,
) -> None:
    assert learning_webhook.get("/healthz").status_code == 200
    assert learning_webhook.process.poll() is None
    exposition = learning_webhook.get("/metrics").text
    assert 'image_sync_webhook_requests_total{outcome="error"} 0.0' in exposition
    assert 'image_sync_webhook_requests_total{outcome="patched"} 0.0' not in exposition
    assert "Exception in worker process" not in learning_webhook.log()
