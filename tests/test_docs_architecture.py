"""ARCHITECTURE.md is in the documentation site, as one text: docs/architecture.md includes it whole when mkdocs
builds, and every file of the package it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_includes_architecture_md_whole():
    page = (ROOT / "docs" / "architecture.md").read_text()
    lines = [line for line in page.splitlines() if line.strip() and not line.startswith("<!--")]
    assert lines == ['--8<-- "ARCHITECTURE.md"']  # nothing of its own that could drift from the file
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    snippets = [e for e in config["markdown_extensions"] if isinstance(e, dict) and "pymdownx.snippets" in e]
    assert snippets and snippets[0]["pymdownx.snippets"]["check_paths"] == "true"  # a missing file fails the build
    assert "architecture.md" in yaml.safe_dump(config["nav"])


def test_every_package_file_architecture_md_names_exists():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)", text))
    assert len(named) > 20
    missing = sorted(p for p in named if not (ROOT / "zephyr_recipes" / p).is_file() and not (ROOT / p).is_file())
    assert missing == []
