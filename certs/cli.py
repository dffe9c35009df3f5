"""Command line of `image-sync certs`: arguments only; the work is imported when it runs."""

from __future__ import annotations

import argparse

from imagesync.config import Config
from imagesync.names import WEBHOOK_CONFIGURATION, WEBHOOK_TLS_SECRET

DEFAULT_SECRET_NAME = WEBHOOK_TLS_SECRET
DEFAULT_WEBHOOK_CONFIG = WEBHOOK_CONFIGURATION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Give at least one of --out, --secret-manifest, --apply. Stored material is reused: "
        "with --apply the cluster's Secrets, else the files in --out. The CA is kept as long "
        "as it is valid; the serving certificate is renewed when it is close to expiry or its "
        "names changed. Running it again changes nothing."
    )
    parser.add_argument("--out", metavar="DIR", help="write ca.crt, tls.crt, tls.key (and ca.key)")
    parser.add_argument("--service", metavar="NAME", required=True, help="the webhook Service")
    parser.add_argument(
        "--namespace",
        metavar="NS",
        help="the Service's namespace, also where --apply keeps the Secrets "
        "(default: the configured namespace, $POD_NAMESPACE or image-sync)",
    )
    parser.add_argument(
        "--san",
        metavar="NAME",
        action="append",
        default=[],
        help="extra subject alternative name; IP addresses become IP SANs (repeatable)",
    )
    parser.add_argument(
        "--secret-manifest",
        metavar="FILE",
        help="write a kubernetes.io/tls Secret manifest (with ca.crt) to FILE, or - for stdout",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="create/update the Secrets in the cluster and patch caBundle into the webhook configuration",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="with --apply: kubeconfig (default: $KUBECONFIG, else in-cluster)",
    )
    parser.add_argument(
        "--secret-name",
        metavar="NAME",
        default=DEFAULT_SECRET_NAME,
        help=f"the TLS Secret (default {DEFAULT_SECRET_NAME}; the CA goes to NAME-ca)",
    )
    parser.add_argument(
        "--webhook-config",
        metavar="NAME",
        default=DEFAULT_WEBHOOK_CONFIG,
        help=f"MutatingWebhookConfiguration whose webhooks get the caBundle (default {DEFAULT_WEBHOOK_CONFIG})",
    )
    parser.add_argument(
        "--validating-webhook-config",
        metavar="NAME",
        action="append",
        default=[],
        help="also a ValidatingWebhookConfiguration whose webhooks get the caBundle, when it "
        "exists (repeatable; the base names image-sync-pod-guard)",
    )
    parser.add_argument(
        "--renew-before",
        metavar="DURATION",
        default="30d",
        help="renew the serving certificate when less than this remains: 30d, 720h, or a "
        "share of its lifetime like 33%% (default 30d)",
    )
    parser.add_argument(
        "--key-type",
        choices=("ec", "rsa"),
        default="ec",
        help="key algorithm for new keys: EC P-256 (default) or RSA 3072",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    from certs.main import main

    return main(args, config)
