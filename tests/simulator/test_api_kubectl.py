"""kubectl against the simulated API server: discovery, apply, get, watch, patch, delete."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.simulator.conftest import Kubectl

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop, labels: {app: web}}
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  containers:
  - {name: main, image: "harbor.example.internal/library/app:1.0"}
  - {name: side, image: "busybox:1.36"}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: cachedimages.image-sync.io}
spec:
  group: image-sync.io
  scope: Cluster
  names: {plural: cachedimages, singular: cachedimage, kind: CachedImage, shortNames: [ci]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns:
    - {name: Image, type: string, jsonPath: .spec.image}
"""

CACHED = """
apiVersion: image-sync.io/v1alpha1
kind: CachedImage
metadata: {name: busybox}
spec: {image: "docker.io/library/busybox:1.36", source: Declared}
"""


def test_apply_get_and_reapply(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    assert "namespace/shop created" in out and "pod/web created" in out
    assert "unchanged" in kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    changed = kubectl.run("apply", "-f", "-", stdin=MANIFEST.replace("mode: fast", "mode: slow"))
    assert "configmap/settings configured" in changed
    data = json.loads(kubectl.run("-n", "shop", "get", "configmap", "settings", "-o", "json"))
    assert data["data"] == {"mode": "slow"}
    pod = yaml.safe_load(kubectl.run("-n", "shop", "get", "pod", "web", "-o", "yaml"))
    assert [c["imagePullPolicy"] for c in pod["spec"]["containers"]] == [
        "IfNotPresent",
        "IfNotPresent",
    ]
    table = kubectl.run("-n", "shop", "get", "pods")
    assert table.split("\n")[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "web" in table and "Pending" in table


def test_custom_resources_through_discovery(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    assert "cachedimages" in kubectl.run("api-resources", "--api-group=image-sync.io")
    kubectl.run("apply", "-f", "-", stdin=CACHED)
    table = kubectl.run("get", "ci")
    assert table.split("\n")[0].split() == ["NAME", "IMAGE", "AGE"]
    assert "docker.io/library/busybox:1.36" in table
    kubectl.run(
        "patch", "cachedimage", "busybox", "--type=merge", "-p", '{"spec":{"source":"Learned"}}'
    )
    assert kubectl.run("get", "ci", "busybox", "-o", "jsonpath={.spec.source}") == "Learned"


def test_typed_create_commands(kubectl: Kubectl) -> None:
    kubectl.run("create", "namespace", "tools")
    kubectl.run("-n", "tools", "create", "configmap", "c", "--from-literal=a=1")
    kubectl.run("-n", "tools", "create", "secret", "generic", "s", "--from-literal=p=q")
    kubectl.run("-n", "tools", "create", "serviceaccount", "robot")
    kubectl.run("create", "priorityclass", "batch-low", "--value=-5")
    assert kubectl.run("-n", "tools", "get", "cm", "c", "-o", "jsonpath={.data.a}") == "1"
    assert kubectl.run("-n", "tools", "get", "secret", "s", "-o", "jsonpath={.type}") == "Opaque"
    assert kubectl.run("get", "pc", "batch-low", "-o", "jsonpath={.value}") == "-5"
    assert kubectl.run("-n", "tools", "get", "sa", "-o", "name").split() == [
        "serviceaccount/default",
        "serviceaccount/robot",
    ]


def test_label_annotate_patch_and_selectors(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    kubectl.run("-n", "shop", "label", "pod", "web", "tier=front")
    kubectl.run("-n", "shop", "annotate", "pod", "web", "note=hello")
    kubectl.run(
        "-n",
        "shop",
        "patch",
        "pod",
        "web",
        "-p",
        '{"spec":{"containers":[{"name":"side","image":"busybox:1.37"}]}}',
    )
    kubectl.run(
        "-n",
        "shop",
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/j","value":"1"}]',
    )
    pod = json.loads(kubectl.run("-n", "shop", "get", "pod", "web", "-o", "json"))
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front", "j": "1"}
    assert pod["metadata"]["annotations"]["note"] == "hello"
    assert [c["image"] for c in pod["spec"]["containers"]] == [
        "harbor.example.internal/library/app:1.0",
        "busybox:1.37",
    ]
    assert (
        kubectl.run("-n", "shop", "get", "pods", "-l", "tier in (front,back)", "-o", "name")
        == "pod/web\n"
    )
    assert kubectl.run("-n", "shop", "get", "pods", "-l", "tier!=front", "-o", "name") == ""
    assert (
        kubectl.run(
            "get", "pods", "-A", "--field-selector", "metadata.namespace=shop", "-o", "name"
        )
        == "pod/web\n"
    )
    kubectl.run("-n", "shop", "label", "pod", "web", "tier-")
    assert (
        "tier"
        not in json.loads(kubectl.run("-n", "shop", "get", "pod", "web", "-o", "json"))["metadata"][
            "labels"
        ]
    )
    describe = kubectl.run("-n", "shop", "describe", "pod", "web")
    assert "harbor.example.internal/library/app:1.0" in describe and "note: hello" in describe


def test_node_cordon_and_describe(kubectl: Kubectl) -> None:
    node = (
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {kubernetes.io/hostname: n1}}\n"
    )
    kubectl.run("apply", "-f", "-", stdin=node)
    header = kubectl.run("get", "nodes").split("\n")[0].split()
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    kubectl.run("cordon", "n1")
    assert kubectl.run("get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}") == "true"
    assert "SchedulingDisabled" in kubectl.run("get", "nodes")
    kubectl.run("taint", "node", "n1", "gpu=yes:NoSchedule")
    assert "gpu=yes:NoSchedule" in kubectl.run("describe", "node", "n1")


def test_delete_and_not_found(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    assert 'pod "web" deleted' in kubectl.run("-n", "shop", "delete", "pod", "web")
    missing = kubectl.try_run("-n", "shop", "get", "pod", "web")
    assert missing.returncode != 0
    assert 'pods "web" not found' in missing.stderr


def test_get_watch_streams_changes(kubectl: Kubectl) -> None:
    kubectl.run("-n", "default", "create", "configmap", "first")
    proc = subprocess.Popen(
        [
            kubectl.binary,
            "--kubeconfig",
            str(kubectl.kubeconfig),
            "-n",
            "default",
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "configmap/first"
        kubectl.run("-n", "default", "create", "configmap", "second")
        assert proc.stdout.readline().strip() == "configmap/second"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_get_events_prints_like_kubectl(kubectl: Kubectl) -> None:
    event = """
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: default}
involvedObject: {kind: Pod, name: web, namespace: default}
reason: Pulling
message: Pulling image "busybox:1.36"
type: Normal
"""
    kubectl.run("create", "-f", "-", stdin=event)
    lines = kubectl.run("get", "events").splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split()[1:] == [
        "Normal",
        "Pulling",
        "pod/web",
        "Pulling",
        "image",
        '"busybox:1.36"',
    ]


def test_auth_reviews_allow_everything(kubectl: Kubectl) -> None:
    assert kubectl.run("auth", "can-i", "create", "pods", "-n", "image-sync") == "yes\n"
    assert "system:admin" in kubectl.run("auth", "whoami")
