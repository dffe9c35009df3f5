"""Manifests and code agree: names, paths, ports, arguments, priority class, overlays, the guide."""

from __future__ import annotations

import re
from typing import Any

import pytest

from certs.cli import DEFAULT_SECRET_NAME, DEFAULT_WEBHOOK_CONFIG
from certs.names import service_dns_names
from imagesync import config as config_module
from imagesync import names
from imagesync.cli import build_parser
from tests.manifests.reading import NS, container, env_of, parse_args, pod_spec, selector_matches
from tests.manifests.render import ROOT, all_of, find, render

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


# --- priority class ---------------------------------------------------------------------------


def test_priority_class_is_the_lowest_and_never_preempts(base: list[dict[str, Any]]) -> None:
    priority = find(base, "PriorityClass")
    assert -1_000_000_000 <= priority["value"] < -10  # below the autoscaler's expendable cut-off
    assert priority["preemptionPolicy"] == "Never"
    assert priority["globalDefault"] is False


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
