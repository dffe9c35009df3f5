"""The manifests and the code agree: names, ports, paths, arguments, config, RBAC, security."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.cli import DEFAULT_SECRET_NAME, DEFAULT_WEBHOOK_CONFIG
from certs.names import service_dns_names
from imagesync import config as config_module
from imagesync import names
from imagesync.cli import build_parser
from prefetcher.kube import STARTUP_TAINT_CALLS
from tests.manifests.render import KUSTOMIZATIONS, ROOT, all_of, find, render

NS = names.NAMESPACE_DEFAULT
OUR_IMAGE = names.IMAGE


# --- helpers ---------------------------------------------------------------------------------


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in {"Deployment", "Job", "CronJob"}]


def container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [only] = pod_spec(find(objects, kind, name))["containers"]
    result: dict[str, Any] = only
    return result


def parse_args(args: list[str], env: dict[str, str]) -> Any:
    """Parse a container's args with the real `image-sync` parser ($(VAR) expanded as the kubelet does)."""
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]
    return build_parser().parse_args(expanded)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in c.get("env") or []}


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) evaluated as Kubernetes does."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render("base")


# --- namespace, webhook configuration ---------------------------------------------------------


def test_namespace(base: list[dict[str, Any]]) -> None:
    namespace = find(base, "Namespace", NS)
    assert namespace["metadata"]["name"] == NS == config_module.DEFAULT_NAMESPACE
    assert namespace["metadata"]["labels"][names.LABEL_ENABLED] == "false"
    # Every pod image-sync runs there is non-root without capabilities (checked below).
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_webhook_configuration(base: list[dict[str, Any]]) -> None:
    config = find(base, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == names.WEBHOOK_CONFIGURATION == DEFAULT_WEBHOOK_CONFIG
    [hook] = config["webhooks"]
    assert hook["name"] == names.WEBHOOK_NAME
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 5
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "Never"  # IfNeeded: AlwaysPullImages refuses pods
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert "caBundle" not in hook["clientConfig"]  # filled in at install time, never shipped
    service_ref = hook["clientConfig"]["service"]
    service = find(base, "Service", service_ref["name"])
    assert service_ref["name"] == names.WEBHOOK_SERVICE
    assert service_ref["namespace"] == service["metadata"]["namespace"] == NS
    assert service_ref["path"] == "/mutate"
    assert service_ref["port"] in [p["port"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize(
    ("labels", "called"),
    [
        ({"kubernetes.io/metadata.name": "kube-system"}, False),
        ({"kubernetes.io/metadata.name": NS, names.LABEL_ENABLED: "false"}, False),
        ({"kubernetes.io/metadata.name": NS}, False),
        ({"kubernetes.io/metadata.name": "team-a", names.LABEL_ENABLED: "false"}, False),
        ({"kubernetes.io/metadata.name": "team-a"}, True),
        ({"kubernetes.io/metadata.name": "team-a", names.LABEL_ENABLED: "true"}, True),
        ({"kubernetes.io/metadata.name": "default"}, True),
        ({"kubernetes.io/metadata.name": "kube-public"}, True),
    ],
)
def test_namespace_selector(
    base: list[dict[str, Any]], labels: dict[str, str], called: bool
) -> None:
    [hook] = find(base, "MutatingWebhookConfiguration")["webhooks"]
    assert selector_matches(hook["namespaceSelector"], labels) is called


def test_webhook_serves_the_paths_the_manifests_use(base: list[dict[str, Any]]) -> None:
    from webhook.app import create_app

    app = create_app(config_module.Config())
    routes = {rule.rule: rule.methods or set() for rule in app.url_map.iter_rules()}
    hook = find(base, "MutatingWebhookConfiguration")["webhooks"][0]
    assert "POST" in routes[hook["clientConfig"]["service"]["path"]]
    [guard] = find(base, "ValidatingWebhookConfiguration")["webhooks"]
    assert "POST" in routes[guard["clientConfig"]["service"]["path"]]
    assert guard["clientConfig"]["service"] | {"path": ""} == hook["clientConfig"]["service"] | {
        "path": ""
    }
    probes = container(base, "Deployment", "image-sync-webhook")
    for probe in ("livenessProbe", "readinessProbe"):
        path = probes[probe]["httpGet"]["path"]
        assert "GET" in routes[path], path
        assert probes[probe]["httpGet"]["scheme"] == "HTTPS"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_prefetcher_serves_the_probe_path(base: list[dict[str, Any]]) -> None:
    source = "".join(p.read_text() for p in (ROOT / "prefetcher").glob("*.py"))
    served = set(re.findall(r'path == "(/[^"]*)"', source))
    assert served, "no path found in the prefetcher's HTTP server: the check would check nothing"
    c = container(base, "Deployment", "image-sync-prefetcher")
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] in served


# --- ports and arguments --------------------------------------------------------------------


def _port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def _named_port(c: dict[str, Any], name: str | int) -> int:
    if isinstance(name, int):
        return name
    [port] = [p["containerPort"] for p in c["ports"] if p["name"] == name]
    return int(port)


def test_webhook_container_arguments_ports_and_tls(base: list[dict[str, Any]]) -> None:
    deployment = find(base, "Deployment", "image-sync-webhook")
    spec = pod_spec(deployment)
    c = container(base, "Deployment", "image-sync-webhook")
    args = parse_args(c["args"], {})
    assert args.command == "webhook"
    from webhook.cli import DEFAULT_BIND

    assert _port(args.bind) == _port(DEFAULT_BIND) == names.WEBHOOK_PORT == _named_port(c, "https")
    service = find(base, "Service", names.WEBHOOK_SERVICE)
    [port] = service["spec"]["ports"]
    assert port["port"] == 443 and _named_port(c, port["targetPort"]) == names.WEBHOOK_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        assert _named_port(c, c[probe]["httpGet"]["port"]) == names.WEBHOOK_PORT
    # --cert and --key are the Secret's keys, mounted read-only.
    [tls_mount] = [m for m in c["volumeMounts"] if m["name"] == "tls"]
    assert tls_mount["readOnly"]
    assert args.cert == f"{tls_mount['mountPath']}/tls.crt"
    assert args.key == f"{tls_mount['mountPath']}/tls.key"
    [tls_volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert tls_volume["secret"]["secretName"] == names.WEBHOOK_TLS_SECRET == DEFAULT_SECRET_NAME


def test_prefetcher_container_arguments_and_ports(base: list[dict[str, Any]]) -> None:
    c = container(base, "Deployment", "image-sync-prefetcher")
    args = parse_args(c["args"], {})
    assert args.command == "prefetcher"
    from prefetcher.cli import DEFAULT_BIND

    assert _port(args.bind) == _port(DEFAULT_BIND) == names.PREFETCHER_PORT
    assert _named_port(c, "http") == names.PREFETCHER_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        assert _named_port(c, c[probe]["httpGet"]["port"]) == names.PREFETCHER_PORT
    service = find(base, "Service", "image-sync-prefetcher")
    [port] = service["spec"]["ports"]
    assert _named_port(c, port["targetPort"]) == names.PREFETCHER_PORT
    # The allocator the prefetcher's memory figures are measured with.
    from prefetcher.memory import ALLOCATOR_ENV

    env = env_of(c)
    assert {k: env[k]["value"] for k in ALLOCATOR_ENV} == ALLOCATOR_ENV


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_certificate_job_arguments(base: list[dict[str, Any]], kind: str) -> None:
    c = container(base, kind, "image-sync-certs")
    env = {"POD_NAMESPACE": NS}
    assert env_of(c)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = parse_args(c["args"], env)
    assert args.command == "certs" and args.apply
    assert args.service == names.WEBHOOK_SERVICE
    assert args.namespace == NS
    assert args.secret_name == names.WEBHOOK_TLS_SECRET
    assert args.webhook_config == names.WEBHOOK_CONFIGURATION
    assert args.validating_webhook_config == [names.POD_GUARD_CONFIGURATION]
    find(base, "ValidatingWebhookConfiguration", names.POD_GUARD_CONFIGURATION)
    assert args.out is None and args.secret_manifest is None
    # The names it will put in the certificate are the ones the API server dials.
    hook = find(base, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]
    assert f"{hook['name']}.{hook['namespace']}.svc" in service_dns_names(
        args.service, args.namespace
    )


def test_services_select_their_pods(base: list[dict[str, Any]]) -> None:
    for service in all_of(base, "Service"):
        selected = [
            d
            for d in all_of(base, "Deployment")
            if selector_matches(
                {"matchLabels": service["spec"]["selector"]},
                d["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert [d["metadata"]["name"] for d in selected] == [service["metadata"]["name"]]
    for deployment in all_of(base, "Deployment"):
        assert selector_matches(
            deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
        )


def test_webhook_availability(base: list[dict[str, Any]]) -> None:
    deployment = find(base, "Deployment", "image-sync-webhook")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(deployment)
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(term["podAffinityTerm"]["labelSelector"], labels)
    pdb = find(base, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert selector_matches(pdb["spec"]["selector"], labels)
    assert find(base, "Deployment", "image-sync-prefetcher")["spec"]["replicas"] == 2


# --- environment and configuration ---------------------------------------------------------


def test_environment_variables_are_ones_the_code_reads(base: list[dict[str, Any]]) -> None:
    import dataclasses

    source = "".join(
        p.read_text()
        for d in ("webhook", "prefetcher", "imagesync", "certs")
        for p in (ROOT / d).glob("*.py")
    )
    known = {config_module.CONFIG_ENV, "POD_NAMESPACE"} | {
        config_module.env_name(f.name) for f in dataclasses.fields(config_module.Config)
    }
    for workload in workloads(base):
        for c in pod_spec(workload)["containers"]:
            for name in env_of(c):
                assert name in known or f'"{name}"' in source, f"{name} is read by no code"


@pytest.mark.parametrize("name", ["image-sync-webhook", "image-sync-prefetcher"])
def test_config_file_and_namespace_reach_the_components(
    base: list[dict[str, Any]], name: str
) -> None:
    deployment = find(base, "Deployment", name)
    c = container(base, "Deployment", name)
    env = env_of(c)
    [mount] = [m for m in c["volumeMounts"] if m["name"] == "config"]
    assert env[config_module.CONFIG_ENV]["value"] == f"{mount['mountPath']}/config.yaml"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "config"]
    configmap = find(base, "ConfigMap", "image-sync-config")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "config.yaml" in configmap["data"]


def load_shipped_config(objects: list[dict[str, Any]], tmp_path: Path) -> config_module.Config:
    path = tmp_path / "config.yaml"
    path.write_text(find(objects, "ConfigMap", "image-sync-config")["data"]["config.yaml"])
    return config_module.load_config(str(path), environ={"POD_NAMESPACE": NS})


def test_shipped_config_is_valid(base: list[dict[str, Any]], tmp_path: Path) -> None:
    config = load_shipped_config(base, tmp_path)
    assert config.mode == "opt-out"
    prefixes = {str(p) for p in config.registries}
    raw = yaml.safe_load(find(base, "ConfigMap", "image-sync-config")["data"]["config.yaml"])
    assert raw["registries"] == ["harbor.example.internal", "nvcr.io/nvidia"]
    assert len(prefixes) == 2
    assert config.namespace == NS
    assert config.sweep_interval == 1800


def test_config_names_the_shipped_priority_class_and_image(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = load_shipped_config(base, tmp_path)
    priority = find(base, "PriorityClass")
    assert priority["metadata"]["name"] == names.KEEPER_PRIORITY_CLASS
    assert (
        getattr(config, "keeper_priority_class", names.KEEPER_PRIORITY_CLASS)
        == names.KEEPER_PRIORITY_CLASS
    )
    assert getattr(config, "tools_image", OUR_IMAGE) == OUR_IMAGE
    for workload in workloads(base):
        for c in pod_spec(workload)["containers"]:
            assert c["image"] == OUR_IMAGE


def test_opt_in_overlay_changes_only_the_mode(tmp_path: Path) -> None:
    base, opt_in = render("base"), render("overlays/opt-in")
    assert load_shipped_config(opt_in, tmp_path).mode == "opt-in"
    base_config = yaml.safe_load(
        find(base, "ConfigMap", "image-sync-config")["data"]["config.yaml"]
    )
    opt_config = yaml.safe_load(
        find(opt_in, "ConfigMap", "image-sync-config")["data"]["config.yaml"]
    )
    assert {**opt_config, "mode": "opt-out"} == base_config

    def without_config(objects: list[dict[str, Any]]) -> str:
        name = find(objects, "ConfigMap", "image-sync-config")["metadata"]["name"]
        kept = [o for o in objects if o["kind"] != "ConfigMap"]
        return yaml.safe_dump(kept).replace(name, "CONFIGMAP")

    assert without_config(base) == without_config(opt_in)


# --- priority class ---------------------------------------------------------------------------


def test_priority_class_is_the_lowest_and_never_preempts(base: list[dict[str, Any]]) -> None:
    priority = find(base, "PriorityClass")
    assert -1_000_000_000 <= priority["value"] < -10  # below the autoscaler's expendable cut-off
    assert priority["preemptionPolicy"] == "Never"
    assert priority["globalDefault"] is False


# --- security -------------------------------------------------------------------------------


def _dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(users[-1])


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_every_container_is_locked_down(target: str) -> None:
    for workload in workloads(render(target)):
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] == _dockerfile_uid()
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["serviceAccountName"]
        for c in spec["containers"]:
            security = c["securityContext"]
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where


def test_service_accounts_exist(base: list[dict[str, Any]]) -> None:
    accounts = {
        o["metadata"]["name"]
        for o in all_of(base, "ServiceAccount")
        if o["metadata"]["namespace"] == NS
    }
    used = {pod_spec(w)["serviceAccountName"] for w in workloads(base)}
    assert used == accounts
    for binding in all_of(base, "RoleBinding") + all_of(base, "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["name"] in accounts and subject["namespace"] == NS
        bound_role(base, binding)


def test_the_pod_namespace_holds_nothing_that_could_change_image_sync(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    pod_namespace = names.POD_NAMESPACE_DEFAULT
    assert load_shipped_config(base, tmp_path).pod_namespace == pod_namespace
    namespace = find(base, "Namespace", pod_namespace)
    assert namespace["metadata"]["labels"][names.LABEL_ENABLED] == "false"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    inside = sorted(
        (o["kind"], o["metadata"]["name"])
        for o in base
        if o["metadata"].get("namespace") == pod_namespace
    )
    assert inside == [
        ("Role", "image-sync-prefetcher"),
        ("RoleBinding", "image-sync-prefetcher"),
        ("ServiceAccount", names.POD_SERVICE_ACCOUNT),
    ]
    account = find(base, "ServiceAccount", names.POD_SERVICE_ACCOUNT)
    assert account["automountServiceAccountToken"] is False
    # The pods' ServiceAccount is bound to nothing.
    for binding in all_of(base, "RoleBinding") + all_of(base, "ClusterRoleBinding"):
        assert names.POD_SERVICE_ACCOUNT not in {s["name"] for s in binding["subjects"]}
    # The prefetcher's Role there holds only its pods, their Events, and reading the pull
    # secrets by name (for registry catalogs and sizes).
    [rules] = [
        bound_role(base, b)["rules"]
        for b in all_of(base, "RoleBinding")
        if b["metadata"]["namespace"] == pod_namespace
    ]
    assert {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]} == {
        ("pods", "create"),
        ("pods", "delete"),
        ("events", "create"),
        ("secrets", "get"),
    }


# --- RBAC against the code ------------------------------------------------------------------

# Client method suffix -> (API group, resource). Only the kubernetes client's own methods.
RESOURCES = {
    "namespaced_pod": ("", "pods"),
    "pod_for_all_namespaces": ("", "pods"),
    "node": ("", "nodes"),
    "namespace": ("", "namespaces"),
    "namespaced_event": ("", "events"),
    "namespaced_secret": ("", "secrets"),
    "namespaced_lease": ("coordination.k8s.io", "leases"),
    "cluster_custom_object": (names.GROUP, names.CACHED_IMAGE_PLURAL),
    "cluster_custom_object_status": (names.GROUP, f"{names.CACHED_IMAGE_PLURAL}/status"),
    "mutating_webhook_configuration": ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    "validating_webhook_configuration": ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
}  # fmt: skip
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch",
         "replace": "update", "delete": "delete"}  # fmt: skip
CALL = re.compile(r"\.(read|get|list|create|patch|replace|delete)_(\w+?)(?:_with_http_info)?\b")


def used_permissions(package: str) -> set[tuple[str, str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for verb, suffix in CALL.findall(path.read_text()):
            if suffix in RESOURCES:
                group, resource = RESOURCES[suffix]
                found.add((group, resource, VERBS[verb]))
    return found


def bound_role(objects: list[dict[str, Any]], binding: dict[str, Any]) -> dict[str, Any]:
    """The Role (in the binding's namespace) or ClusterRole a binding grants."""
    kind, name = binding["roleRef"]["kind"], binding["roleRef"]["name"]
    namespace = binding["metadata"].get("namespace") if kind == "Role" else None
    [role] = [
        o
        for o in all_of(objects, kind)
        if o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
    ]
    return role


def granted(
    objects: list[dict[str, Any]], account: str, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The rules `account` holds (only those of Roles in `namespace`, when given)."""
    rules = []
    for binding in all_of(objects, "RoleBinding") + all_of(objects, "ClusterRoleBinding"):
        if namespace is not None and binding["metadata"].get("namespace") != namespace:
            continue
        if any(s["name"] == account for s in binding["subjects"]):
            rules += bound_role(objects, binding)["rules"]
    return rules


def allows(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str = ""
) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (not r.get("resourceNames") or (name and name in r["resourceNames"]))
        for r in rules
    )


@pytest.mark.parametrize(
    ("package", "account"),
    [
        ("webhook", "image-sync-webhook"),
        ("prefetcher", "image-sync-prefetcher"),
        ("certs", "image-sync-certs"),
    ],
)
def test_rbac_grants_every_call_the_code_makes(
    base: list[dict[str, Any]], package: str, account: str
) -> None:
    used = used_permissions(package)
    assert used, f"no API call found in {package}: the check would check nothing"
    rules = granted(base, account)
    names_by_resource = {
        "secrets": names.WEBHOOK_TLS_SECRET,
        "mutatingwebhookconfigurations": names.WEBHOOK_CONFIGURATION,
        "validatingwebhookconfigurations": names.POD_GUARD_CONFIGURATION,
    }
    # Patching Nodes (the startup taint) is granted by an overlay (tests/prefetcher/test_rbac.py).
    optional = {(g, r, v) for g, r, v, _ in STARTUP_TAINT_CALLS}
    missing = [
        (g, r, v)
        for g, r, v in sorted(used - optional)
        if not allows(rules, g, r, v, names_by_resource.get(r, ""))
        # create cannot be limited by name, so it is granted without resourceNames
    ]
    assert missing == [], f"{account} lacks {missing}"


def test_webhook_rbac_is_exactly_what_it_needs(base: list[dict[str, Any]]) -> None:
    rules = granted(base, "image-sync-webhook")
    assert {
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in rules
    } == {
        ((names.GROUP,), (names.CACHED_IMAGE_PLURAL,), ("create", "get", "update")),
        ((names.GROUP,), (f"{names.CACHED_IMAGE_PLURAL}/status",), ("update",)),
    }
    # Every verb granted is one the code uses (the other direction is checked above).
    used = used_permissions("webhook")
    for rule in rules:
        for verb in rule["verbs"]:
            for resource in rule["resources"]:
                assert (rule["apiGroups"][0], resource, verb) in used, (resource, verb)


def test_prefetcher_rbac(base: list[dict[str, Any]]) -> None:
    rules = granted(base, "image-sync-prefetcher")
    # It lists and watches Nodes, CachedImages and pods (DESIGN.md); it never GETs one object.
    for group, resource in [("", "nodes"), ("", "pods"), (names.GROUP, names.CACHED_IMAGE_PLURAL)]:
        for verb in ("list", "watch"):
            assert allows(rules, group, resource, verb), (resource, verb)
    # Pods are created only in the pod namespace; in its own: the Lease, and deleting pods an
    # older release left there.
    pod_rules = granted(base, "image-sync-prefetcher", names.POD_NAMESPACE_DEFAULT)
    assert allows(pod_rules, "", "pods", "create") and allows(pod_rules, "", "pods", "delete")
    assert not any("leases" in r["resources"] for r in pod_rules)
    own_rules = granted(base, "image-sync-prefetcher", NS)
    assert allows(own_rules, "coordination.k8s.io", "leases", "update")
    assert allows(own_rules, "", "pods", "delete") and not allows(own_rules, "", "pods", "create")
    cluster_role = find(base, "ClusterRole", "image-sync-prefetcher")
    for verb in ("create", "delete", "update"):
        assert not allows(cluster_role["rules"], "", "pods", verb)
    assert not any("leases" in r["resources"] for r in cluster_role["rules"])
    assert not allows(rules, "scheduling.k8s.io", "priorityclasses", "get")
    # Pull secrets (registry catalogs): get by name in the pod namespace, where they live
    # beside the pods that use them; nowhere else, and nothing more.
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])
    assert not any("secrets" in r["resources"] for r in own_rules)
    secret_rules = [r for r in pod_rules if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secret_rules] == [["get"]]


def test_certs_rbac_is_limited_by_name(base: list[dict[str, Any]]) -> None:
    role = find(base, "Role", "image-sync-certs")
    for rule in role["rules"]:
        assert rule["resources"] == ["secrets"]
        if rule["verbs"] != ["create"]:
            assert sorted(rule["resourceNames"]) == [
                names.WEBHOOK_TLS_SECRET,
                f"{names.WEBHOOK_TLS_SECRET}-ca",
            ]
    mutating, validating = find(base, "ClusterRole", "image-sync-certs")["rules"]
    assert mutating["resources"] == ["mutatingwebhookconfigurations"]
    assert mutating["resourceNames"] == [names.WEBHOOK_CONFIGURATION]
    assert validating["resources"] == ["validatingwebhookconfigurations"]
    assert validating["resourceNames"] == [names.POD_GUARD_CONFIGURATION]
    assert sorted(mutating["verbs"]) == sorted(validating["verbs"]) == ["get", "patch"]
    # The webhook's own account cannot read the CA key.
    assert not any("secrets" in r["resources"] for r in granted(base, "image-sync-webhook"))


# --- cert-manager overlay ---------------------------------------------------------------------


def test_cert_manager_overlay_replaces_the_bootstrap() -> None:
    objects = render("overlays/cert-manager")
    for kind in ("Job", "CronJob"):
        assert all_of(objects, kind) == []
    assert not any(o["metadata"]["name"] == "image-sync-certs" for o in objects)
    config = find(objects, "MutatingWebhookConfiguration")
    namespace, certificate_name = config["metadata"]["annotations"][
        "cert-manager.io/inject-ca-from"
    ].split("/")
    certificate = find(objects, "Certificate", certificate_name)
    assert certificate["metadata"]["namespace"] == namespace == NS
    spec = certificate["spec"]
    # The Secret the webhook mounts, for the names the API server dials.
    tls_volume = next(
        v
        for v in pod_spec(find(objects, "Deployment", "image-sync-webhook"))["volumes"]
        if v["name"] == "tls"
    )
    assert spec["secretName"] == tls_volume["secret"]["secretName"]
    assert spec["dnsNames"] == service_dns_names(names.WEBHOOK_SERVICE, NS)
    assert "server auth" in spec["usages"]
    # Its issuer is a CA issuer whose CA comes from a self-signed issuer.
    issuer = find(objects, "Issuer", spec["issuerRef"]["name"])
    ca_certificate = next(
        c
        for c in all_of(objects, "Certificate")
        if c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
    )
    assert ca_certificate["spec"]["isCA"] is True
    root = find(objects, "Issuer", ca_certificate["spec"]["issuerRef"]["name"])
    assert root["spec"] == {"selfSigned": {}}
    # Everything else is the base.
    base_kinds = sorted((o["kind"], o["metadata"]["name"]) for o in render("base"))
    overlay_kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    dropped = set(base_kinds) - set(overlay_kinds)
    assert {name for _, name in dropped} <= {"image-sync-certs", "image-sync-certs-renew"}


# --- the installation guide ----------------------------------------------------------------


def _doc_commands(prefix: str) -> list[str]:
    text = (ROOT / "docs" / "install.md").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            commands.append(line.split("|")[0].split("#")[0].strip())
    return commands


def test_documented_certs_commands_parse() -> None:
    import shlex

    commands = _doc_commands("image-sync certs")
    assert len(commands) >= 3
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "certs"


def test_documented_kustomizations_exist() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    targets = re.findall(r"kubectl apply -k (manifests/[\w/-]+)", text)
    assert set(targets) == {
        "manifests/base",
        "manifests/overlays/cert-manager",
        "manifests/overlays/opt-in",
        "manifests/overlays/monitoring",
        "manifests/overlays/startup-taint",
        "manifests/overlays/admission-policy",
    }
    for target in targets:
        assert (ROOT / target / "kustomization.yaml").exists()
