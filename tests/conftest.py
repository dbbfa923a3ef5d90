"""Shared fixtures. Every test runs offline on models and data that the project builds itself."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def _builtin_home(tmp_path_factory):
    """Builtin models and datasets are materialised once per session, outside the user's cache."""
    if "ZEPHYR_RECIPES_HOME" not in os.environ:
        os.environ["ZEPHYR_RECIPES_HOME"] = str(tmp_path_factory.mktemp("zephyr-home"))
    yield


@pytest.fixture
def cli(capsys):
    """Run the real command line in process; returns (exit code, stdout, stderr)."""
    from zephyr_recipes.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
