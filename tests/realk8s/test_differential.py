"""The simulator answers like the real server: every kind of call the project and its tests
make is sent to both, and their answers (status code, reason and causes, shape of the body)
must agree, except for the differences listed here with why (docs/simulator-apiserver.md)."""

from __future__ import annotations

import yaml

from imagesync.kubeclient import load_api_client
from simulator.testing import kube_client, running_apiserver
from tests.manifests.render import ROOT
from tests.realk8s.calls import exercise
from tests.realk8s.conftest import Installed
from tests.realk8s.differential import Recorder, differences

NAMESPACE = "differential"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TAINTS = "spec.taints"
# Always different, and why.
KNOWN = {
    ("node create", TAINTS): "the real server's TaintNodesByCondition admission adds "
    "node.kubernetes.io/not-ready, which its node-lifecycle controller removes once the node "
    "is Ready; the simulator has no node-lifecycle controller, so it adds no taint",
}
# Different or not depending on when the real node-lifecycle controller, which removes the
# not-ready taint by rewriting the node's taints, acts between the calls.
RACING = {
    ("node status patch", TAINTS),
    ("node get", TAINTS),
    ("node list by label", f"items[0].{TAINTS}"),
}


def test_the_simulator_answers_like_the_real_server(installed: Installed) -> None:
    real = Recorder(load_api_client(str(installed.control_plane.kubeconfig)))
    try:
        exercise(real, NAMESPACE)
    finally:
        real.api.close()
    crd = yaml.safe_load((ROOT / "manifests" / "base" / "crd-cachedimages.yaml").read_text())
    with running_apiserver() as server:
        simulated = Recorder(kube_client(server))
        simulated.send("", "POST", CRDS, crd, record=False)
        exercise(simulated, NAMESPACE)
        simulated.api.close()

    found = differences(simulated.answers, real.answers)
    unexpected = [d for d in found if (d.step, d.where) not in KNOWN.keys() | RACING]
    assert not unexpected, "\n".join(
        f"{d.step}: {d.where}: simulator {d.simulated!r}, real {d.real!r}" for d in unexpected
    )
    fixed = KNOWN.keys() - {(d.step, d.where) for d in found}
    assert not fixed, f"no longer different, remove from KNOWN: {sorted(fixed)}"
    assert len(real.answers) > 70  # the whole sequence ran
