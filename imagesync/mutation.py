"""Which containers of a pod image-sync manages, and the JSONPatch that relaxes their pull policy.

In the core: the webhook answers with it, the prefetcher and the evaluation ask it which
images a pod uses under the same rule.

Pure: a pod (as JSON) and the Config in, a decision out. The decision also lists every
managed image of an in-scope pod, because learning wants them even when nothing is patched
(`image-sync.io/pull-policy: keep`, `Never`, untouched `:latest` images).

Rules (docs/webhook.md has the table):
- only `initContainers` and `containers`; `ephemeralContainers` are never touched;
- only images under a configured registry prefix (normalized, whole path segments);
- `Always` or unset → `IfNotPresent`; `IfNotPresent` and `Never` are kept; anything else is
  left for the API server's validation to judge;
- images Kubernetes treats as `:latest` (no tag or tag `latest`, no digest) are rewritten only
  with `rewriteLatest: true`. That covers `Always` as well as unset: the API server applies
  defaults before admission, so an untagged image with no policy reaches the webhook as
  `Always`, and the two cannot be told apart;
- on any other tagged image without a digest, Kubernetes defaults an unset policy to
  `IfNotPresent`, so an `Always` there was written on purpose (a tag that gets rebuilt).
  `explicitAlways: rewrite` (the default) rewrites it all the same: the registries image-sync
  manages are ones whose tags the admin treats as immutable. `explicitAlways: keep` leaves it.
  A digest pins the content, so `Always` on a digest is rewritten in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, NamedTuple, TypedDict

from imagesync.config import EXPLICIT_ALWAYS_KEEP, Config
from imagesync.matching import is_managed
from imagesync.names import (
    ANNOTATION_ENABLED,
    ANNOTATION_PULL_POLICY,
    ANNOTATION_REWRITTEN,
    PULL_POLICY_KEEP,
)
from imagesync.reference import MAX_REFERENCE_LENGTH


class JsonPatchOp(TypedDict):
    """One RFC 6902 operation of the patch the webhook answers with."""

    op: Literal["add", "replace"]
    path: str
    value: Any


IF_NOT_PRESENT = "IfNotPresent"
ALWAYS = "Always"
NEVER = "Never"
CONTAINER_SECTIONS = ("initContainers", "containers")
PULL_POLICY_FIELD = "imagePullPolicy"

# The values below are built once per admission: NamedTuples, as immutable as frozen
# dataclasses and several times cheaper to build.


class ManagedContainer(NamedTuple):
    """A container whose image is under a configured prefix; `new_policy` None = left alone."""

    section: str
    index: int  # type: ignore[assignment]  # shadows tuple.index(), never wanted on a record
    name: str
    image: str  # normalized
    policy: str | None
    new_policy: str | None


class PodDecision(NamedTuple):
    """`in_scope`: the pod is not opted out (by mode or annotation); `keep`: pull policy kept.

    `images`: the distinct managed images of an in-scope pod, in order of first appearance.
    """

    in_scope: bool
    keep: bool
    containers: tuple[ManagedContainer, ...]
    patch: tuple[JsonPatchOp, ...]
    images: tuple[str, ...] = ()


class MatchedImage(NamedTuple):
    """What `decide` needs of a managed image's reference, computed once per distinct image."""

    normalized: str
    implicit_latest: bool
    pinned: bool  # has a digest


