"""Shared fixtures. Every test runs offline on models and data that the project builds itself."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    """A bare `pytest` runs the browser test where Chromium and chromedriver are found, and elsewhere skips it saying
    why. `make test` leaves it out (-m "not browser"); `make test-browser` (ZEPHYR_REQUIRE_BROWSER=1, in .ci/run) runs
    it, and there a missing browser fails it."""
    if os.environ.get("ZEPHYR_REQUIRE_BROWSER"):
        return
    from tests.helpers import browser_paths

    found = all(browser_paths())
    if found:
        return
    skip = pytest.mark.skip(reason="no Chromium here: `make test-browser` installs it (apt) and runs this test")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _library_log_streams():
    """huggingface_hub, transformers and datasets give their loggers a handler bound to sys.stderr as it is when the
    library is first used: inside some test, whose captured stream is closed after it. A later test would then get
    "--- Logging error ---" tracebacks in its own output; such a handler is pointed at the current stream."""
    import logging
    import sys

    for name in ("huggingface_hub", "transformers", "datasets"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler and getattr(handler.stream, "closed", False):
                with handler.lock:  # not setStream: it flushes the closed stream first
                    handler.stream = sys.stderr
    yield


@pytest.fixture(scope="session", autouse=True)
def _builtin_home(tmp_path_factory):
    """Builtin models and datasets are materialised once per session, outside the user's cache."""
    if "ZEPHYR_RECIPES_HOME" not in os.environ:
        os.environ["ZEPHYR_RECIPES_HOME"] = str(tmp_path_factory.mktemp("zephyr-home"))
    yield


@pytest.fixture
def cli(capsys):
    """Run the real command line in process; returns (exit code, stdout, stderr)."""
    from zephyr_recipes.commands.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


# Finished tiny runs, trained once per test session through the real command line (real TRL training) and shared
# by the tests that only read them. A test that changes such a folder copies it first (shutil.copytree into its
# tmp_path); a test about producing a run (resume, overwrite, failure) makes its own.
TINY_SFT = ["dataset.max_train_samples=1280", "dataset.max_test_samples=32", "stage.trainer.num_train_epochs=1"]
TINY_DPO = ["dataset.path=builtin://tiny-ultrafeedback", "dataset.max_test_samples=16"]
TINY_AIF = ["dataset.max_train_samples=40"]


def _finished(folder, *args: str):
    from zephyr_recipes.commands.cli import main

    assert main([*args, f"run.output_dir={folder}"]) == 0, f"the shared run {folder} did not finish"
    return folder


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, _builtin_home):
    return tmp_path_factory.mktemp("tiny-runs")


@pytest.fixture(scope="session")
def tiny_sft_run(tiny_runs):
    """tiny/sft on 1280 rows for one epoch."""
    return _finished(tiny_runs / "sft", "tiny/sft", *TINY_SFT)


@pytest.fixture(scope="session")
def tiny_dpo_run(tiny_runs, tiny_sft_run):
    """tiny/dpo of tiny_sft_run on the embedded preference pairs."""
    return _finished(tiny_runs / "dpo", "tiny/dpo", f"model.name_or_path={tiny_sft_run}", *TINY_DPO)


@pytest.fixture(scope="session")
def tiny_aif_run(tiny_runs, tiny_sft_run):
    """tiny/aif on 40 prompts with tiny_sft_run as its three sampled generators (beside the teacher)."""
    return _finished(tiny_runs / "aif", "tiny/aif", *TINY_AIF,
                     *(f"stage.generators.{i}.model={tiny_sft_run}" for i in range(3)))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A cache home of the module's own (ZEPHYR_RECIPES_HOME) for the tests that count what gets prepared or cached."""
    old = os.environ.get("ZEPHYR_RECIPES_HOME")
    path = tmp_path_factory.mktemp("zhome")
    os.environ["ZEPHYR_RECIPES_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ZEPHYR_RECIPES_HOME", None)
    else:
        os.environ["ZEPHYR_RECIPES_HOME"] = old
