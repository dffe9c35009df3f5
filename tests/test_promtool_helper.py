"""Without promtool its tests skip with one line, or fail when CI requires promtool."""

from __future__ import annotations

import pytest

from tests import promtool


def test_missing_promtool_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv(promtool.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="ensure-promtool") as skipped:
        promtool.promtool()
    assert "\n" not in str(skipped.value)


def test_missing_promtool_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv(promtool.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="promtool not found"):
        promtool.promtool()
