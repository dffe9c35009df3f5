"""The pure core: which containers change, the patch, opt-in/out, learning sightings."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesync.config import Config, ConfigError, load_config
from imagesync.mutation import ImageMatcher, decide, escape_pointer_token, marked_patch, pointer
from imagesync.names import ANNOTATION_REWRITTEN
from tests.webhook.pods import (
    DIGEST,
    HARBOR,
    REGISTRIES,
    container,
    deployment_pod,
    gpu_job_pod,
    pod,
    policies,
    review,
)
from webhook.learning import sighting_for
from webhook.review import parse_review

CONFIG = load_config(environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES})


def patched(obj: dict[str, Any], config: Config = CONFIG) -> dict[str, Any]:
    decision = decide(obj, config)
    result: dict[str, Any] = jsonpatch.apply_patch(obj, list(decision.patch))
    return result


def test_always_and_unset_become_if_not_present_never_is_kept() -> None:
    obj = pod(
        [
            container("a", f"{HARBOR}/team/api:1.4", "Always"),
            container("b", f"{HARBOR}/team/worker:1.4", None),
            container("c", f"{HARBOR}/team/offline:1.4", "Never"),
            container("d", f"{HARBOR}/team/cached:1.4", "IfNotPresent"),
        ]
    )
    assert policies(patched(obj)) == {
        "containers/a": "IfNotPresent",
        "containers/b": "IfNotPresent",
        "containers/c": "Never",
        "containers/d": "IfNotPresent",
    }
    ops = {op["path"]: op["op"] for op in decide(obj, CONFIG).patch}
    assert ops == {
        "/spec/containers/0/imagePullPolicy": "replace",
        "/spec/containers/1/imagePullPolicy": "add",
    }


def test_non_matching_images_are_never_touched() -> None:
    obj = pod(
        [
            container("hub", "busybox:1.36", "Always"),
            container("lookalike", f"{HARBOR}.evil.io/team/api:1", "Always"),
            container("other-port", f"{HARBOR}:8443/team/api:1", "Always"),
            container("nvidian", "nvcr.io/nvidian/x:1", "Always"),
            container("invalid", "Harbor.Example.Internal/UPPER/case:1", "Always"),
        ]
    )
    assert decide(obj, CONFIG).patch == ()
    assert decide(obj, CONFIG).images == ()


def test_ports_digests_and_private_registries() -> None:
    obj = pod(
        [
            container("port", "registry.corp.example:5000/ml/trainer:3", "Always"),
            container("port-other-path", "registry.corp.example:5000/web/site:3", "Always"),
            container("digest", f"nvcr.io/nvidia/cuda@{DIGEST}", "Always"),
            container("tag-digest", f"{HARBOR}/team/api:1.4@{DIGEST}", None),
        ]
    )
    assert policies(patched(obj)) == {
        "containers/port": "IfNotPresent",
        "containers/port-other-path": "Always",
        "containers/digest": "IfNotPresent",
        "containers/tag-digest": "IfNotPresent",
    }
    assert decide(obj, CONFIG).images == (
        "registry.corp.example:5000/ml/trainer:3",
        f"nvcr.io/nvidia/cuda@{DIGEST}",
        f"{HARBOR}/team/api:1.4@{DIGEST}",
    )


def test_latest_and_untagged_follow_rewrite_latest() -> None:
    obj = pod(
        [
            container("untagged-unset", f"{HARBOR}/team/api", None),
            container("latest-always", f"{HARBOR}/team/api:latest", "Always"),
            container("latest-digest", f"{HARBOR}/team/api:latest@{DIGEST}", "Always"),
        ]
    )
    assert policies(patched(obj)) == {
        "containers/untagged-unset": None,
        "containers/latest-always": "Always",
        "containers/latest-digest": "IfNotPresent",  # a digest pins it: not "latest"
    }
    rewrite = load_config(
        environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES, "IMAGE_SYNC_REWRITE_LATEST": "true"}
    )
    assert set(policies(patched(obj, rewrite)).values()) == {"IfNotPresent"}
    # Learned either way.
    assert decide(obj, CONFIG).images == (
        f"{HARBOR}/team/api:latest",
        f"{HARBOR}/team/api:latest@{DIGEST}",
    )


def explicit_always_pod() -> dict[str, Any]:
    return pod(
        [
            container("tagged", f"{HARBOR}/team/api:1.4", "Always"),
            container("pinned", f"{HARBOR}/team/api:1.4@{DIGEST}", "Always"),
            container("unset", f"{HARBOR}/team/api:1.5", None),
            container("latest", f"{HARBOR}/team/api:latest", "Always"),
        ],
        init=[container("init", f"{HARBOR}/team/init:2", "Always")],
    )


def test_explicit_always_on_a_tag_is_rewritten_by_default_and_kept_on_request() -> None:
    obj = explicit_always_pod()
    assert policies(patched(obj)) == {
        "initContainers/init": "IfNotPresent",
        "containers/tagged": "IfNotPresent",
        "containers/pinned": "IfNotPresent",
        "containers/unset": "IfNotPresent",
        "containers/latest": "Always",
    }
    keep = load_config(
        environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES, "IMAGE_SYNC_EXPLICIT_ALWAYS": "keep"}
    )
    assert policies(patched(obj, keep)) == {
        "initContainers/init": "Always",  # a tag that may be rebuilt: re-pulled
        "containers/tagged": "Always",
        "containers/pinned": "IfNotPresent",  # a digest cannot change: nothing to re-pull
        "containers/unset": "IfNotPresent",
        "containers/latest": "Always",
    }
    keep_latest = load_config(
        environ={
            "IMAGE_SYNC_REGISTRIES": REGISTRIES,
            "IMAGE_SYNC_EXPLICIT_ALWAYS": "keep",
            "IMAGE_SYNC_REWRITE_LATEST": "true",
        }
    )
    assert policies(patched(obj, keep_latest))["containers/latest"] == "IfNotPresent"
    # Kept or not, every managed image is learned.
    assert len(decide(obj, keep).images) == 5


def test_explicit_always_accepts_only_its_two_values() -> None:
    with pytest.raises(ConfigError, match=r"IMAGE_SYNC_EXPLICIT_ALWAYS"):
        load_config(environ={"IMAGE_SYNC_EXPLICIT_ALWAYS": "sometimes"})


def test_init_containers_are_rewritten_ephemeral_never() -> None:
    obj = gpu_job_pod()
    obj["spec"]["ephemeralContainers"] = [container("debug", f"{HARBOR}/tools/debug:1", "Always")]
    assert policies(patched(obj)) == {
        "initContainers/fetch-data": "IfNotPresent",
        "containers/train": "IfNotPresent",
        "ephemeralContainers/debug": "Always",
    }


def test_opt_out_and_opt_in() -> None:
    base = deployment_pod(f"{HARBOR}/team/api:1", "Always")
    opted_out = copy.deepcopy(base)
    opted_out["metadata"]["annotations"] = {"image-sync.io/enabled": "false"}
    assert decide(opted_out, CONFIG).patch == () and decide(opted_out, CONFIG).images == ()
    assert decide(base, CONFIG).patch

    opt_in = load_config(environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES, "IMAGE_SYNC_MODE": "opt-in"})
    assert decide(base, opt_in).patch == () and decide(base, opt_in).images == ()
    opted_in = copy.deepcopy(base)
    opted_in["metadata"]["annotations"] = {"image-sync.io/enabled": "True"}
    assert decide(opted_in, opt_in).patch
    typo = copy.deepcopy(base)
    typo["metadata"]["annotations"] = {"image-sync.io/enabled": "yes please"}
    assert decide(typo, opt_in).patch == ()  # unknown values fall back to the mode
    assert decide(typo, CONFIG).patch


def test_keep_annotation_learns_but_does_not_patch() -> None:
    obj = deployment_pod(
        f"{HARBOR}/team/api:1", "Always", annotations={"image-sync.io/pull-policy": "keep"}
    )
    decision = decide(obj, CONFIG)
    assert decision.patch == ()
    assert decision.images == (f"{HARBOR}/team/api:1",)


def test_pointer_escaping() -> None:
    assert escape_pointer_token("a/b~c") == "a~1b~0c"
    assert (
        pointer("spec", "containers", 3, "imagePullPolicy") == "/spec/containers/3/imagePullPolicy"
    )
    assert (
        jsonpatch.JsonPointer(pointer("metadata", "annotations", "image-sync.io/enabled")).resolve(
            {"metadata": {"annotations": {"image-sync.io/enabled": "x"}}}
        )
        == "x"
    )


def test_malformed_pods_do_not_raise() -> None:
    specs: list[Any] = [
        None,
        [],
        {"containers": "x"},
        {"containers": [None, 3, {"image": 5}, {"name": "n"}]},
    ]
    for spec in specs:
        assert decide({"metadata": None, "spec": spec}, CONFIG).patch == ()


def test_sighting_profiles_replicaset_and_gpu_job() -> None:
    obj = deployment_pod(f"{HARBOR}/team/api:1", node_selector={"pool": "web"})
    request = parse_review(__import__("json").dumps(review(obj, namespace="shop")))
    sighting = sighting_for(request, obj, decide(obj, CONFIG))
    assert sighting is not None
    assert sighting.images == (f"{HARBOR}/team/api:1",)
    assert sighting.profile["ownerKind"] == "ReplicaSet"
    assert sighting.profile["namespace"] == "shop"
    assert sighting.profile["nodeSelector"] == {"pool": "web"}
    assert sighting.profile["gpu"] is False

    job = gpu_job_pod()
    request = parse_review(__import__("json").dumps(review(job)))
    sighting = sighting_for(request, job, decide(job, CONFIG))
    assert sighting is not None
    assert sighting.images == (f"{HARBOR}/tools/fetcher:2.1", "nvcr.io/nvidia/pytorch:24.08-py3")
    profile = sighting.profile
    assert (profile["gpu"], profile["ownerKind"], profile["namespace"]) == (True, "Job", "training")
    assert profile["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert profile["requiredNodeAffinity"][0]["matchExpressions"][0]["key"] == "kubernetes.io/arch"

    dry = parse_review(__import__("json").dumps(review(job, dry_run=True)))
    assert sighting_for(dry, job, decide(job, CONFIG)) is None


# --- properties ----------------------------------------------------------------------

IMAGES = [
    f"{HARBOR}/team/api:1.4",
    f"{HARBOR}/team/api",
    f"{HARBOR}/team/api:latest",
    f"{HARBOR}:8443/team/api:1",
    f"{HARBOR}.evil.io/x:1",
    "nvcr.io/nvidia/pytorch:24.08-py3",
    f"nvcr.io/nvidia/cuda@{DIGEST}",
    "nvcr.io/nvidian/x:1",
    "registry.corp.example:5000/ml/trainer:3",
    "busybox",
    "docker.io/library/busybox:1.36",
    "NOT A VALID//image",
    "",
]
POLICIES = [None, "Always", "IfNotPresent", "Never", "", "always"]
names = st.text(alphabet="abc-/~01", min_size=1, max_size=6)
containers = st.lists(
    st.builds(
        lambda name, image, policy: container(name, image, policy),
        names,
        st.sampled_from(IMAGES),
        st.sampled_from(POLICIES),
    ),
    max_size=5,
)
annotation_maps = st.dictionaries(
    st.sampled_from(["image-sync.io/enabled", "image-sync.io/pull-policy", "other/x"]),
    st.sampled_from(["true", "false", "keep", "TRUE", "x"]),
)
pods = st.builds(
    lambda c, i, a: pod(c or [container("main", "busybox")], init=i, annotations=a),
    containers,
    containers,
    annotation_maps,
)
configs = st.builds(
    lambda mode, latest: load_config(
        environ={
            "IMAGE_SYNC_REGISTRIES": REGISTRIES,
            "IMAGE_SYNC_MODE": mode,
            "IMAGE_SYNC_REWRITE_LATEST": latest,
        }
    ),
    st.sampled_from(["opt-out", "opt-in"]),
    st.sampled_from(["true", "false"]),
)


def managed(image: str) -> bool:
    from imagesync.matching import is_managed

    return is_managed(image, CONFIG.registries) is not None


def check_only_pull_policies_of_managed_containers(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Only managed containers' pull policies changed, plus (from the server) the annotation
    naming exactly those containers."""
    after = copy.deepcopy(after)
    metadata = after.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    mark = annotations.pop(ANNOTATION_REWRITTEN, None)
    if not annotations and "annotations" not in (before.get("metadata") or {}):
        metadata.pop("annotations", None)

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        for section in ("initContainers", "containers"):
            for c in out["spec"].get(section) or []:
                c.pop("imagePullPolicy", None)
        return out

    assert strip(before) == strip(after)
    changed = []
    for section in ("initContainers", "containers"):
        for old, new in zip(
            before["spec"].get(section) or [], after["spec"].get(section) or [], strict=True
        ):
            if old.get("imagePullPolicy") != new.get("imagePullPolicy"):
                assert managed(old["image"]), old
                assert old.get("imagePullPolicy") in (None, "", "Always")
                assert new["imagePullPolicy"] == "IfNotPresent"
                changed.append(old["name"])
    assert mark is None or mark == ",".join(changed), (mark, changed)


