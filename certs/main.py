"""`image-sync certs`: load what is stored, decide with the pure core, store the result.

The one wiring point of the certs command; messages go to stderr so `--secret-manifest -`
can be piped into `kubectl apply -f -`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from certs import files
from certs.material import Existing, Outcome, ensure
from certs.names import IPAddress, service_dns_names, split_sans
from certs.pem import CertError
from certs.renewal import RenewBefore, parse_renew_before
from certs.secret import ca_secret_name, tls_secret, to_yaml
from imagesync.config import Config
from imagesync.kubeclient import KubeError

USAGE_ERROR = 2
FAILURE = 1


def _say(message: str) -> None:
    print(f"image-sync certs: {message}", file=sys.stderr)


def _describe(outcome: Outcome) -> list[str]:
    material = outcome.material
    ca_end = material.ca.cert.not_valid_after_utc
    cert_end = material.serving.cert.not_valid_after_utc
    lines = [f"note: {note}" for note in outcome.notes]
    if outcome.ca_reason:
        lines.append(f"new CA (valid until {ca_end:%Y-%m-%d}): {outcome.ca_reason}")
    else:
        lines.append(f"kept the CA (valid until {ca_end:%Y-%m-%d})")
    if outcome.serving_reason:
        lines.append(
            f"new serving certificate (valid until {cert_end:%Y-%m-%d}): {outcome.serving_reason}"
        )
    else:
        lines.append(f"kept the serving certificate (valid until {cert_end:%Y-%m-%d})")
    return lines


def main(args: argparse.Namespace, config: Config, now: datetime | None = None) -> int:
    """Run the command; returns the exit status (2: bad arguments, 1: the work failed)."""
    now = now or datetime.now(UTC)
    if not (args.out or args.secret_manifest or args.apply):
        _say("nothing to do: give --out DIR, --secret-manifest FILE|- and/or --apply")
        return USAGE_ERROR
    if args.kubeconfig and not args.apply:
        _say("--kubeconfig is only used with --apply")
        return USAGE_ERROR
    namespace = args.namespace or config.namespace
    try:
        renew_before = parse_renew_before(args.renew_before)
        dns_names = service_dns_names(args.service, namespace)
        extra_dns, ip_addresses = split_sans(args.san)
    except CertError as exc:
        _say(str(exc))
        return USAGE_ERROR
    dns_names += [name for name in extra_dns if name not in dns_names]
    out = Path(args.out) if args.out else None

    try:
        if args.apply:
            outcome = _apply(args, namespace, dns_names, ip_addresses, now, renew_before)
        else:
            existing = files.read_existing(out) if out else Existing()
            outcome = ensure(
                existing, dns_names, ip_addresses, now, renew_before, key_type=args.key_type
            )
        for line in _describe(outcome):
            _say(line)
        if out is not None:
            written = files.write_material(out, outcome.material)
            _say(
                f"wrote {', '.join(p.name for p in written)} in {out}"
                if written
                else f"{out} is up to date"
            )
        if args.secret_manifest:
            manifest = to_yaml([tls_secret(args.secret_name, namespace, outcome.material)])
            if args.secret_manifest == "-":
                sys.stdout.write(manifest)
                sys.stdout.flush()
            else:
                files.atomic_write(Path(args.secret_manifest), manifest.encode(), files.KEY_MODE)
                _say(f"wrote Secret {namespace}/{args.secret_name} to {args.secret_manifest}")
    except KubeError as exc:
        _say(str(exc))
        return FAILURE
    except CertError as exc:
        _say(str(exc))
        return FAILURE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _say(f"cannot write{where}: {exc.strerror or exc}")
        return FAILURE
    return 0


def _apply(
    args: argparse.Namespace,
    namespace: str,
    dns_names: list[str],
    ip_addresses: list[IPAddress],
    now: datetime,
    renew_before: RenewBefore,
) -> Outcome:
    from kubernetes.config import ConfigException

    from certs.cluster import Target, apply
    from imagesync.kubeclient import load_api_client

    try:
        api_client = load_api_client(args.kubeconfig)
    except (ConfigException, OSError) as exc:
        where = args.kubeconfig or "$KUBECONFIG"
        raise KubeError(f"cannot load the kubeconfig {where}: {exc}") from None
    with api_client:
        target = Target(
            namespace=namespace,
            secret_name=args.secret_name,
            webhook_configuration=args.webhook_config,
            validating_configurations=tuple(args.validating_webhook_config),
            dns_names=tuple(dns_names),
            ip_addresses=tuple(ip_addresses),
            renew_before=renew_before,
            key_type=args.key_type,
        )
        applied = apply(api_client, target, now)
    if applied.secrets_written:
        _say(f"wrote Secret(s) {', '.join(f'{namespace}/{n}' for n in applied.secrets_written)}")
    else:
        _say(
            f"Secrets {namespace}/{args.secret_name} and {ca_secret_name(args.secret_name)} are up to date"
        )
    if applied.webhooks_patched:
        _say(f"set caBundle on {applied.webhooks_patched} webhook(s) of {args.webhook_config}")
    else:
        _say(f"caBundle of {args.webhook_config} is up to date")
    return applied.outcome