def escape_pointer_token(token: str) -> str:
    """RFC 6901: `~` → `~0`, then `/` → `~1`."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape_pointer_token(str(token)) for token in tokens)


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _annotation(annotations: Mapping[str, Any], key: str) -> str | None:
    value = annotations.get(key)
    return value.strip().lower() if isinstance(value, str) else None


def _in_scope(annotations: Mapping[str, Any], mode: str) -> bool:
    enabled = _annotation(annotations, ANNOTATION_ENABLED)
    if enabled == "false":
        return False
    if enabled == "true":
        return True
    return mode != "opt-in"


def pod_in_scope(pod: Mapping[str, Any], mode: str) -> bool:
    """opt-out mode: every pod unless `enabled: "false"`; opt-in: only `enabled: "true"`.

    Any other annotation value counts as absent, so a typo falls back to the mode's default.
    """
    return _in_scope(_annotations(pod), mode)


def new_pull_policy(
    policy: str | None, image: MatchedImage, rewrite_latest: bool, keep_explicit_always: bool
) -> str | None:
    """The policy to set for a managed container, or None to leave it as it is."""
    if policy not in (None, ALWAYS):
        return None
    if image.implicit_latest:
        return IF_NOT_PRESENT if rewrite_latest else None
    if policy == ALWAYS and keep_explicit_always and not image.pinned:
        return None
    return IF_NOT_PRESENT


MATCH_CACHE_SIZE = 4096


class ImageMatcher:
    """`is_managed` with a bounded per-instance cache: a cluster uses few distinct images,
    and parsing a reference costs more than the rest of a review.

    A string longer than any valid reference is neither parsed nor cached: 4096 cached
    megabyte-long "images" would hold 4 GB.
    """

    def __init__(self, config: Config, cache_size: int = MATCH_CACHE_SIZE) -> None:
        registries = config.registries

        @lru_cache(maxsize=cache_size)
        def cached(image: str) -> MatchedImage | None:
            ref = is_managed(image, registries)
            if ref is None:
                return None
            return MatchedImage(ref.normalized(), ref.implicit_latest, ref.digest is not None)

        self.cached = cached

    def match(self, image: str) -> MatchedImage | None:
        return None if len(image) > MAX_REFERENCE_LENGTH else self.cached(image)


# `pointer("spec", section, index, PULL_POLICY_FIELD)` without the per-token escaping: none
# of these tokens holds `~` or `/`.
_POLICY_PATHS = {
    section: (f"/spec/{section}/", f"/{PULL_POLICY_FIELD}") for section in CONTAINER_SECTIONS
}


def decide(
    pod: Mapping[str, Any], config: Config, matcher: ImageMatcher | None = None
) -> PodDecision:
    """What to do with one pod; tolerant of malformed pods (the API server validates them)."""
    match = matcher.match if matcher is not None else ImageMatcher(config, cache_size=0).match
    annotations = _annotations(pod)
    in_scope = _in_scope(annotations, config.mode)
    keep = _annotation(annotations, ANNOTATION_PULL_POLICY) == PULL_POLICY_KEEP
    spec = pod.get("spec")
    if not in_scope or not isinstance(spec, dict):
        return PodDecision(in_scope=in_scope, keep=keep, containers=(), patch=())
    rewrite_latest = config.rewrite_latest
    keep_explicit_always = config.explicit_always == EXPLICIT_ALWAYS_KEEP
    managed: list[ManagedContainer] = []
    patch: list[JsonPatchOp] = []
    images: dict[str, None] = {}
    for section in CONTAINER_SECTIONS:
        containers = spec.get(section)
        if not isinstance(containers, list):
            continue
        path_head, path_tail = _POLICY_PATHS[section]
        for index, container in enumerate(containers):
            if not isinstance(container, dict):
                continue
            image = container.get("image")
            matched = match(image) if isinstance(image, str) else None
            if matched is None:
                continue
            raw_policy = container.get(PULL_POLICY_FIELD)
            policy = raw_policy if isinstance(raw_policy, str) and raw_policy else None
            new = None
            if not keep and (raw_policy is None or isinstance(raw_policy, str)):
                new = new_pull_policy(policy, matched, rewrite_latest, keep_explicit_always)
            name = container.get("name")
            managed.append(
                ManagedContainer(
                    section,
                    index,
                    name if isinstance(name, str) else "",
                    matched.normalized,
                    policy,
                    new,
                )
            )
            images[matched.normalized] = None
            if new is not None:
                op: JsonPatchOp = {  # a literal: calling a TypedDict costs a kwargs dict more
                    "op": "replace" if PULL_POLICY_FIELD in container else "add",
                    "path": f"{path_head}{index}{path_tail}",
                    "value": new,
                }
                patch.append(op)
    return PodDecision(True, keep, tuple(managed), tuple(patch), tuple(images))


def marked_patch(pod: Mapping[str, Any], decision: PodDecision) -> tuple[JsonPatchOp, ...]:
    """`decision.patch` plus the annotation that names the rewritten containers, so the stored
    pod tells whether the rewrite survived the admission plugins that run after the webhook."""
    rewritten = ",".join(c.name for c in decision.containers if c.new_policy is not None)
    metadata = pod.get("metadata")
    if not decision.patch or not rewritten or not isinstance(metadata, dict):
        return decision.patch
    mark: JsonPatchOp
    if isinstance(metadata.get("annotations"), dict):
        mark = {"op": "add", "path": pointer("metadata", "annotations", ANNOTATION_REWRITTEN),
                "value": rewritten}  # fmt: skip
    else:
        mark = {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {ANNOTATION_REWRITTEN: rewritten},
        }
    return (*decision.patch, mark)
