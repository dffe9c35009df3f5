"""Every kind of API call image-sync and its tests make (the webhook's learning, the
prefetcher, the certificate job, the simulated kubelets and scheduler attached to a cluster),
with the errors they rely on, as one sequence sent to a server."""

from __future__ import annotations

import time
from typing import Any

from imagesync import names
from tests.realk8s.differential import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Recorder

CACHED_IMAGES = f"/apis/{names.GROUP}/v1alpha1/{names.CACHED_IMAGE_PLURAL}"
IMAGE = "harbor.example.internal/library/app:1.0"
NOW = "2026-01-01T00:00:00Z"
NOW_MICRO = "2026-01-01T00:00:00.000000Z"


def wait_default_service_account(server: Recorder, namespace: str) -> None:
    """The ServiceAccount admission plugin refuses pods until the namespace's `default`
    ServiceAccount exists (the real server's controller creates it a moment after)."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.send("", "GET", path, record=False).get("kind") == "ServiceAccount":
            return
        time.sleep(0.2)
    raise AssertionError(f"no default ServiceAccount in {namespace}")


def _class_unknown(status: int, body: Any) -> bool:
    return status == 403 and "no PriorityClass with name" in str((body or {}).get("message"))


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "probe"}},
        # No scheduler of the cluster picks it up: the calls bind it themselves.
        "spec": {
            "containers": [{"name": "main", "image": IMAGE}],
            "schedulerName": "differential-none",
            **spec,
        },
    }


def exercise(server: Recorder, namespace: str) -> None:
    """The whole sequence in `namespace` (created here) and on cluster-scoped objects named
    after it."""
    send = server.send
    ns = f"/api/v1/namespaces/{namespace}"
    send("namespace create", "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    send("namespace get", "GET", ns)
    wait_default_service_account(server, namespace)
    start = send("configmap list (for the watch)", "GET", f"{ns}/configmaps", record=False)
    since = start["metadata"]["resourceVersion"]
    _configmaps(server, ns)
    _pods_and_nodes(server, namespace, ns)
    _events_and_leases(server, namespace, ns)
    _custom_resources(server, namespace)
    _webhook_configuration(server, namespace)
    _secrets(server, ns)
    send(
        "configmap watch from a version",
        "GET",
        f"{ns}/configmaps",
        query={"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"},
    )
    # A finalizer holds the namespace in Terminating on both servers, whatever their speed.
    held = {"metadata": {"name": "held", "finalizers": ["image-sync.io/test"]}}
    send("configmap create with finalizer", "POST", f"{ns}/configmaps", held)
    send("namespace delete", "DELETE", ns)
    send("pod create in a terminating namespace", "POST", f"{ns}/pods", pod("late"))
    send("configmap finalizer removed", "PATCH", f"{ns}/configmaps/held",
         {"metadata": {"finalizers": None}}, content_type=MERGE_PATCH, record=False)  # fmt: skip


def _configmaps(server: Recorder, ns: str) -> None:
    send = server.send
    cms = f"{ns}/configmaps"
    probe = {"metadata": {"name": "probe", "labels": {"keep": "1"}}, "data": {"a": "1"}}
    created = send("configmap create", "POST", cms, probe)
    send("configmap create again", "POST", cms, probe)
    send(
        "configmap create dry run",
        "POST",
        cms,
        {"metadata": {"name": "dry"}},
        query={"dryRun": "All"},
    )
    send("configmap get dry run", "GET", f"{cms}/dry")
    send("configmap get missing", "GET", f"{cms}/missing")
    send("configmap create invalid name", "POST", cms, {"metadata": {"name": "Not_Valid"}})
    send(
        "configmap patch merge",
        "PATCH",
        f"{cms}/probe",
        {"metadata": {"labels": {"merged": "1"}}},
        content_type=MERGE_PATCH,
    )
    send(
        "configmap patch strategic",
        "PATCH",
        f"{cms}/probe",
        {"data": {"b": "2"}},
        content_type=STRATEGIC_PATCH,
    )
    send(
        "configmap patch json replace missing key",
        "PATCH",
        f"{cms}/probe",
        [{"op": "replace", "path": "/metadata/labels/added", "value": "v"}],
        content_type=JSON_PATCH,
    )
    send(
        "configmap patch json failed test",
        "PATCH",
        f"{cms}/probe",
        [{"op": "test", "path": "/data/a", "value": "nope"}],
        content_type=JSON_PATCH,
    )
    send(
        "configmap patch unsupported type",
        "PATCH",
        f"{cms}/probe",
        {"data": {}},
        content_type="application/x-unknown",
    )
    stale = {**created, "data": {"a": "stale"}}
    send("configmap update stale", "PUT", f"{cms}/probe", stale)
    current = send("configmap get", "GET", f"{cms}/probe")
    send("configmap update", "PUT", f"{cms}/probe", {**current, "data": {"a": "new"}})
    send("configmap create second", "POST", cms, {"metadata": {"name": "second"}})
    send("configmap list by label", "GET", cms, query={"labelSelector": "keep=1"})
    send("configmap list page", "GET", cms, query={"limit": "1"})
    send("configmap list bad field selector", "GET", cms, query={"fieldSelector": "data.a=1"})
    send(
        "configmap delete wrong uid",
        "DELETE",
        f"{cms}/probe",
        {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )
    send(
        "configmap delete",
        "DELETE",
        f"{cms}/probe",
        {"preconditions": {"uid": created["metadata"]["uid"]}},
    )
    send("configmap delete missing", "DELETE", f"{cms}/probe")


def _pods_and_nodes(server: Recorder, namespace: str, ns: str) -> None:
    send = server.send
    node = f"{namespace}-node"
    # The taints first: they replace the not-ready taint the real server adds at creation,
    # before the node-lifecycle controller (on the real server) acts on the node.
    send(
        "node create",
        "POST",
        "/api/v1/nodes",
        {"metadata": {"name": node, "labels": {"pool": "probe"}}},
    )
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "ready",
        "lastHeartbeatTime": NOW,
        "lastTransitionTime": NOW,
    }
    send(
        "node patch taints",
        "PATCH",
        f"/api/v1/nodes/{node}",
        {"spec": {"taints": [{"key": "probe", "value": "x", "effect": "NoSchedule"}]}},
        content_type=MERGE_PATCH,
    )
    send(
        "node status patch",
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        {
            "status": {
                "conditions": [ready],
                "capacity": {"cpu": "4", "pods": "110"},
                "allocatable": {"cpu": "4", "pods": "110"},
            }
        },
        content_type=MERGE_PATCH,
    )
    send("node get", "GET", f"/api/v1/nodes/{node}")
    send("node list by label", "GET", "/api/v1/nodes", query={"labelSelector": "pool=probe"})

    pods = f"{ns}/pods"
    since = send("pod list (for the watch)", "GET", pods, record=False)["metadata"][
        "resourceVersion"
    ]
    created = send("pod create", "POST", pods, pod("web", tolerations=[{"operator": "Exists"}]))
    send(
        "pod create without containers",
        "POST",
        pods,
        {"metadata": {"name": "empty"}, "spec": {"containers": []}},
    )
    bad_policy = pod("bad-policy")
    bad_policy["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    send("pod create unknown pull policy", "POST", pods, bad_policy)
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    send("pod binding", "POST", f"{pods}/web/binding", binding)
    send("pod binding again", "POST", f"{pods}/web/binding", binding)
    running = {
        "phase": "Running",
        "startTime": NOW,
        "conditions": [
            {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": NOW}
        ],
        "containerStatuses": [
            {
                "name": "main",
                "image": IMAGE,
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": NOW}},
            }
        ],
    }
    send(
        "pod status patch",
        "PATCH",
        f"{pods}/web/status",
        {"status": running},
        content_type=MERGE_PATCH,
    )
    send(
        "pod patch annotation",
        "PATCH",
        f"{pods}/web",
        {"metadata": {"annotations": {"probe": "1"}}},
        content_type=MERGE_PATCH,
    )
    send(
        "pod patch strategic image",
        "PATCH",
        f"{pods}/web",
        {"spec": {"containers": [{"name": "main", "image": f"{IMAGE}-new"}]}},
        content_type=STRATEGIC_PATCH,
    )
    current = send("pod get", "GET", f"{pods}/web")
    renamed = {**current, "spec": {**current["spec"], "restartPolicy": "Never"}}
    send("pod update immutable field", "PUT", f"{pods}/web", renamed)
    send("pod list on node", "GET", pods, query={"fieldSelector": f"spec.nodeName={node}"})
    send(
        "pod list starting",
        "GET",
        "/api/v1/pods",
        query={
            "fieldSelector": "status.phase=Pending,spec.nodeName!=",
            "labelSelector": f"{names.LABEL_MANAGED_BY}!={names.MANAGED_BY},app=probe",
        },
    )
    send(
        "pod delete wrong uid",
        "DELETE",
        f"{pods}/web",
        {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )
    send("pod delete graceful", "DELETE", f"{pods}/web", {"gracePeriodSeconds": 30})
    send("pod get terminating", "GET", f"{pods}/web")
    send(
        "pod delete confirmed",
        "DELETE",
        f"{pods}/web",
        {"gracePeriodSeconds": 0, "preconditions": {"uid": created["metadata"]["uid"]}},
    )
    send("pod get deleted", "GET", f"{pods}/web")
    send("pod create unbound", "POST", pods, pod("unbound"))
    send("pod delete unbound", "DELETE", f"{pods}/unbound")
    send("pod create without token", "POST", pods,
         pod("no-token", automountServiceAccountToken=False))  # fmt: skip
    send("pod create missing priority class", "POST", pods,
         pod("no-class", priorityClassName=f"{namespace}-missing"))  # fmt: skip
    priority = "/apis/scheduling.k8s.io/v1/priorityclasses"
    send("priorityclass create", "POST", priority,
         {"metadata": {"name": f"{namespace}-high"}, "value": 1000})  # fmt: skip
    # The Priority admission plugin reads classes from an informer: a class created a moment
    # ago can still be unknown to it ("no PriorityClass with name ... was found", 403).
    send("pod create with priority class", "POST", pods,
         pod("classy", priorityClassName=f"{namespace}-high"), lagging=_class_unknown)  # fmt: skip
    send("priorityclass delete", "DELETE", f"{priority}/{namespace}-high")
    # What a kubelet watches: its node's pods; a pod bound to it is ADDED, one gone DELETED.
    send("pod watch on the node from a version", "GET", pods,
         query={"watch": "true", "resourceVersion": since, "timeoutSeconds": "1",
                "fieldSelector": f"spec.nodeName={node}"})  # fmt: skip
    send("node delete", "DELETE", f"/api/v1/nodes/{node}")


def _events_and_leases(server: Recorder, namespace: str, ns: str) -> None:
    send = server.send
    event = {
        "metadata": {"name": "probe.1"},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "web"},
        "reason": "Pulled",
        "message": "pulled",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node"},
        "count": 1,
        "firstTimestamp": NOW,
        "lastTimestamp": NOW,
    }
    send("event create", "POST", f"{ns}/events", event)
    send(
        "event list by object",
        "GET",
        f"{ns}/events",
        query={"fieldSelector": "involvedObject.name=web"},
    )
    new_event = {
        "metadata": {"name": "probe.2"},
        "eventTime": NOW_MICRO,
        "reportingController": "image-sync.io/prefetcher",
        "reportingInstance": "a",
        "action": "Pull",
        "reason": "Pulled",
        "type": "Normal",
        "note": "pulled",
        "regarding": {"kind": "Pod", "namespace": namespace, "name": "web"},
    }
    send(
        "events.k8s.io event create",
        "POST",
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        new_event,
    )

    leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    lease = {
        "metadata": {"name": "holder"},
        "spec": {
            "holderIdentity": "a",
            "leaseDurationSeconds": 15,
            "acquireTime": NOW_MICRO,
            "renewTime": NOW_MICRO,
            "leaseTransitions": 0,
        },
    }
    created = send("lease create", "POST", leases, lease)
    send("lease create again", "POST", leases, lease)
    send(
        "lease update stale",
        "PUT",
        f"{leases}/holder",
        {**created, "metadata": {**created["metadata"], "resourceVersion": "1"}},
    )
    send(
        "lease update",
        "PUT",
        f"{leases}/holder",
        {**created, "spec": {**created["spec"], "holderIdentity": "b"}},
    )
    send(
        "lease patch renew",
        "PATCH",
        f"{leases}/holder",
        {"spec": {"renewTime": "2026-01-01T00:00:10.000000Z"}},
        content_type=MERGE_PATCH,
    )
    send("lease get", "GET", f"{leases}/holder")


def _custom_resources(server: Recorder, namespace: str) -> None:
    send = server.send
    name = f"{namespace}-image"
    image = {
        "apiVersion": names.API_VERSION,
        "kind": names.CACHED_IMAGE_KIND,
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "source": names.SOURCE_LEARNED},
    }
    created = send("cachedimage create", "POST", CACHED_IMAGES, image)
    send("cachedimage create again", "POST", CACHED_IMAGES, image)
    wrong = {
        **image,
        "metadata": {"name": f"{name}-wrong"},
        "spec": {"image": 5, "source": "Learned"},
    }
    send("cachedimage create wrong type", "POST", CACHED_IMAGES, wrong)
    send(
        "cachedimage patch merge",
        "PATCH",
        f"{CACHED_IMAGES}/{name}",
        {"metadata": {"labels": {"probe": "1"}}},
        content_type=MERGE_PATCH,
    )
    send(
        "cachedimage patch strategic",
        "PATCH",
        f"{CACHED_IMAGES}/{name}",
        {"metadata": {"labels": {"probe": "2"}}},
        content_type=STRATEGIC_PATCH,
    )
    current = send("cachedimage get", "GET", f"{CACHED_IMAGES}/{name}")
    status = {"lastSeen": NOW, "useCount": 1}
    send(
        "cachedimage status update",
        "PUT",
        f"{CACHED_IMAGES}/{name}/status",
        {**current, "status": status},
    )
    send(
        "cachedimage status update stale",
        "PUT",
        f"{CACHED_IMAGES}/{name}/status",
        {**created, "status": status},
    )
    send(
        "cachedimage status patch",
        "PATCH",
        f"{CACHED_IMAGES}/{name}/status",
        {"status": {"nodesPresent": 1, "nodesWanted": 2}},
        content_type=MERGE_PATCH,
    )
    send("cachedimage list", "GET", CACHED_IMAGES, query={"labelSelector": "probe=2"})
    send("cachedimage delete", "DELETE", f"{CACHED_IMAGES}/{name}")
    send("cachedimage get deleted", "GET", f"{CACHED_IMAGES}/{name}")


def _webhook_configuration(server: Recorder, namespace: str) -> None:
    send = server.send
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    name = f"{namespace}-probe"
    configuration = {
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "probe.image-sync.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {"url": "https://127.0.0.1:9/mutate"},
                "objectSelector": {"matchLabels": {"never": "matches"}},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
            }
        ],
    }
    send("webhook configuration create", "POST", path, configuration)
    send(
        "webhook configuration patch caBundle",
        "PATCH",
        f"{path}/{name}",
        [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Y2E="}],
        content_type=JSON_PATCH,
    )
    send("webhook configuration delete", "DELETE", f"{path}/{name}")


def _secrets(server: Recorder, ns: str) -> None:
    """What `image-sync certs --apply` does with the serving certificate's Secret."""
    send = server.send
    secret = {
        "metadata": {"name": "tls"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E="},
    }
    send("secret create", "POST", f"{ns}/secrets", secret)
    send(
        "secret create invalid type data",
        "POST",
        f"{ns}/secrets",
        {"metadata": {"name": "broken"}, "type": "kubernetes.io/tls", "data": {}},
    )
    current = send("secret get", "GET", f"{ns}/secrets/tls")
    send(
        "secret replace",
        "PUT",
        f"{ns}/secrets/tls",
        {**current, "data": {**current["data"], "tls.crt": "bmV3"}},
    )
