"""`kubectl apply -k manifests/base` against the simulated API server, then the certificate
Job's own command: what an admin does on day one, and again on upgrade."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from imagesync import names
from tests.manifests.render import ROOT, find, render
from tests.skips import skip_without

SCRIPT = Path(sys.executable).parent / "image-sync"


def test_install_bootstrap_reapply_and_declare(tmp_path: Path) -> None:
    from simulator import testing

    kubectl_path = shutil.which("kubectl")
    if kubectl_path is None:
        skip_without("kubectl", "run scripts/ensure-kubectl (make install does)")
    with testing.running_apiserver() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [kubectl_path, "--kubeconfig", str(kubeconfig), *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            return result

        def get(*args: str) -> dict[str, Any]:
            result: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json").stdout)
            return result

        kubectl("apply", "-k", str(ROOT / "manifests" / "base"))

        # The bootstrap Job's command, exactly as shipped ($(POD_NAMESPACE) expanded).
        [job_container] = find(render("base"), "Job", "image-sync-certs")["spec"]["template"][
            "spec"
        ]["containers"]
        args = [
            re.sub(r"\$\(POD_NAMESPACE\)", names.NAMESPACE_DEFAULT, a)
            for a in job_container["args"]
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SYNC_")}
        result = subprocess.run(
            [str(SCRIPT), *args, "--kubeconfig", str(kubeconfig)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

        secret = get("secret", "-n", names.NAMESPACE_DEFAULT, names.WEBHOOK_TLS_SECRET)
        assert secret["type"] == "kubernetes.io/tls"
        config = get("mutatingwebhookconfiguration", names.WEBHOOK_CONFIGURATION)
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

        # Re-applying the manifests (an upgrade) keeps the caBundle the Job set.
        kubectl("apply", "-k", str(ROOT / "manifests" / "base"))
        config = get("mutatingwebhookconfiguration", names.WEBHOOK_CONFIGURATION)
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

        # A user declares an image; the printer columns show it.
        declared = tmp_path / "declared.yaml"
        declared.write_text(
            json.dumps(
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.CACHED_IMAGE_KIND,
                    "metadata": {"name": "app"},
                    "spec": {
                        "image": "harbor.example.internal/library/app:1.0",
                        "source": names.SOURCE_DECLARED,
                        "nodeSelector": {"pool": "cpu"},
                    },
                }
            )
        )
        kubectl("apply", "-f", str(declared))
        table = kubectl("get", "cimg").stdout
        header = table.splitlines()[0].split()
        assert header[:3] == ["NAME", "IMAGE", "SOURCE"]
        assert "harbor.example.internal/library/app:1.0" in table and "Declared" in table
