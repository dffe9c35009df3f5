"""What can be checked of the image without a container runtime: the Dockerfile's promises."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from imagesync import names
from tests.manifests.render import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
        if any(
            fnmatch.fnmatch(c, pattern)
            or (pattern.startswith("**/") and fnmatch.fnmatch(c, pattern[3:]))
            or pattern == "**"
            for c in candidates
        ):
            ignored = not negate
    return ignored


def test_base_image_and_entrypoint() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", DOCKERFILE, re.MULTILINE)
    assert all(
        args.split()[0] == "${PYTHON_IMAGE}" for word, args in instructions() if word == "FROM"
    )
    final = stages()[-1]
    assert ("ENTRYPOINT", '["image-sync"]') in final
    [user] = [args for word, args in final if word == "USER"]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:")  # numeric: runAsNonRoot


def test_sleeper_lands_where_the_prefetcher_looks() -> None:
    final = stages()[-1]
    copies = [args for word, args in final if word == "COPY" and "--from=sleeper" in args]
    assert len(copies) == 1
    assert copies[0].split()[-1] == names.SLEEPER_PATH
    assert "--chmod=0755" in copies[0]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for word, args in instructions():
        if word != "COPY" or "--from=" in args:
            continue
        sources = [a for a in args.split()[:-1] if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
            if (ROOT / source).is_dir():
                files = [p for p in (ROOT / source).rglob("*.py") if "__pycache__" not in p.parts]
                assert files and not any(dockerignored(str(p.relative_to(ROOT))) for p in files)


def test_every_package_but_the_simulator_is_copied() -> None:
    """The image runs the webhook, the prefetcher and the certificate job; the simulated
    cluster is the `image-sync[sim]` extra, a test and demo tool."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        source.rstrip("/")
        for word, args in instructions()
        if word == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    }
    assert "simulator" in packages
    assert packages - {"simulator"} <= copied
    assert "simulator" not in copied


def test_image_tag_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"ghcr.io/image-sync/image-sync:{project['project']['version']}" == names.IMAGE
    assert names.IMAGE in DOCKERFILE


def test_secrets_and_local_state_stay_out_of_the_context() -> None:
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/certs/test_cli.py",
        "webhook/__pycache__/x.pyc",
        "ca.key",
    ):
        assert dockerignored(path), path
