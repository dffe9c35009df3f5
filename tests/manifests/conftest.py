"""The rendered base kustomization, shared by the tests that check it against the code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.render import render


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render("base")
