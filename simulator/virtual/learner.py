"""image-sync's webhook in virtual time: the pull-policy rewrite at admission (the real
`imagesync.mutation.decide`) and the CachedImages it learns, written every
`learnFlushInterval` as the recorder writes them (profiles with `lastSeen`, `useCount`,
`dailyUses`), plus Declared images an admin applies.

It keeps CachedImages as the prefetcher's informer would see them, as `WantedImage`s, and
says which writes change a spec (the prefetcher's "new image" / "image changed" triggers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from imagesync.cachedimage import (
    PlacementProfile,
    format_time,
    merge_daily_uses,
    merge_profiles,
    object_name,
    parse_time,
    profile_from_pod,
    profile_key,
)
from imagesync.config import Config
from imagesync.mutation import ImageMatcher, decide
from imagesync.names import GPU_RESOURCE, SOURCE_DECLARED, SOURCE_LEARNED
from prefetcher.model import ReportedStatus, WantedImage
from simulator.virtual.pods import PodSpec

Trigger = Callable[[str], None]
Clock = Callable[[float], datetime]


def pod_object(spec: PodSpec) -> dict[str, Any]:
    """The Pod an admission request would carry for `spec` (what `decide` and the profile read)."""
    resources: dict[str, Any] = {
        "requests": {"cpu": f"{spec.cpu:g}", "memory": f"{spec.memory:.0f}"}
    }
    if spec.gpus:
        resources["limits"] = {GPU_RESOURCE: str(spec.gpus)}
    containers = []
    for index, image in enumerate(spec.images):
        container: dict[str, Any] = {"name": f"c{index}", "image": image}
        if index == 0:  # the pod's requests, as the virtual scheduler counts them: once
            container["resources"] = resources
        if spec.pull_policy:
            container["imagePullPolicy"] = spec.pull_policy
        containers.append(container)
    pod_spec: dict[str, Any] = {"containers": containers}
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace}
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    if spec.owner_kind:
        metadata["ownerReferences"] = [
            {"kind": spec.owner_kind, "name": spec.owner, "controller": True}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


@dataclass
class CachedImageState:
    """One CachedImage: spec and the webhook's usage status, plus what the prefetcher wrote."""

    image: str
    source: str
    created: datetime
    node_selector: Mapping[str, str] = field(default_factory=dict)
    profiles: list[PlacementProfile] = field(default_factory=list)
    last_seen: str = ""
    use_count: int = 0
    daily_uses: dict[str, int] = field(default_factory=dict)
    reported: ReportedStatus = field(default_factory=ReportedStatus)
    cached: WantedImage | None = None

    def wanted(self) -> WantedImage:
        if self.cached is None:
            self.cached = WantedImage(
                name=object_name(self.image),
                image=self.image,
                uid=f"ci-{object_name(self.image)}",
                source=self.source,
                node_selector=dict(self.node_selector),
                profiles=tuple(self.profiles),
                last_seen=_parse(self.last_seen),
                use_count=self.use_count,
                daily_uses=dict(self.daily_uses),
                created=self.created,
                reported=self.reported,
            )
        return self.cached


def _parse(text: str) -> datetime | None:
    return parse_time(text) if text else None


@dataclass
class Sightings:
    """What the recorder buffered for one image since its last flush."""

    profiles: dict[str, tuple[PlacementProfile, str]] = field(default_factory=dict)
    daily: dict[str, int] = field(default_factory=dict)
    count: int = 0
    last_seen: str = ""


def admitted(
    spec: PodSpec, config: Config, matcher: ImageMatcher
) -> tuple[PodSpec, tuple[str, ...], dict[str, Any]]:
    """The pod after the webhook's rewrite, its managed images, and the Pod object it read."""
    pod = pod_object(spec)
    decision = decide(pod, config, matcher)
    rewritten = {c.image: c.new_policy for c in decision.containers if c.new_policy}
    if rewritten:
        spec = replace(spec, policy_overrides={**spec.policy_overrides, **rewritten})
    return spec, decision.images, pod