@settings(max_examples=400, deadline=None)
@given(pods, configs)
def test_patch_always_applies_and_only_touches_managed_pull_policies(
    obj: dict[str, Any], config: Config
) -> None:
    before = copy.deepcopy(obj)
    decision = decide(obj, config)
    assert obj == before  # the input is never modified
    after = jsonpatch.apply_patch(obj, list(decision.patch))
    check_only_pull_policies_of_managed_containers(before, after)
    # Applying the webhook to its own output changes nothing (safe to call it again).
    assert decide(after, config).patch == ()


def test_strings_longer_than_any_reference_are_neither_parsed_nor_cached() -> None:
    matcher = ImageMatcher(CONFIG)
    for index in range(150):
        long_image = f"{HARBOR}/a/b:{index}" + "x" * 1_000_000
        obj = pod([container("app", long_image, "Always")])
        assert decide(obj, CONFIG, matcher).patch == ()
    assert matcher.cached.cache_info().currsize == 0
    assert matcher.match(f"{HARBOR}/a/b:1") is not None


def test_the_marked_patch_names_the_rewritten_containers() -> None:
    bare = gpu_job_pod()
    bare["metadata"].pop("annotations", None)
    annotated = pod([container("a", f"{HARBOR}/team/api:1.4", "Always"),
                     container("b", "docker.io/library/busybox:1.36", "Always")],
                    annotations={"team": "x"})  # fmt: skip
    for obj, expected in ((bare, "fetch-data,train"), (annotated, "a")):
        after = jsonpatch.apply_patch(obj, list(marked_patch(obj, decide(obj, CONFIG))))
        assert after["metadata"]["annotations"][ANNOTATION_REWRITTEN] == expected
        check_only_pull_policies_of_managed_containers(obj, after)
    unchanged = pod([container("b", "docker.io/library/busybox:1.36", "Always")])
    assert marked_patch(unchanged, decide(unchanged, CONFIG)) == ()
