"""The ValidatingAdmissionPolicy of the pod namespace says what the webhook's guard says.

The real control plane of the tests (Kubernetes 1.25) has no ValidatingAdmissionPolicy, so
its CEL is evaluated here with cel-python against the same pods the guard is tested with:
image-sync's own puller and keeper, and one breach of each rule. Its schema is checked for
1.31 and newer by test_validate.py (the admission-policy overlay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel

from imagesync.names import POD_NAMESPACE_DEFAULT
from imagesync.podguard import RULES, refusals
from tests.manifests.render import all_of, find, render
from tests.podguard_cases import BREACHES, Pod, breached, own_pods

OVERLAY = "overlays/admission-policy"


def policy() -> dict[str, Any]:
    return find(render(OVERLAY), "ValidatingAdmissionPolicy", "image-sync-pod-guard")


def policy_refusals(pod: Pod) -> list[str]:
    """The messages of the policy's validations that do not hold for `pod`, as the API
    server would evaluate them (`object` is the pod being created)."""
    env = celpy.Environment()
    activation = {"object": json_to_cel(pod)}
    failed = []
    for validation in policy()["spec"]["validations"]:
        result = env.program(env.compile(validation["expression"])).evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), (validation["message"], result)
        if not result:
            failed.append(validation["message"])
    return failed


def test_one_validation_per_rule_with_its_message() -> None:
    validations = policy()["spec"]["validations"]
    assert [v["message"] for v in validations] == [rule.message for rule in RULES]
    assert all(v["reason"] == "Forbidden" for v in validations)


def test_the_prefetchers_own_pods_pass_the_policy() -> None:
    for pod in own_pods():
        assert policy_refusals(pod) == []


@pytest.mark.parametrize(("what", "rule", "make"), BREACHES, ids=[b[0] for b in BREACHES])
def test_the_policy_and_the_webhook_refuse_alike(
    what: str, rule: int, make: Callable[[Pod], None]
) -> None:
    for pod in own_pods():
        bad = breached(pod, make)
        assert policy_refusals(bad) == refusals(bad) == [RULES[rule].message], what


def test_it_guards_the_pod_namespace_in_place_of_the_webhook() -> None:
    spec = policy()["spec"]
    assert spec["failurePolicy"] == "Fail"
    constraints = spec["matchConstraints"]
    selector = {"kubernetes.io/metadata.name": POD_NAMESPACE_DEFAULT}
    assert constraints["namespaceSelector"] == {"matchLabels": selector}
    assert constraints["resourceRules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    ]
    objects = render(OVERLAY)
    binding = find(objects, "ValidatingAdmissionPolicyBinding", "image-sync-pod-guard")
    assert binding["spec"] == {"policyName": "image-sync-pod-guard", "validationActions": ["Deny"]}
    assert all_of(objects, "ValidatingWebhookConfiguration") == []
    # The base guards the same pods with the webhook.
    [hook] = find(render("base"), "ValidatingWebhookConfiguration", "image-sync-pod-guard")[
        "webhooks"
    ]
    assert hook["namespaceSelector"] == {"matchLabels": selector}
    assert hook["failurePolicy"] == "Fail" and hook["clientConfig"]["service"]["path"] == (
        "/validate-pods"
    )
    assert [r["operations"] for r in hook["rules"]] == [["CREATE"]]
