"""The only pods the pod namespace admits: shaped like a puller or keeper, nothing else.

The prefetcher may create pods in the pod namespace, where the pull secrets live. Should its
credentials leak, RBAC alone would let them run any pod there: one that mounts or reads
those secrets, runs under another ServiceAccount, or tolerates its way onto any node. The
admission guard refuses every pod there that does not have the shape `prefetcher/pods.py`
builds. Two guards enforce the same rules: the ValidatingAdmissionPolicy of
`manifests/components/admission-policy` (Kubernetes 1.30 and newer, evaluated by the API
server itself) and image-sync's own validating webhook (`POST /validate-pods`, every
version). Each rule here has the message of the policy's validation that checks it;
`tests/manifests/test_admission_policy.py` holds the two to the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, NamedTuple

from imagesync.names import (
    COMPONENT_KEEPER,
    COMPONENT_PULLER,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    POD_SERVICE_ACCOUNT,
    SLEEPER_COPY,
    SLEEPER_PATH,
    SLEEPER_VOLUME,
)

# Node conditions the kubelet turns into taints: a pod tolerating them would stay on (or be
# let onto) a node that is running out of memory, disk or process ids.
PRESSURE_TAINTS: Final = frozenset(
    {
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
    }
)
INSTALL_COMMAND: Final = (SLEEPER_PATH, "--install", SLEEPER_COPY)
SLEEPER_COMMANDS: Final = ((SLEEPER_COPY,), (SLEEPER_COPY, "--exit"))

Pod = Mapping[str, Any]


class Rule(NamedTuple):
    """One property every pod in the pod namespace has; `message` says it when it fails."""

    message: str
    holds: Callable[[Pod], bool]


def _spec(pod: Pod) -> Mapping[str, Any]:
    spec = pod.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _containers(pod: Pod) -> Iterator[Mapping[str, Any]]:
    yield from _list(_spec(pod).get("initContainers"))
    yield from _list(_spec(pod).get("containers"))


def _labels(pod: Pod) -> Mapping[str, Any]:
    labels = (pod.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _command(container: Mapping[str, Any]) -> tuple[Any, ...]:
    command = container.get("command")
    return tuple(command) if isinstance(command, list) else ()


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "pods here are image-sync's puller and keeper pods: labels "
        f"{LABEL_MANAGED_BY}={MANAGED_BY} and {LABEL_COMPONENT}={COMPONENT_PULLER} or "
        f"{COMPONENT_KEEPER}",
        lambda pod: (
            _labels(pod).get(LABEL_MANAGED_BY) == MANAGED_BY
            and _labels(pod).get(LABEL_COMPONENT) in (COMPONENT_PULLER, COMPONENT_KEEPER)
        ),
    ),
    Rule(
        f"pods here run under the ServiceAccount {POD_SERVICE_ACCOUNT}, without its token",
        lambda pod: (
            _spec(pod).get("serviceAccountName") == POD_SERVICE_ACCOUNT
            and _spec(pod).get("automountServiceAccountToken") is False
        ),
    ),
    Rule(
        "pods here are bound to a node (spec.nodeName)",
        lambda pod: isinstance(_spec(pod).get("nodeName"), str) and bool(_spec(pod)["nodeName"]),
    ),
    Rule(
        "pods here share nothing with the node: no hostNetwork, hostPID or hostIPC",
        lambda pod: not any(_spec(pod).get(k) for k in ("hostNetwork", "hostPID", "hostIPC")),
    ),
    Rule(
        f"pods here have one volume, the emptyDir {SLEEPER_VOLUME}",
        lambda pod: all(
            v.get("name") == SLEEPER_VOLUME and "emptyDir" in v
            for v in _list(_spec(pod).get("volumes"))
        ),
    ),
    Rule(
        f"containers here mount only {SLEEPER_VOLUME} and read no environment",
        lambda pod: all(
            "env" not in c
            and "envFrom" not in c
            and all(m.get("name") == SLEEPER_VOLUME for m in _list(c.get("volumeMounts")))
            for c in _containers(pod)
        ),
    ),
    Rule(
        "containers here run the sleeper and nothing else",
        lambda pod: (
            all(_command(c) == INSTALL_COMMAND for c in _list(_spec(pod).get("initContainers")))
            and all(_command(c) in SLEEPER_COMMANDS for c in _list(_spec(pod).get("containers")))
            and all("args" not in c and "ports" not in c for c in _containers(pod))
            and "ephemeralContainers" not in _spec(pod)
        ),
    ),
    Rule(
        "containers here are not privileged",
        lambda pod: all(
            not (c.get("securityContext") or {}).get("privileged") for c in _containers(pod)
        ),
    ),
    Rule(
        "pods here tolerate named taints only, never a node-pressure taint",
        lambda pod: all(
            t.get("key") and t.get("key") not in PRESSURE_TAINTS
            for t in _list(_spec(pod).get("tolerations"))
        ),
    ),
)


def refusals(pod: Pod) -> list[str]:
    """The messages of the rules `pod` breaks; empty when it is a puller or keeper."""
    return [rule.message for rule in RULES if not rule.holds(pod)]
