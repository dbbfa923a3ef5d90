"""The row-kind seam: an installed package adds, by entry points only, a row kind (``graded``: a prompt, an answer
and a numeric score) and a trainer stage that reads it, and the real command line validates, previews and runs
them: the loader maps the kind's columns and runs its row check (a bad score is dropped and counted by its own
reason, or refused under dataset.strict), the prepared rows are cached under the kind's name and version, and
``validate`` / ``preview`` render the kind's conversations through the chat template.

The package is a throwaway distribution written into tmp_path, as in tests/test_registry_plugins.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import install_distribution
from tests.test_registry_plugins import ROOT
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.data import kinds

KIND = '''
"""A plugin row kind: one answer to a prompt with a numeric score (e.g. a grader's 1-10)."""
from zephyr_recipes.data import checks
from zephyr_recipes.data.kinds import RowKind, _column
from zephyr_recipes.data.tokens import tokenize_completion


def graded_row(row, cols, roles):
    out = {"prompt": [], "completion": [], "score": 0.0, "_reason": "", "_key": ""}
    try:
        prompt, completion = row[cols["prompt"]], row[cols["completion"]]
        prompt = checks.messages_of(prompt, roles) if isinstance(prompt, list) else checks._user(prompt)
        completion = (checks.messages_of(completion, roles) if isinstance(completion, list)
                      else checks._assistant(completion))
        score = row[cols["score"]]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise checks.Bad("not_a_score")
        checks.check_conversation(prompt + completion, end="assistant")
        out.update(prompt=prompt, completion=completion, score=float(score), _key=checks._key(prompt))
    except checks.Bad as bad:
        out["_reason"] = bad.reason
    return out


class Graded(RowKind):
    name = "graded"
    version = 3
    summary = "one answer to a prompt and its numeric score"
    columns = ("prompt", "completion", "score")
    source_keys = ("prompt", "completion", "score")
    reasons = {"not_a_score": "has a score that is not a number"}

    def fits(self, src, column_names):
        return (src.get("columns") or {}).get("score", "score") in column_names

    def source_columns(self, src, column_names):
        return {k: _column(src, column_names, k) for k in self.columns}

    def check(self, recipe, tokenizer):
        return graded_row, {}

    def features(self):
        import datasets

        m = checks.message_list()
        return checks.features({"prompt": m, "completion": m, "score": datasets.Value("float64")})

    def conversations(self, row):
        return {"": list(row["prompt"]) + list(row["completion"])}

    def tokenize(self, tokenizer, row, trainer):
        return {"": tokenize_completion(tokenizer, row["prompt"], row["completion"], trainer)}

    def example(self, instruction, answer, wrong, index):
        good = index % 2 == 0
        return {"prompt": instruction, "completion": answer if good else wrong, "score": 9.0 if good else 2.0}


KIND = Graded()
'''

STAGE = '''
"""A plugin stage: SFT on the graded answers (each row's prompt and answer as one conversation)."""
from zephyr_recipes.stages.sft import SFT

from zr_graded_plugin.graded import KIND


class GradedSFT(SFT):
    """SFT on graded answers (a plugin's stage)."""

    name = "graded_sft"
    rows = KIND

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        def chat(ds):
            if ds is None:
                return None
            return ds.map(lambda r: {"messages": list(r["prompt"]) + list(r["completion"])},
                          remove_columns=ds.column_names)
        return super().build_trainer(recipe, model, tokenizer, chat(train), chat(eval_dataset), args, load_other)


STAGE = GradedSFT()
'''

RECIPE = """\
defaults:
  - model: tiny
  - hardware: cpu
  - _self_

recipe:
  description: SFT on graded answers (a plugin's row kind)

dataset:
  path: graded.jsonl
  test_split: null
  columns: {score: rating}

stage:
  name: graded_sft
  trainer:
    max_length: 128
    per_device_train_batch_size: 2
    report_to: none
    save_strategy: "no"
"""


def rows(bad: bool = False) -> list[dict]:
    out = [{"prompt": f"name a colour {i}", "completion": f"blue {i}", "rating": float(i % 10)} for i in range(8)]
    if bad:
        out.append({"prompt": "name a colour x", "completion": "grey", "rating": "high"})
    return out


def install(site: Path) -> None:
    """Write the distribution zr-graded-plugin 0.1 into ``site`` as an installer would."""
    install_distribution(site, "zr_graded_plugin", {"graded.py": KIND, "stage.py": STAGE}, """\
        [zephyr_recipes.row_kinds]
        graded = zr_graded_plugin.graded

        [zephyr_recipes.stages]
        graded_sft = zr_graded_plugin.stage
        """)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(run a command with the plugin installed, the working folder holding graded.jsonl and graded.yaml)."""
    tmp = tmp_path_factory.mktemp("graded")
    install(tmp / "site")
    (tmp / "graded.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(bad=True)))
    (tmp / "graded.yaml").write_text(RECIPE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp / "site")]),
           "ZEPHYR_RECIPES_HOME": os.environ.get("ZEPHYR_RECIPES_HOME", str(tmp / "home")),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tmp, timeout=600)

    return run, tmp


def test_the_kind_is_found_by_its_entry_point(plugin):
    run, _ = plugin
    proc = run("-c", "from zephyr_recipes.data import kinds\n"
                     "k = kinds.get('graded')\n"
                     "print(k, kinds.KINDS.origin('graded'), 'graded' in kinds.KINDS.names())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["<row", "kind", "graded", "v3>", "package", "zr-graded-plugin", "True"]
    proc = run("-m", "zephyr_recipes", "list")
    assert proc.returncode == 0 and "graded_sft" in proc.stdout and "zr-graded-plugin" in proc.stdout, proc.stderr
    kinds_listed = proc.stdout.split("\nrow kinds")[1]
    assert "graded" in kinds_listed and "(from package zr-graded-plugin)" in kinds_listed
    chat = next(line for line in kinds_listed.splitlines() if line.strip().startswith("chat "))
    assert "(from " not in chat  # a built-in kind says no package


@pytest.mark.slow  # two subprocesses that load the data and a tokenizer (about 13 s): make test-slow
def test_validate_and_preview_read_the_kinds_rows(plugin):
    run, tmp = plugin
    proc = run("-m", "zephyr_recipes", "validate", "graded.yaml", "--no-preflight")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first row as the trainer sees it" in proc.stdout and "[[ blue 0</s>]]" in proc.stdout
    assert "not_a_score" in proc.stdout + proc.stderr  # the bad row: dropped and counted by its reason
    proc = run("-m", "zephyr_recipes", "preview", "graded.yaml", "-n", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "graded_sft data of graded.jsonl: 8 training rows" in proc.stdout and "--- example 2 (" in proc.stdout
    assert re.search(r"<\|user\|> name a colour (\d)</s><\|assistant\|>\[\[ blue \1</s>\]\]", proc.stdout)
    # the prepared rows are cached under the kind's name and version: a new version prepares them again
    load = ("import json, sys\n"
            "from zephyr_recipes import stages\n"
            "from zephyr_recipes.data import load_for_stage\n"
            "from zephyr_recipes.model import modeling\n"
            "from zephyr_recipes.runtime.compose import compose\n"
            "from zephyr_recipes.runtime.validate import validate\n"
            "kind = stages.get('graded_sft').rows\n"
            "type(kind).version = int(sys.argv[1])\n"
            "cfg = validate(compose('graded.yaml', [])[0], 'graded')\n"
            "train, _, info = load_for_stage(cfg, modeling.load_tokenizer(cfg.model), kind)\n"
            "print(json.dumps({**info['cache'], 'dropped': info['sources'][0]['dropped'],\n"
            "                  'columns': train.column_names, 'score': train[1]['score']}))\n")
    proc = run("-c", load, "3")
    assert proc.returncode == 0, proc.stderr
    cached = json.loads(proc.stdout.splitlines()[-1])
    assert cached["hit"] and cached["rows"] == "graded" and cached["dropped"] == {"not_a_score": 1}
    assert cached["columns"] == ["prompt", "completion", "score"] and cached["score"] == 1.0
    proc = run("-c", load, "4")
    assert proc.returncode == 0, proc.stderr
    bumped = json.loads(proc.stdout.splitlines()[-1])
    assert not bumped["hit"] and bumped["key"] != cached["key"]


def test_a_bad_score_is_refused_under_strict(plugin):
    run, _ = plugin
    proc = run("-m", "zephyr_recipes", "validate", "graded.yaml", "dataset.strict=true", "--no-preflight")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "row 8 of graded.jsonl [train] has a score that is not a number (not_a_score)" in proc.stderr
    assert "dataset.strict=false" in proc.stderr


@pytest.mark.slow  # trains the tiny model in a subprocess (make test-slow)
def test_a_run_of_the_plugins_stage_trains_on_the_kinds_rows(plugin):
    run, tmp = plugin
    out = tmp / "runs" / "graded"
    proc = run("-m", "zephyr_recipes", "graded.yaml", "stage.trainer.max_steps=2", f"run.output_dir={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    data = json.loads((out / "provenance.json").read_text())["data"]
    assert data["train"]["rows"] == 8 and data["train"]["dropped"] == {"not_a_score": 1}
    assert data["cache"]["rows"] == "graded"


def test_without_the_package_the_kind_is_unknown():
    with pytest.raises(ZephyrError, match="'graded' is not a row kind") as err:
        kinds.get("graded")
    assert "chat, pairs, unpaired, prompts" in err.value.fix


def test_a_kinds_reason_may_not_change_what_a_shared_one_says():
    with pytest.raises(ZephyrError, match="explains the reason 'not_a_label' otherwise"):
        type("Relabelled", (kinds.RowKind,), {"name": "relabelled", "reasons": {"not_a_label": "is odd"}})
    assert "is odd" not in kinds.checks.EXPLAIN.values()
