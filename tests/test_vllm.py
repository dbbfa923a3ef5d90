"""A real vLLM server (the environment `make vllm` builds) answering through the runner: an AI-feedback stage whose
generator is `type: vllm`, and an eval stage whose model under test is served by vLLM (`stage.vllm`). The model is
built here: the embedded tokenizer on a small Llama-architecture model that vLLM's CPU kernels accept."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm]


@pytest.fixture(scope="module")
def served_model(tmp_path_factory, _builtin_home) -> Path:
    from bench.run import vllm_test_model

    return vllm_test_model(tmp_path_factory.mktemp("vllm-model"))


def _no_server_left() -> bool:
    return subprocess.run(["pgrep", "-f", "vllm.entrypoints.openai.api_server"], capture_output=True).returncode != 0


def test_ai_feedback_generates_through_a_real_vllm_server(cli, served_model, tmp_path):
    out = tmp_path / "aif"
    code, _, err = cli("tiny/aif", "dataset.max_train_samples=12",
                       "stage.generators=[{name: vllm, type: vllm, model: '" + str(served_model) + "', "
                       "max_model_len: 512, sampling: {temperature: 0.7}}, "
                       "{name: teacher, type: function, function: 'zephyr_recipes.embedded.tasks:teacher'}]",
                       f"run.output_dir={out}")
    assert code == 0, err[-3000:]
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    mine = [r for r in rows if r["model"] == "vllm"]
    assert len(mine) == 12 and all("response" in r for r in mine), mine[:2]  # every prompt answered, none failed
    assert "Application startup complete" in (out / "serve-vllm.log").read_text()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert _no_server_left()


def test_an_eval_stage_answers_through_vllm(cli, served_model, tmp_path):
    out = tmp_path / "eval"
    code, _, err = cli("tiny/eval-heldout", f"model.name_or_path={served_model}", "stage.vllm={max_model_len: 512}",
                       "stage.mt_bench.max_questions=6", "stage.alpaca_eval.max_samples=6", f"run.output_dir={out}")
    assert code == 0, err[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    assert isinstance(scores["mt_bench"]["score"], float) and scores["alpaca_eval"]["n_total"] == 6
    assert (out / "serve-model.log").is_file() and _no_server_left()
