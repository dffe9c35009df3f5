"""What ships where: the container image's packages work without the `image-sync[sim]` extra,
and `image-sync sim` / `demo` say how to install it when it is missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PACKAGES = ("imagesync", "webhook", "prefetcher", "certs")

# Run in a fresh interpreter where the extra's modules cannot be imported, as in the image.
WITHOUT_SIM = """
import importlib, pkgutil, sys
sys.modules["simulator"] = None
sys.modules["jsonpatch"] = None
sys.modules["jsonschema"] = None
for name in {packages!r}:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
from imagesync.cli import main
sys.exit(main({argv!r}))
"""


def without_sim(*argv: str) -> subprocess.CompletedProcess[str]:
    code = WITHOUT_SIM.format(packages=IMAGE_PACKAGES, argv=list(argv))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def test_the_simulators_libraries_are_only_in_the_sim_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for library in ("jsonpatch", "jsonschema"):
        assert not [d for d in project["dependencies"] if d.startswith(library)]
        assert [d for d in project["optional-dependencies"]["sim"] if d.startswith(library)]


def test_the_image_packages_import_and_sim_says_how_to_install_the_extra() -> None:
    for command in (["sim", "--attach", "kubeconfig", "--no-scheduler"], ["demo", "--once"]):
        result = without_sim(*command)
        assert result.returncode == 2, result.stderr
        assert "pip install 'image-sync[sim]'" in result.stderr, result.stderr
        assert f"image-sync {command[0]}: the simulated cluster is not installed" in result.stderr


def test_the_other_subcommands_work_without_the_extra() -> None:
    result = without_sim("certs", "--help")
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout
