"""Workload templates → images and placement: each kind, custom kinds, opt-out, learning writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imagesync.cachedimage import object_name, profile_key
from imagesync.config import ConfigError, load_config
from imagesync.templates import BUILTIN_KINDS, TemplateKind, parse_template_kind, pod_templates
from prefetcher.learning import learn_writes
from prefetcher.workloads import (
    parent_link,
    running_pod,
    slim_pod,
    unschedulable_pod,
    workload,
)
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, CUDA, PYTORCH, config

KINDS = {k.kind: k for k in BUILTIN_KINDS}
PYTORCH_JOB = TemplateKind(
    "kubeflow.org/v1", "PyTorchJob", "pytorchjobs", ("spec.pytorchReplicaSpecs.*.template",)
)
CFG = config(
    registries=load_config(
        environ={"IMAGE_SYNC_REGISTRIES": "harbor.example.internal,nvcr.io/nvidia"}
    ).registries
)


def pod_template(*images: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", None)
    template: dict[str, Any] = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
            **spec,
        },
    }
    if annotations:
        template["metadata"]["annotations"] = annotations
    return template


def obj(kind: str, spec: dict[str, Any], *, name: str = "w", **meta: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "team", **meta},
        "spec": spec,
    }


GPU_SPEC = {
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
}


@pytest.mark.parametrize(
    ("kind", "spec", "replicas", "owner_kind"),
    [
        ("Deployment", {"replicas": 3, "template": pod_template(APP)}, 3, "ReplicaSet"),
        ("StatefulSet", {"replicas": 2, "template": pod_template(APP)}, 2, "StatefulSet"),
        ("DaemonSet", {"template": pod_template(APP)}, None, "DaemonSet"),
        ("ReplicaSet", {"template": pod_template(APP)}, 1, "ReplicaSet"),
        ("Job", {"parallelism": 4, "template": pod_template(APP)}, 4, "Job"),
        (
            "CronJob",
            {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": pod_template(APP)}}},
            1,
            "Job",
        ),
    ],
)
def test_each_builtin_kind_yields_its_images_profile_and_replicas(
    kind: str, spec: dict[str, Any], replicas: int | None, owner_kind: str
) -> None:
    found = workload(obj(kind, spec), KINDS[kind], CFG, ())
    assert found is not None
    assert found.key == f"{kind}/team/w"
    assert found.images == (APP,)
    assert found.replicas == replicas
    (profile,) = found.profiles
    assert profile["ownerKind"] == owner_kind  # what its pods will carry, as the webhook sees
    assert profile["namespace"] == "team"
    assert found.schedule == ("0 2 * * *" if kind == "CronJob" else "")


def test_template_placement_becomes_the_profile() -> None:
    spec = {"template": pod_template(PYTORCH, **GPU_SPEC)}
    spec["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 8}}
    found = workload(obj("Deployment", spec), KINDS["Deployment"], CFG, ())
    assert found is not None
    (profile,) = found.profiles
    assert profile["gpu"] is True
    assert profile["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert profile["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]


def test_only_managed_images_init_containers_included() -> None:
    template = pod_template(APP, "quay.io/other/thing:1", f"{APP}")
    template["spec"]["initContainers"] = [{"name": "init", "image": CUDA}]
    found = workload(obj("Deployment", {"template": template}), KINDS["Deployment"], CFG, ())
    assert found is not None and found.images == (CUDA, APP)


def test_a_custom_kind_with_several_templates() -> None:
    spec = {
        "pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": pod_template(PYTORCH, **GPU_SPEC)},
            "Worker": {"replicas": 7, "template": pod_template(PYTORCH, CUDA, **GPU_SPEC)},
        }
    }
    found = workload(obj("PyTorchJob", spec), PYTORCH_JOB, CFG, ())
    assert found is not None
    assert found.images == (PYTORCH, CUDA)
    assert found.replicas == 8
    assert len(found.profiles) == 1  # both templates place their pods the same way
    assert found.profiles[0]["ownerKind"] == "PyTorchJob"


def test_template_paths_walk_lists_and_skip_what_is_not_a_template() -> None:
    kind = TemplateKind("x.io/v1", "Multi", "multis", ("spec.roles.*.template", "spec.nope"))
    spec = {"roles": [{"template": pod_template(APP)}, {"template": "junk"}, {"other": 1}]}
    assert [t.replicas for t in pod_templates(obj("Multi", spec), kind)] == [1]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda o: o["spec"]["template"]["metadata"].update(
            annotations={"image-sync.io/enabled": "false"}), "pod template opted out"),
        (lambda o: o["metadata"].update(
            ownerReferences=[{"kind": "Deployment", "name": "d", "controller": True}]),
         "a Deployment's ReplicaSet: the Deployment speaks for it"),
        (lambda o: o["metadata"].update(namespace="excluded"), "namespace labelled out"),
        (lambda o: o["spec"]["template"]["spec"].update(
            containers=[{"name": "c", "image": "quay.io/x/y:1"}]), "no managed image"),
        (lambda o: o["metadata"].update(deletionTimestamp="2026-11-22T00:00:00Z"), "deleting"),
    ],
)  # fmt: skip
def test_what_teaches_nothing(change: Any, why: str) -> None:
    rs = obj("ReplicaSet", {"template": pod_template(APP)})
    change(rs)
    assert workload(rs, KINDS["ReplicaSet"], CFG, {"excluded"}) is None, why


def test_opt_in_mode_needs_the_annotation() -> None:
    opt_in = config(registries=CFG.registries, mode="opt-in")
    plain = obj("Deployment", {"template": pod_template(APP)})
    assert workload(plain, KINDS["Deployment"], opt_in, ()) is None
    opted = obj(
        "Deployment", {"template": pod_template(APP, annotations={"image-sync.io/enabled": "true"})}
    )
    assert workload(opted, KINDS["Deployment"], opt_in, ()) is not None


def test_finished_jobs_suspended_cronjobs_and_cron_made_jobs_teach_nothing() -> None:
    done = obj("Job", {"template": pod_template(APP)})
    done["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert workload(done, KINDS["Job"], CFG, ()) is None
    made = obj(
        "Job",
        {"template": pod_template(APP)},
        ownerReferences=[{"kind": "CronJob", "name": "nightly", "controller": True}],
    )
    assert workload(made, KINDS["Job"], CFG, ()) is None
    assert parent_link(made, "Job") == ("Job/team/w", "CronJob/team/nightly")
    suspended = obj(
        "CronJob",
        {
            "suspend": True,
            "schedule": "@daily",
            "jobTemplate": {"spec": {"template": pod_template(APP)}},
        },
    )
    assert workload(suspended, KINDS["CronJob"], CFG, ()) is None


def test_template_kinds_config() -> None:
    loaded = load_config(
        environ={
            "IMAGE_SYNC_TEMPLATE_KINDS": (
                "[{apiVersion: kubeflow.org/v1, kind: PyTorchJob,"
                " templatePaths: [spec.pytorchReplicaSpecs.*.template]}]"
            )
        }
    )
    assert loaded.template_kinds == (PYTORCH_JOB,)  # resource defaults to the lowercase plural
    for bad in (
        "[{kind: X, templatePaths: [spec.template]}]",
        "[{apiVersion: v1, kind: X, templatePaths: [spec.template]}]",
        "[{apiVersion: a.io/v1, kind: X}]",
        "[{apiVersion: a.io/v1, kind: X, templatePaths: [spec..template]}]",
        "[{apiVersion: a.io/v1, kind: X, templatePaths: [spec.template], extra: 1}]",
        "{apiVersion: a.io/v1}",
    ):
        with pytest.raises(ConfigError, match="IMAGE_SYNC_TEMPLATE_KINDS"):
            load_config(environ={"IMAGE_SYNC_TEMPLATE_KINDS": bad})
    assert parse_template_kind(
        {"apiVersion": "a.io/v1", "kind": "X", "resource": "xes", "templatePaths": "spec.t"}
    ) == TemplateKind("a.io/v1", "X", "xes", ("spec.t",))


def test_pods_read_through_their_slim_form() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "team",
            "uid": "u",
            "resourceVersion": "9",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d4", "controller": True}],
            "annotations": {"big": "x" * 1000},
        },
        "spec": {"nodeName": "cpu-1", "containers": [{"name": "c", "image": "busybox:1.36"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    slim = slim_pod(copy.deepcopy(pod))
    assert "annotations" not in slim["metadata"]
    for form in (pod, slim):
        found = running_pod(form)
        assert found is not None
        assert (found.node, found.workload, found.images) == (
            "cpu-1",
            "ReplicaSet/team/web-5d4",
            (BUSYBOX,),
        )
    waiting: dict[str, Any] = {
        "metadata": {"name": "q", "namespace": "team"},
        "spec": {"containers": [{"name": "c", "image": APP}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        },
    }
    found_waiting = unschedulable_pod(slim_pod(copy.deepcopy(waiting)))
    assert found_waiting is not None and found_waiting.images == (APP,)
    waiting["status"]["conditions"][0]["reason"] = "SchedulingGated"
    assert unschedulable_pod(waiting) is None


# --- what learning writes ---------------------------------------------------------------------


def deployment(*images: str, **spec: Any) -> Any:
    found = workload(
        obj("Deployment", {"template": pod_template(*images, **spec)}), KINDS["Deployment"], CFG, ()
    )
    assert found is not None
    return found


def test_learning_creates_missing_images_then_writes_nothing() -> None:
    writes = learn_writes([deployment(APP, PYTORCH, **GPU_SPEC)], [], "2026-11-22T03:00:00Z")
    assert [(w.image, w.name) for w in writes] == [
        (APP, object_name(APP)),
        (PYTORCH, object_name(PYTORCH)),
    ]
    body = writes[0].body
    assert body is not None and body["spec"]["source"] == "Learned"
    (profile,) = body["spec"]["profiles"]
    assert profile["lastSeen"] == "2026-11-22T03:00:00Z"
    stored = [dict(w.body or {}, metadata={"name": w.name, "resourceVersion": "1"}) for w in writes]
    assert learn_writes([deployment(APP, PYTORCH, **GPU_SPEC)], stored, "later") == []


def test_learning_merges_a_new_profile_into_a_learned_image_only() -> None:
    (first,) = learn_writes([deployment(APP)], [], "t1")
    stored = dict(first.body or {}, metadata={"name": first.name, "resourceVersion": "7"})
    (merge,) = learn_writes([deployment(APP, **GPU_SPEC)], [stored], "t2")
    assert merge.body is None and merge.resource_version == "7"
    assert len(merge.profiles) == 2
    assert {profile_key(p) for p in merge.profiles} >= {
        profile_key(p) for p in stored["spec"]["profiles"]
    }
    declared = {"metadata": {"name": "d"}, "spec": {"image": APP, "source": "Declared"}}
    assert learn_writes([deployment(APP, **GPU_SPEC)], [declared], "t2") == []


def gpu_containers(gpus: int, *images: str) -> list[dict[str, Any]]:
    # A template is not defaulted by the API server: the GPU limit alone is the request.
    return [
        {
            "name": f"c{i}",
            "image": image,
            "resources": {"requests": {"cpu": "4"}, "limits": {"nvidia.com/gpu": str(gpus)}},
        }
        for i, image in enumerate(images)
    ]


def test_learning_writes_the_templates_requests_and_keeps_the_smaller_pod() -> None:
    training = deployment(containers=gpu_containers(8, PYTORCH), **GPU_SPEC)
    (created,) = learn_writes([training], [], "t1")
    assert created.body is not None
    (profile,) = created.body["spec"]["profiles"]
    assert profile["requests"] == {"cpu": "4", "nvidia.com/gpu": "8"}
    stored = dict(created.body, metadata={"name": created.name, "resourceVersion": "3"})
    # A smaller pod of the same placement lowers the requests...
    smaller = deployment(containers=gpu_containers(1, PYTORCH), **GPU_SPEC)
    (lowered,) = learn_writes([smaller], [stored], "t2")
    assert [p["requests"] for p in lowered.profiles] == [{"cpu": "4", "nvidia.com/gpu": "1"}]
    # ...and once they are stored, the larger template calls for no write.
    stored["spec"] = dict(stored["spec"], profiles=list(lowered.profiles))
    assert learn_writes([training, smaller], [stored], "t3") == []


def test_a_profile_stored_before_requests_were_learned_gets_them_once() -> None:
    training = deployment(containers=gpu_containers(8, PYTORCH), **GPU_SPEC)
    (created,) = learn_writes([training], [], "t1")
    assert created.body is not None
    older = {k: v for k, v in created.body["spec"]["profiles"][0].items() if k != "requests"}
    stored = dict(created.body, metadata={"name": created.name, "resourceVersion": "3"})
    stored["spec"] = dict(stored["spec"], profiles=[older])
    (write,) = learn_writes([training], [stored], "t2")
    assert [p["requests"] for p in write.profiles] == [{"cpu": "4", "nvidia.com/gpu": "8"}]
