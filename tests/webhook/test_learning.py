"""Learning against the simulator's API server through the real `kubernetes` client."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from imagesync.cachedimage import object_name
from imagesync.config import load_config
from imagesync.mutation import decide
from imagesync.names import CACHED_IMAGE_PLURAL, GROUP, VERSION
from simulator.apiserver import ApiServer
from simulator.apiserver.faults import FaultRule
from simulator.testing import kube_client, running_apiserver
from tests.webhook.conftest import Tls, start_webhook
from tests.webhook.pods import HARBOR, REGISTRIES, deployment_pod, gpu_job_pod, review
from webhook.learning import sighting_for
from webhook.metrics import Metrics
from webhook.recorder import Recorder
from webhook.review import parse_review
from webhook.store import KubeCachedImageStore

CRD_MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "base" / "crd-cachedimages.yaml"
CONFIG = load_config(environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES})
PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"
FETCHER = f"{HARBOR}/tools/fetcher:2.1"


def crd_body() -> dict[str, Any]:
    """The CRD the manifests install, or a minimal one with the status subresource."""
    if CRD_MANIFEST.exists():
        for document in yaml.safe_load_all(CRD_MANIFEST.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                body: dict[str, Any] = document
                return body
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{CACHED_IMAGE_PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "plural": CACHED_IMAGE_PLURAL,
                "singular": "cachedimage",
                "kind": "CachedImage",
                "listKind": "CachedImageList",
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with running_apiserver() as server:
        api = kube_client(server)
        extensions: Any = client.ApiextensionsV1Api(api)
        extensions.create_custom_resource_definition(crd_body())
        api.close()
        yield server


def objects(server: ApiServer) -> dict[str, dict[str, Any]]:
    api = kube_client(server)
    try:
        listed: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
            GROUP, VERSION, CACHED_IMAGE_PLURAL
        )
    finally:
        api.close()
    return {item["spec"]["image"]: item for item in listed["items"]}


def make_recorder(
    server: ApiServer, metrics: Metrics | None = None, ticks: list[float] | None = None
) -> Recorder:
    clock = ticks if ticks is not None else [0.0]
    return Recorder(
        KubeCachedImageStore(kube_client(server)),
        metrics or Metrics(),
        flush_interval=3600,
        max_pending=1000,
        monotonic=lambda: clock[0],
    )


def see(recorder: Recorder, pod: dict[str, Any], **kwargs: Any) -> None:
    """What the webhook does for one review: parse, decide, record."""
    request = parse_review(json.dumps(review(pod, **kwargs)))
    assert request.obj is not None
    sighting = sighting_for(request, request.obj, decide(request.obj, CONFIG))
    if sighting is not None:
        recorder.record(sighting)


def test_learned_objects_have_spec_profiles_and_usage(apiserver: ApiServer) -> None:
    recorder = make_recorder(apiserver)
    see(recorder, gpu_job_pod())
    see(recorder, gpu_job_pod())
    see(recorder, deployment_pod(f"{HARBOR}/shop/frontend:2.3.1", namespace="shop"))
    see(recorder, deployment_pod("docker.io/library/busybox:1.36"))  # not managed
    see(recorder, deployment_pod(f"{HARBOR}/shop/dry:1"), dry_run=True)  # dry run: nothing
    result = recorder.flush()
    assert (result.written, result.failed) == (3, 0)
    assert recorder.reached_api

    stored = objects(apiserver)
    assert set(stored) == {PYTORCH, FETCHER, f"{HARBOR}/shop/frontend:2.3.1"}
    pytorch = stored[PYTORCH]
    assert pytorch["metadata"]["name"] == object_name(PYTORCH)
    assert pytorch["spec"]["source"] == "Learned"
    [profile] = pytorch["spec"]["profiles"]
    assert profile["gpu"] is True
    assert (profile["namespace"], profile["ownerKind"]) == ("training", "Job")
    assert profile["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert profile["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert profile["requiredNodeAffinity"][0]["matchExpressions"][0]["values"] == ["amd64"]
    # The init container (fetch-data) adds the memory the container does not ask for.
    assert profile["requests"] == {"cpu": "4", "memory": "128Mi", "nvidia.com/gpu": "1"}
    assert pytorch["status"]["useCount"] == 2
    assert sum(pytorch["status"]["dailyUses"].values()) == 2
    assert pytorch["status"]["lastSeen"] == profile["lastSeen"]
    [web] = stored[f"{HARBOR}/shop/frontend:2.3.1"]["spec"]["profiles"]
    assert (web["namespace"], web["ownerKind"], web["gpu"]) == ("shop", "ReplicaSet", False)

    # A later flush adds to the counts and the profiles instead of replacing them.
    see(recorder, gpu_job_pod(), namespace="research")
    recorder.flush()
    pytorch = objects(apiserver)[PYTORCH]
    assert pytorch["status"]["useCount"] == 3
    assert sorted(p["namespace"] for p in pytorch["spec"]["profiles"]) == ["research", "training"]


def sized_gpu_job_pod(gpus: int, init_memory: str) -> dict[str, Any]:
    """The GPU job with `gpus` GPUs (a limit alone), an init container asking for memory, and
    the overhead of a sandboxed RuntimeClass."""
    pod = gpu_job_pod()
    pod["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": str(gpus)},
        "requests": {"cpu": "8", "memory": "64Gi"},
    }
    pod["spec"]["initContainers"][0]["resources"] = {"requests": {"memory": init_memory}}
    pod["spec"]["overhead"] = {"cpu": "250m", "memory": "160Mi"}
    return pod


def test_learned_profiles_keep_the_smallest_effective_requests(apiserver: ApiServer) -> None:
    recorder = make_recorder(apiserver)
    see(recorder, sized_gpu_job_pod(8, init_memory="96Gi"))
    recorder.flush()
    [profile] = objects(apiserver)[PYTORCH]["spec"]["profiles"]
    # The init container's 96Gi outweighs the 64Gi of the container; the overhead comes on top.
    assert profile["requests"] == {"cpu": "8250m", "memory": "98464Mi", "nvidia.com/gpu": "8"}
    # A smaller pod of the same placement: the profile now stands for it too.
    see(recorder, sized_gpu_job_pod(2, init_memory="1Gi"))
    recorder.flush()
    [profile] = objects(apiserver)[PYTORCH]["spec"]["profiles"]
    assert profile["requests"] == {"cpu": "8250m", "memory": "65696Mi", "nvidia.com/gpu": "2"}


def test_two_recorders_flushing_at_once_lose_no_update(apiserver: ApiServer) -> None:
    """Two workers (or replicas) write the same objects concurrently: every use is counted."""
    rounds, per_round = 15, 3
    recorders = [make_recorder(apiserver), make_recorder(apiserver)]
    barrier = threading.Barrier(len(recorders))
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        recorder = recorders[index]
        try:
            for _ in range(rounds):
                for _ in range(per_round):
                    see(recorder, gpu_job_pod(), namespace=f"team-{index}")
                barrier.wait()  # both flush the same objects at the same moment
                result = recorder.flush()
                assert result.failed == 0, result.last_error
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(recorders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # (Whether the writes actually collided is up to the scheduler; the totals must hold either way.)
    stored = objects(apiserver)
    expected = len(recorders) * rounds * per_round
    for image in (PYTORCH, FETCHER):
        assert stored[image]["status"]["useCount"] == expected
        assert sum(stored[image]["status"]["dailyUses"].values()) == expected
        assert sorted(p["namespace"] for p in stored[image]["spec"]["profiles"]) == [
            "team-0",
            "team-1",
        ]


def test_declared_objects_keep_their_spec(apiserver: ApiServer) -> None:
    api = kube_client(apiserver)
    custom = client.CustomObjectsApi(api)
    declared_spec = {
        "image": PYTORCH,
        "source": "Declared",
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
    }
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        CACHED_IMAGE_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CachedImage",
            "metadata": {"name": object_name(PYTORCH)},
            "spec": declared_spec,
        },
    )
    # The prefetcher's status fields survive the learner's status writes.
    current: Any = custom.get_cluster_custom_object(
        GROUP, VERSION, CACHED_IMAGE_PLURAL, object_name(PYTORCH)
    )
    current["status"] = {"score": 4.5, "nodesWanted": 2, "nodesPresent": 1}
    custom.replace_cluster_custom_object_status(
        GROUP, VERSION, CACHED_IMAGE_PLURAL, object_name(PYTORCH), current
    )
    api.close()

    recorder = make_recorder(apiserver)
    see(recorder, gpu_job_pod())
    assert recorder.flush().failed == 0
    stored = objects(apiserver)[PYTORCH]
    assert stored["spec"] == declared_spec
    assert stored["status"]["useCount"] == 1
    assert (
        stored["status"]["score"],
        stored["status"]["nodesWanted"],
        stored["status"]["nodesPresent"],
    ) == (4.5, 2, 1)


def test_api_errors_are_counted_retried_and_never_raised(apiserver: ApiServer) -> None:
    metrics = Metrics()
    ticks = [0.0]
    recorder = make_recorder(apiserver, metrics, ticks)
    apiserver.add_fault(FaultRule(path="cachedimages", status=503))
    see(recorder, gpu_job_pod())
    result = recorder.flush()
    # Each image fails on its own; nothing was written, so the uses go back into the buffer.
    assert (result.written, result.failed, result.requeued) == (0, 2, 2)
    assert "503" in result.last_error
    assert metrics.flush_errors.labels(reason="server_error")._value.get() == 2
    see(recorder, gpu_job_pod())  # requests keep recording while the API fails

    apiserver.clear_faults()
    ticks[0] += 3600  # past each image's backoff
    assert recorder.flush().written == 2
    assert objects(apiserver)[PYTORCH]["status"]["useCount"] == 2


def test_unreachable_api_server(apiserver: ApiServer) -> None:
    from kubernetes.client import Configuration

    configuration = Configuration()
    with running_apiserver() as gone:
        configuration.host = gone.url  # a port nothing listens on once it has stopped
    configuration.retries = 0
    metrics = Metrics()
    recorder = Recorder(
        KubeCachedImageStore(client.ApiClient(configuration), request_timeout=(1.0, 1.0)),
        metrics,
        flush_interval=3600,
        max_pending=10,
    )
    see(recorder, gpu_job_pod())
    result = recorder.flush()
    assert (result.written, result.failed, result.aborted) == (0, 2, False)
    assert result.last_error.startswith("unreachable")
    assert metrics.flush_errors.labels(reason="unreachable")._value.get() == 2
    assert not recorder.reached_api


def test_webhook_learns_through_gunicorn_and_flushes_on_shutdown(
    apiserver: ApiServer, tmp_path: Path, tls: Tls
) -> None:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    # Flushes only at shutdown: the test does not depend on the flusher's timing.
    server = start_webhook(
        tmp_path,
        tls,
        workers=2,
        kubeconfig=str(kubeconfig),
        env={"IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "1h"},
    )
    try:
        assert server.get("/readyz").json()["learning"] == "on"
        for _ in range(5):
            assert server.post(review(gpu_job_pod())).status_code == 200
        server.post(review(deployment_pod(f"{HARBOR}/shop/dry:1", "Always"), dry_run=True))
        server.post(
            review(
                deployment_pod(
                    f"{HARBOR}/shop/out:1", "Always", annotations={"image-sync.io/enabled": "false"}
                )
            )
        )
        kept = server.post(
            review(
                deployment_pod(
                    f"{HARBOR}/shop/kept:1",
                    "Always",
                    annotations={"image-sync.io/pull-policy": "keep"},
                )
            )
        )
        assert "patch" not in kept.json()["response"]
    finally:
        assert server.stop() == 0
    stored = objects(apiserver)
    assert set(stored) == {PYTORCH, FETCHER, f"{HARBOR}/shop/kept:1"}
    assert stored[PYTORCH]["status"]["useCount"] == 5
    assert "LEARNING IS OFF" not in server.log()


def test_a_pod_the_learner_cannot_read_is_still_patched(
    apiserver: ApiServer, tmp_path: Path, tls: Tls
) -> None:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    server = start_webhook(
        tmp_path,
        tls,
        workers=1,
        kubeconfig=str(kubeconfig),
        env={"IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "1h"},
    )
    try:
        odd = deployment_pod(f"{HARBOR}/shop/odd:1", "Always")
        odd["metadata"]["ownerReferences"] = {"kind": "ReplicaSet", "name": "odd-1"}
        answer = server.post(review(odd)).json()["response"]
        assert answer.get("patchType") == "JSONPatch", answer
        assert "warnings" not in answer
        exposition = server.get("/metrics").text
        assert 'image_sync_webhook_requests_total{outcome="patched"} 1.0' in exposition
        assert "image_sync_webhook_learn_errors_total 1.0" in exposition
    finally:
        assert server.stop() == 0


def webhook_configuration(tls: Tls) -> dict[str, Any]:
    """As the manifests install it: the Service image-sync/image-sync-webhook, path /mutate."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "image-sync"},
        "webhooks": [
            {
                "name": "pods.image-sync.io",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "service": {
                        "name": "image-sync-webhook",
                        "namespace": "image-sync",
                        "path": "/mutate",
                        "port": 443,
                    },
                    "caBundle": base64.b64encode(tls.ca.cert_pem).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": "Ignore",
                "timeoutSeconds": 10,  # generous: the machine running the tests may be busy
                "sideEffects": "NoneOnDryRun",
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }


def test_api_server_calls_the_webhook_pods_are_mutated_and_learned(
    apiserver: ApiServer, tmp_path: Path, tls: Tls
) -> None:
    """The whole path: a Pod created through the API server, which calls the webhook over TLS."""
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    server = start_webhook(
        tmp_path,
        tls,
        workers=2,
        kubeconfig=str(kubeconfig),
        env={"IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "1h"},
    )
    api = kube_client(apiserver)
    try:
        apiserver.map_service("image-sync", "image-sync-webhook", "127.0.0.1", server.port)
        registration: Any = client.AdmissionregistrationV1Api(api)
        registration.create_mutating_webhook_configuration(webhook_configuration(tls))
        core: Any = client.CoreV1Api(api)

        def create(pod: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            pod = {**pod, "metadata": {**pod["metadata"], "namespace": "default"}}
            created: dict[str, Any] = api.sanitize_for_serialization(
                core.create_namespaced_pod("default", pod, **kwargs)
            )
            return created

        job = create(gpu_job_pod())
        assert job["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        assert job["spec"]["initContainers"][0]["imagePullPolicy"] == "IfNotPresent"
        latest = deployment_pod(f"{HARBOR}/shop/nightly", None)
        # The API server defaults an untagged image to Always before admission; left alone.
        assert create(latest)["spec"]["containers"][0]["imagePullPolicy"] == "Always"
        foreign = create(deployment_pod("docker.io/library/busybox:1.36", "Always"))
        assert foreign["spec"]["containers"][0]["imagePullPolicy"] == "Always"
        dry = create(deployment_pod(f"{HARBOR}/shop/dry:1", "Always"), dry_run="All")
        assert dry["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    finally:
        api.close()
        assert server.stop() == 0
    stored = objects(apiserver)
    assert set(stored) == {PYTORCH, FETCHER, f"{HARBOR}/shop/nightly:latest"}
    [profile] = stored[PYTORCH]["spec"]["profiles"]
    assert (profile["namespace"], profile["ownerKind"], profile["gpu"]) == ("default", "Job", True)
    assert stored[PYTORCH]["status"]["useCount"] == 1
