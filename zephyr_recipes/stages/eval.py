"""Evaluation: MT-Bench, AlpacaEval and the Open LLM Leaderboard (v1) tasks on ``model.name_or_path``.

Step 4 of the Zephyr method. The model answers MT-Bench's two-turn questions and AlpacaEval's instructions,
the configured judge grades (MT-Bench, 1-10) and compares with the baseline (AlpacaEval, both orders), and
lm-evaluation-harness scores the multiple-choice tasks. Answers and judgments are appended to JSONL stores as
they arrive, so a killed run started again asks neither the model nor the judge twice. The run folder holds:

- ``mt_bench/answers.jsonl``, ``mt_bench/judgments.jsonl`` (stores), ``mt_bench/model_answer.jsonl`` (FastChat's
  answer format);
- ``alpaca_eval/outputs.jsonl``, ``alpaca_eval/judgments.jsonl`` (stores), ``alpaca_eval/model_outputs.json``
  (alpaca_eval's format, readable by the official tool);
- ``lm_eval/results.json``; ``scores.json`` (every figure), ``radar.png``, ``README.md``.
"""

from __future__ import annotations

import difflib
import gc
import json
import logging
import os
from pathlib import Path

from ..errors import ZephyrError
from ..feedback.store import Store

log = logging.getLogger("zephyr_recipes")

BENCHMARKS = ("mt_bench", "alpaca_eval", "lm_eval")
FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
DEFAULTS = {
    "mt_bench": {
        "questions": "HuggingFaceH4/mt_bench_prompts",
        "judge_prompts": f"{FASTCHAT}/judge_prompts.jsonl",
        "reference_answers": f"{FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
        "max_questions": None,
        "max_new_tokens": 1024,
        "temperatures": {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1},
        "judge_max_new_tokens": 2048,
    },
    "alpaca_eval": {
        "instructions": "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json",
        "prompt": "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/src/alpaca_eval/"
                  "evaluators_configs/alpaca_eval_gpt4/alpaca_eval.txt",
        "max_samples": None,
        "seed": 0,
        "both_orders": True,
        "sampling": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 2048},
        "judge_max_new_tokens": 100,
    },
    "lm_eval": {
        "tasks": [{"name": "arc_challenge", "num_fewshot": 25}, {"name": "hellaswag", "num_fewshot": 10},
                  {"name": "mmlu", "num_fewshot": 5}, {"name": "truthfulqa_mc2", "num_fewshot": 0}],
        "batch_size": "auto",
        "limit": None,
        "seed": 1234,
    },
}
JUDGE_KEYS = {"transformers": {"model"}, "openai": {"base_url", "model"}, "function": {"module"}}
JUDGE_COMMON = {"type", "max_retries", "concurrency", "timeout", "backoff", "sampling", "batch_size", "model_config",
                "api_key_env"}


def _merge(where: str, given, defaults: dict) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ZephyrError(f"{where} must be a mapping", f"write {where} as key: value lines")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=1)
        raise ZephyrError(f"unknown key {where}.{unknown[0]}",
                          f"did you mean {close[0]}?" if close else f"known keys: {', '.join(defaults)}")
    out = {**defaults, **given}
    for key, value in defaults.items():  # nested mappings merge one level deep
        if isinstance(value, dict) and isinstance(given.get(key), dict):
            out[key] = {**value, **given[key]}
    return out


def check_config(cfg: dict) -> None:
    """Complete stage.mt_bench / alpaca_eval / lm_eval with their defaults and refuse what cannot run."""
    from ..evaluation.harness import normalise_tasks
    from .aif import _check_backend

    stage, hw = cfg["stage"], cfg["hardware"]
    if hw.get("launcher", "inprocess") != "inprocess" or hw.get("num_processes", 1) > 1 or hw.get("num_nodes", 1) > 1:
        raise ZephyrError(f"the eval stage runs in one process, and hardware profile {hw['name']!r} launches several",
                          "use hardware=1gpu (or cpu): generation and lm-eval run on one device")
    unknown = [b for b in stage["benchmarks"] if b not in BENCHMARKS]
    if unknown or not stage["benchmarks"]:
        raise ZephyrError(f"stage.benchmarks={stage['benchmarks']!r}", f"choose from: {', '.join(BENCHMARKS)}")
    for name in BENCHMARKS:
        stage[name] = _merge(f"stage.{name}", stage.get(name), DEFAULTS[name])
    if {"mt_bench", "alpaca_eval"} & set(stage["benchmarks"]):
        if not stage["judge"]:
            raise ZephyrError("the eval stage has no judge",
                              "set stage.judge (type: function, transformers or openai)")
        _check_backend("stage.judge", stage["judge"], JUDGE_KEYS, JUDGE_COMMON)
    if "lm_eval" in stage["benchmarks"]:
        normalise_tasks(stage["lm_eval"]["tasks"])
    samples = stage["alpaca_eval"]["max_samples"]
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise ZephyrError(f"stage.alpaca_eval.max_samples={samples!r}", "give a positive number, or null for all")


def _check_judge_ready(judge: dict) -> None:
    env = judge.get("api_key_env")
    if judge.get("type") == "openai" and env and not os.environ.get(env):
        raise ZephyrError(f"the judge's API key variable {env} is not set",
                          f"export {env}=... before the run (keys are read from the environment only)")