class Learner:
    """Admission (rewrite + sighting) and the flushes that turn sightings into CachedImages."""

    def __init__(self, config: Config, clock: Clock, trigger: Trigger) -> None:
        self.config = config
        self.clock = clock
        self.trigger = trigger
        self.matcher = ImageMatcher(config)
        self.images: dict[str, CachedImageState] = {}
        self.pending: dict[str, Sightings] = {}
        self.known_at: dict[str, float] = {}  # image → when its CachedImage first existed
        self._profiles: dict[tuple[Any, ...], PlacementProfile] = {}
        self._wanted: tuple[WantedImage, ...] | None = None  # until a CachedImage changes
        self._names: dict[str, str] = {}  # object name → image

    def admit(self, spec: PodSpec, now: float) -> tuple[PodSpec, bool]:
        """The pod as the webhook leaves it, and whether it saw managed images to record."""
        spec, images, pod = admitted(spec, self.config, self.matcher)
        if not images:
            return spec, False
        moment = format_time(self.clock(now))
        day = moment[:10]
        profile = self._profile(spec, pod)
        key = profile_key(profile)
        for image in images:
            entry = self.pending.setdefault(image, Sightings())
            entry.profiles[key] = (profile, moment)
            entry.daily[day] = entry.daily.get(day, 0) + 1
            entry.count += 1
            entry.last_seen = max(entry.last_seen, moment)
        return spec, True

    def _profile(self, spec: PodSpec, pod: Mapping[str, Any]) -> PlacementProfile:
        key = (
            spec.namespace,
            spec.owner_kind,
            tuple(sorted(spec.node_selector.items())),
            repr(spec.tolerations),
            spec.gpus,
            spec.cpu,
            spec.memory,
        )
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = profile_from_pod(pod, spec.namespace)
        return profile

    def declare(self, entries: Sequence[Mapping[str, Any]], now: float) -> None:
        """Declared CachedImages an admin applies (`{image, nodeSelector}`)."""
        for entry in entries:
            image = str(entry["image"])
            state = self.images.get(image)
            if state is None:
                self._wanted = None
                self.images[image] = CachedImageState(
                    image=image,
                    source=SOURCE_DECLARED,
                    created=self.clock(now),
                    node_selector=dict(entry.get("nodeSelector") or {}),
                )
                self.known_at.setdefault(image, now)
                self._names[object_name(image)] = image
                self.trigger("new image")

    def flush(self, now: float) -> None:
        """One recorder flush: create or update a CachedImage per image seen since the last."""
        pending, self.pending = self.pending, {}
        if pending:
            self._wanted = None
        today = self.clock(now)
        for image in sorted(pending):
            entry = pending[image]
            stamped: list[PlacementProfile] = []
            for profile, seen in entry.profiles.values():
                copy = profile.copy()
                copy["lastSeen"] = seen
                stamped.append(copy)
            state = self.images.get(image)
            if state is None:
                state = self.images[image] = CachedImageState(
                    image=image, source=SOURCE_LEARNED, created=today
                )
                self.known_at.setdefault(image, now)
                self._names[object_name(image)] = image
                state.profiles = merge_profiles([], stamped)
                reason: str | None = "new image"
            else:
                reason = None
                if state.source == SOURCE_LEARNED:
                    merged = merge_profiles(state.profiles, stamped)
                    if merged != state.profiles:
                        # As the controller sees it: only a change of placement triggers.
                        if {profile_key(p) for p in merged} != {
                            profile_key(p) for p in state.profiles
                        }:
                            reason = "image changed"
                        state.profiles = merged
            state.last_seen = max(state.last_seen, entry.last_seen)
            state.use_count += entry.count
            state.daily_uses = merge_daily_uses(state.daily_uses, entry.daily, today)
            state.cached = None
            if reason is not None:
                self.trigger(reason)

    def report(self, name: str, patch: Mapping[str, Any]) -> None:
        """The prefetcher wrote status fields of CachedImage `name`."""
        image = self._names.get(name)
        state = self.images.get(image) if image is not None else None
        if state is not None:
            self._wanted = None
            reported = state.reported
            state.reported = ReportedStatus(
                score=float(patch["score"]) if "score" in patch else reported.score,
                nodes_wanted=int(patch["nodesWanted"])
                if "nodesWanted" in patch
                else reported.nodes_wanted,
                nodes_present=int(patch["nodesPresent"])
                if "nodesPresent" in patch
                else reported.nodes_present,
                last_error=str(patch["lastError"]) if "lastError" in patch else reported.last_error,
            )
            if state.cached is not None:  # only the status changed
                state.cached = replace(state.cached, reported=state.reported)

    def wanted(self) -> tuple[WantedImage, ...]:
        if self._wanted is None:
            self._wanted = tuple(self.images[image].wanted() for image in sorted(self.images))
        return self._wanted
