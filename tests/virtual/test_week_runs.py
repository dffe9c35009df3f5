"""`bench/evaluate_virtual.py --week --runs-dir`: a week that does not fit one sitting is
finished in several, each run replayed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.evaluate_virtual import main


def test_runs_kept_in_the_runs_dir_are_read_back_not_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--week", "--days", "0.05", "--policy", "none", "--workers", "1"]
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 0
    first = capsys.readouterr()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 2 and all(name.startswith("week-") for name in kept)
    assert "read from" not in first.err

    assert main([*argv, "--runs-dir", str(tmp_path)]) == 0
    second = capsys.readouterr()
    assert second.err.count("read from") == 2
    table = [line for line in first.out.splitlines() if line.startswith("| week-")]
    assert table and table == [row for row in second.out.splitlines() if row.startswith("| week-")]


def test_a_seed_draws_another_week_of_pods_on_the_variant_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--week", "--days", "0.05", "--policy", "none", "--workers", "1"]
    argv += ["--variant", "roomy", "--runs-dir", str(tmp_path)]
    assert main(argv) == 0
    default = capsys.readouterr().out
    assert main([*argv, "--seed", "2"]) == 0
    other = capsys.readouterr().out

    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 2 and sum("seed=2" in name for name in kept) == 1

    def rows(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("| week-")]

    assert rows(default) and all(row.startswith("| week-roomy |") for row in rows(default))
    assert rows(other) and rows(other) != rows(default)