def _judge(cfg: dict, max_new_tokens: int):
    from ..feedback.judges import ModelJudge, make_judge

    spec = cfg["stage"]["judge"]
    judge = make_judge(spec, cfg["hardware"])
    if isinstance(judge, ModelJudge):
        judge.sampling = {"temperature": 0.0, "max_new_tokens": max_new_tokens, **(spec.get("sampling") or {})}
    return judge


def _backend(cfg: dict):
    from ..feedback.backends import TransformersBackend

    model = cfg["model"]
    return TransformersBackend(model["name_or_path"], model, cfg["hardware"], cfg["stage"]["batch_size"])


def run_mt_bench(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import mt_bench
    sec = cfg["stage"]["mt_bench"]
    questions = mt_bench.load_questions(sec["questions"], sec["max_questions"])
    function_judge = cfg["stage"]["judge"]["type"] == "function"
    prompts = None if function_judge else mt_bench.load_judge_prompts(sec["judge_prompts"])
    references = mt_bench.load_references(sec["reference_answers"])
    log.info("MT-Bench: %d questions from %s", len(questions), sec["questions"])
    out = folder / "mt_bench"
    answers, judgments = Store(out / "answers.jsonl"), Store(out / "judgments.jsonl")
    try:
        mt_bench.generate(backend(), questions, answers, sec["max_new_tokens"], sec["temperatures"])
        rows = mt_bench.answer_records(questions, answers, model_id)
        (out / "model_answer.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        judge = _judge(cfg, sec["judge_max_new_tokens"])
        mt_bench.judge_all(judge, questions, answers, judgments, prompts, references)
        del judge  # a local judge model leaves memory before the next one loads
        gc.collect()
    finally:
        answers.close()
        judgments.close()
    ids = {str(q.id) for q in questions}
    result = mt_bench.scores([j for j in judgments.records.values() if str(j["question_id"]) in ids])
    result["questions"] = len(questions)
    result["answered"] = len(rows)
    log.info("MT-Bench: %s (turn 1 %s, turn 2 %s; %d judge failures)", result["score"], result["turn_1"],
             result["turn_2"], result["failures"])
    return result


def run_alpaca_eval(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import alpaca
    from ..evaluation.sources import read_text

    sec = cfg["stage"]["alpaca_eval"]
    rows = alpaca.load_instructions(sec["instructions"], sec["max_samples"], sec["seed"])
    prompt = None if cfg["stage"]["judge"]["type"] == "function" else read_text(sec["prompt"], "AlpacaEval judge prompt")
    log.info("AlpacaEval: %d instructions from %s", len(rows), sec["instructions"])
    out = folder / "alpaca_eval"
    outputs, judgments = Store(out / "outputs.jsonl"), Store(out / "judgments.jsonl")
    try:
        alpaca.generate(backend(), rows, outputs, sec["sampling"])
        produced = alpaca.model_outputs(rows, outputs, model_id)
        alpaca.write_outputs(out / "model_outputs.json", produced)
        judge = _judge(cfg, sec["judge_max_new_tokens"])
        alpaca.judge_all(judge, rows, outputs, judgments, prompt, sec["both_orders"])
    finally:
        outputs.close()
        judgments.close()
    wanted = {alpaca.instruction_id(r["instruction"]) for r in rows}
    result = alpaca.scores(rows, produced, [j for j in judgments.records.values() if j["instruction_id"] in wanted])
    log.info("AlpacaEval: win rate %s ± %s (avg length %s; %d judge failures)", result["win_rate"],
             result["standard_error"], result["avg_length"], result["failures"])
    return result


def run(cfg: dict, folder: Path) -> dict:
    """Run the configured benchmarks; returns the scores (also written to scores.json)."""
    from .. import modeling
    from ..evaluation import plots

    stage = cfg["stage"]
    model_id = stage["model_id"] or cfg["run"]["name"]
    if {"mt_bench", "alpaca_eval"} & set(stage["benchmarks"]):
        _check_judge_ready(stage["judge"])
    modeling.resolve_source(cfg["model"]["name_or_path"], "model")  # a missing run folder fails here
    from transformers import set_seed

    set_seed(cfg["run"]["seed"])  # sampled answers (writing, roleplay, AlpacaEval) are repeatable
    loaded = {}

    def backend():  # one model for both benchmarks, loaded when first needed
        if "b" not in loaded:
            loaded["b"] = _backend(cfg)
        return loaded["b"]

    result = {"model": cfg["model"]["name_or_path"], "model_id": model_id,
              "judge": {k: stage["judge"].get(k) for k in ("type", "module", "model", "base_url") if stage["judge"].get(k)}}
    if "mt_bench" in stage["benchmarks"]:
        result["mt_bench"] = run_mt_bench(cfg, folder, backend, model_id)
    if "alpaca_eval" in stage["benchmarks"]:
        result["alpaca_eval"] = run_alpaca_eval(cfg, folder, backend, model_id)
    loaded.clear()
    gc.collect()
    if "lm_eval" in stage["benchmarks"]:
        from ..evaluation import harness

        placement = modeling.resolve_placement(cfg["hardware"])
        result["lm_eval"] = harness.run(stage["lm_eval"], cfg["model"], placement, folder)
    if result.get("mt_bench"):
        plots.radar({model_id: result["mt_bench"]["categories"]}, folder / "radar.png")
    return result
