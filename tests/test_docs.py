"""The README documents every configuration key, so a new setting cannot ship undocumented."""

import dataclasses
from pathlib import Path

from imagesync.config import Config, yaml_key

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_config_key() -> None:
    text = README.read_text()
    missing = [
        yaml_key(f.name)
        for f in dataclasses.fields(Config)
        if f"| `{yaml_key(f.name)}` |" not in text
    ]
    assert not missing, f"README configuration table lacks: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("\n\n", 3)[:3]
    assert "make demo" in "\n".join(head) and "make test" in "\n".join(head)
