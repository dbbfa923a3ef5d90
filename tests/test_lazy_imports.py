"""Nothing is imported that a run does not use: `show`, `validate` and a real run of a DPO recipe import no benchmark
module (nor the evaluation, feedback or report code), in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs the real command line, then prints the zephyr_recipes (and matplotlib) modules imported (its last line of stdout).
PROBE = """
import json, sys
from zephyr_recipes.commands.cli import main
code = main(sys.argv[1:])
seen = sorted(m for m in sys.modules if m.startswith(("zephyr_recipes", "matplotlib")))
print(json.dumps({"code": code, "modules": seen}))
"""

# What a DPO recipe has no use for: the benchmarks (their registry and interface included), what they are scored
# with, the judges and generators, and the reports (report, ablation and the HTML page).
UNUSED = ("zephyr_recipes.benchmarks", "zephyr_recipes.evaluation", "zephyr_recipes.feedback",
          "zephyr_recipes.reports.ablation", "zephyr_recipes.reports.report", "zephyr_recipes.reports.page",
          "zephyr_recipes.stages.eval", "zephyr_recipes.stages.aif")


def imported(*args: str, home: Path) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZEPHYR_RECIPES_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=home,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, proc.stderr[-3000:]
    return set(result["modules"])


def unused(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "zephyr_recipes.benchmarks" or m.startswith(UNUSED))


DPO = ["tiny/dpo", "model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr",
       "dataset.path=builtin://tiny-ultrafeedback"]


@pytest.mark.parametrize("command", ["show", "validate"])
@pytest.mark.slow  # two fresh interpreters per case; make test's budget on a slower 2-core machine (make test-slow)
def test_show_and_validate_of_a_dpo_recipe_import_no_benchmark(command, tmp_path):
    modules = imported(command, *DPO, home=tmp_path)
    assert "zephyr_recipes.stages.dpo" in modules  # the probe sees what the command imported
    assert unused(modules) == []


@pytest.mark.slow  # a real run in a fresh interpreter (make test-slow)
def test_a_dpo_run_imports_no_benchmark(tmp_path):
    modules = imported(*DPO, "dataset.max_train_samples=16", "dataset.max_test_samples=8",
                       "stage.trainer.max_steps=1", "stage.trainer.per_device_train_batch_size=4",
                       "stage.trainer.report_to=none", f"run.output_dir={tmp_path / 'run'}", home=tmp_path)
    assert (tmp_path / "run" / "model.safetensors").exists() or any((tmp_path / "run").glob("*.safetensors"))
    assert {"zephyr_recipes.stages.dpo", "zephyr_recipes.stages.training", "zephyr_recipes.runtime.worker"} <= modules
    assert unused(modules) == []
    assert "matplotlib" not in modules  # the training curves are drawn with Pillow (about 0.3 s of import saved)


def test_the_report_still_reads_every_benchmark(tmp_path):
    """The tables built on first use hold what the import-time ones held."""
    from zephyr_recipes import benchmarks
    from zephyr_recipes.reports import ablation, report

    assert ablation.METRICS == ablation.metrics_table() and "mt_bench" in ablation.metrics_table()
    assert report.PUBLISHED is report.published()
    assert {k for row in report.published() for k in row} >= {m.key for b in benchmarks.all_benchmarks()
                                                                for m in b.metrics if b.references
                                                                for r in b.references if m.key in r.values}
