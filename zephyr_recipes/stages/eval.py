"""Evaluation: MT-Bench, AlpacaEval (1 and 2.0 with its length-controlled win rate), Arena-Hard-Auto and the
Open LLM Leaderboard (v1) tasks on ``model.name_or_path``.

Step 4 of the Zephyr method. The model answers MT-Bench's two-turn questions, AlpacaEval's instructions and
Arena-Hard's prompts (or a benchmark's ``answers`` file holds answers another tool produced, and nothing is
generated); the configured judge grades (MT-Bench, 1-10) and compares with the baseline (AlpacaEval and
Arena-Hard, both orders), and lm-evaluation-harness scores the multiple-choice tasks. Answers and judgments are
appended to JSONL stores as they arrive, so a killed run started again asks neither the model nor the judge
twice. The run folder holds:

- ``mt_bench/answers.jsonl``, ``mt_bench/judgments.jsonl`` (stores), ``mt_bench/model_answer.jsonl`` (FastChat's
  answer format);
- ``alpaca_eval/outputs.jsonl``, ``alpaca_eval/judgments.jsonl`` (stores), ``alpaca_eval/model_outputs.json``
  (alpaca_eval's format, readable by the official tool);
- ``alpaca_eval_2/`` the same stores, ``annotations.json`` (alpaca_eval's annotation format) and the GLM weights;
- ``arena_hard/answers.jsonl``, ``arena_hard/judgments.jsonl`` (stores), ``arena_hard/model_answer/<model>.jsonl``
  (Arena-Hard's answer format);
- ``lm_eval/results.json``; ``scores.json`` (every figure), ``radar.png``, ``README.md``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ZephyrError
from ..feedback.specs import JudgeSpec
from ..feedback.store import Store
from ..schema import StageSection, option
from .base import TaskStage

log = logging.getLogger("zephyr_recipes")


BENCHMARKS = ("mt_bench", "alpaca_eval", "alpaca_eval_2", "arena_hard", "lm_eval")
JUDGED = ("mt_bench", "alpaca_eval", "alpaca_eval_2", "arena_hard")
OPTIONAL = ("alpaca_eval_2", "arena_hard")  # sections kept in the resolved config only when chosen
ALPACA_EVAL_CONFIGS = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/src/alpaca_eval/evaluators_configs"
FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"


# Questions in each public set (the plan's request counts): MT-Bench 80 two-turn questions, AlpacaEval's 805
# instructions, Arena-Hard-Auto v0.1's 500 and v2.0's 750 prompts.
PUBLISHED_SIZES = {"mt_bench": 80, "alpaca_eval": 805, "alpaca_eval_2": 805, "arena_hard_v0.1": 500,
                   "arena_hard_v2.0": 750}
JUDGE_HELP = "This benchmark's own judge (same keys as stage.judge); null: stage.judge."
ANSWERS_HELP = "Answers another tool produced, in the benchmark's own format ({}): judged, nothing generated."


@dataclass
class MTBenchConfig:
    questions: str = option("HuggingFaceH4/mt_bench_prompts", "The 80 two-turn questions (path, URL or hub id).")
    judge_prompts: str = option(f"{FASTCHAT}/judge_prompts.jsonl", "FastChat's judge prompts.")
    reference_answers: Optional[str] = option(f"{FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
                                          "Reference answers for math, reasoning and coding (FastChat's "
                                          "gpt-4.jsonl); null: none.")
    max_questions: Optional[int] = option(None, "Use the first N questions; null for all.")
    max_new_tokens: int = option(1024, "Tokens per answer of the model under test.")
    temperatures: dict = option({"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1},
                            "Sampling temperature per category (FastChat's); the rest 0.0.", merge=True)
    judge_max_new_tokens: int = option(2048, "Tokens of the judge's reply.")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("FastChat model_answer jsonl"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


@dataclass
class AlpacaEvalConfig:
    instructions: str = option("hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json",
                           "The 805 instructions with the baseline's outputs (text-davinci-003).")
    prompt: str = option(f"{ALPACA_EVAL_CONFIGS}/alpaca_eval_gpt4/alpaca_eval.txt", "The judge's ranking prompt.")
    max_samples: Optional[int] = option(None, "A seeded sample of N instructions; null for all.")
    seed: int = option(0, "Seed of the sample.")
    both_orders: bool = option(True, "Judge every pair in both orders (position bias cancels out).")
    sampling: dict = option({"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 2048},
                        "Sampling of the model under test.", merge=True)
    judge_max_new_tokens: int = option(100, "Tokens of the judge's reply.")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("alpaca_eval model_outputs.json"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


@dataclass
class AlpacaEval2Config(AlpacaEvalConfig):
    """AlpacaEval's keys with 2.0's files, and what its length-controlled win rate needs."""

    instructions: str = option("hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json",
                           "The 805 instructions with the gpt4_turbo baseline's outputs.")
    prompt: str = option(f"{ALPACA_EVAL_CONFIGS}/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt",
                     "The judge's prompt (alpaca_eval_clf.txt; alpaca_eval:<path> reads the installed package's copy).")
    judge_max_new_tokens: int = option(1, "Tokens of the judge's reply (one: the preferred output's letter).")
    df_gamed: Optional[str] = option("hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv",
                                 "alpaca_eval's df_gamed.csv, which the length-controlled GLM reads.")
    glm: str = option("length_controlled_v1", "The GLM: length_controlled_v1 or length_controlled_minimal.")
    logprobs: bool = option(True, "Weighted preferences from an OpenAI-compatible judge's log-probabilities.")


@dataclass
class ArenaHardConfig:
    version: str = option("v0.1", "v0.1 or v2.0: the null keys below take that version's public files.")
    questions: Optional[str] = option(None, "The prompts (question.jsonl).")
    baselines: Any = option(None, "{category: model_answer file} (or one file for every category).")
    system_prompts: Any = option(None, "{category: text, file, or judge_utils.py#NAME} (or one for every category).")
    judge_settings: Optional[str] = option(None, "config/arena-hard-v*.yaml: prompt template, verdict regexes, "
                                             "judge temperature.")
    max_questions: Optional[int] = option(None, "A seeded sample of N questions; null for all.")
    seed: int = option(0, "Seed of the sample and the bootstrap.")
    sampling: dict = option({"temperature": 0.0, "max_new_tokens": 4096}, "Sampling of the model under test.",
                        merge=True)
    judge_max_new_tokens: Optional[int] = option(None, "Tokens of the judge's reply; null: the settings' max_tokens.")
    strong_weight: int = option(3, "Weight of a strong verdict (A>>B) in the battles, as the benchmark counts it.")
    bootstrap_rounds: int = option(100, "Bootstrap rounds of the 95% interval.")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("Arena-Hard model_answer jsonl"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


@dataclass
class LmEvalConfig:
    tasks: list = option([{"name": "arc_challenge", "num_fewshot": 25}, {"name": "hellaswag", "num_fewshot": 10},
                      {"name": "mmlu", "num_fewshot": 5}, {"name": "truthfulqa_mc2", "num_fewshot": 0}],
                     "Tasks as [{name, num_fewshot, metric?, data_files? | yaml?}] (the Open LLM Leaderboard v1's).")
    batch_size: Any = option("auto", "lm-evaluation-harness's batch size.")
    limit: Optional[int] = option(None, "Examples per task; null for all.")
    seed: int = option(1234, "lm-evaluation-harness's seed.")


@dataclass
class EvalStageConfig(StageSection):
    """Evaluation of model.name_or_path: MT-Bench, AlpacaEval (1, and 2.0 with the length-controlled win rate),
    Arena-Hard-Auto, Open LLM Leaderboard tasks (lm-evaluation-harness).

    Each benchmark's sets are named by a local path, a URL, hf://datasets/<owner>/<name>/<file> or a hub dataset
    id. alpaca_eval_2 and arena_hard appear in the resolved config only when chosen."""

    benchmarks: list = option(["mt_bench", "alpaca_eval", "lm_eval"], f"Which to run: {', '.join(BENCHMARKS)}.")
    model_id: Optional[str] = option(None, "Name of the model in answer files and reports; defaults to run.name.")
    batch_size: Any = option("auto", "Generation batch size of the model under test (auto: 64 on a GPU, 32 on the CPU).")
    judge: Optional[JudgeSpec] = option(None, "The judge of every judged benchmark, unless one names its own.")
    mt_bench: MTBenchConfig = option(MTBenchConfig, "MT-Bench (FastChat's llm_judge, single-answer grading 1-10).")
    alpaca_eval: AlpacaEvalConfig = option(AlpacaEvalConfig, "AlpacaEval 1: win rate against text-davinci-003.")
    alpaca_eval_2: AlpacaEval2Config = option(AlpacaEval2Config, "AlpacaEval 2.0 with the length-controlled win rate.")
    arena_hard: ArenaHardConfig = option(ArenaHardConfig, "Arena-Hard-Auto: Bradley-Terry win rate against a baseline.")
    lm_eval: LmEvalConfig = option(LmEvalConfig, "Open LLM Leaderboard v1 tasks through lm-evaluation-harness.")


def check_config(cfg: dict) -> None:
    """Complete stage.mt_bench / alpaca_eval / lm_eval with their defaults and refuse what cannot run."""
    from ..evaluation.harness import normalise_tasks
    from ..feedback.judges import check_judge

    stage = cfg["stage"]
    unknown = [b for b in stage["benchmarks"] if b not in BENCHMARKS]
    if unknown or not stage["benchmarks"]:
        raise ZephyrError(f"stage.benchmarks={stage['benchmarks']!r}", f"choose from: {', '.join(BENCHMARKS)}")
    for name in OPTIONAL:  # absent unless chosen: the frozen configs of runs made before them still match
        if name not in stage["benchmarks"]:
            del stage[name]
    if "arena_hard" in stage["benchmarks"]:
        _check_arena_hard(stage["arena_hard"])
    if "alpaca_eval_2" in stage["benchmarks"]:
        _check_alpaca_eval_2(stage["alpaca_eval_2"])
        import importlib.util

        if importlib.util.find_spec("alpaca_eval") is None:
            raise ZephyrError("stage.benchmarks has alpaca_eval_2, whose LC win rate is computed by the alpaca-eval "
                              "package, which is not installed", "pip install 'zephyr-recipes[eval]'")
    for name in JUDGED:
        if name not in stage["benchmarks"]:
            continue
        if not judge_spec(stage, name):
            raise ZephyrError("the eval stage has no judge",
                              "set stage.judge (type: function, transformers or openai)")
        check_judge(judge_spec(stage, name)["type"], *ASKS[name])  # what the benchmark asks, it can do
    if "lm_eval" in stage["benchmarks"]:
        normalise_tasks(stage["lm_eval"]["tasks"])
    for name, key in (("alpaca_eval", "max_samples"), ("alpaca_eval_2", "max_samples"), ("mt_bench", "max_questions"),
                      ("arena_hard", "max_questions")):
        if name not in stage:
            continue
        value = stage[name][key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ZephyrError(f"stage.{name}.{key}={value!r}", "give a positive number, or null for all")


def _check_arena_hard(sec: dict) -> None:
    """The version's public files fill what the recipe leaves null (v0.1 or v2.0)."""
    from ..evaluation.arena_hard import VERSIONS

    version = str(sec["version"])
    if version not in VERSIONS:
        raise ZephyrError(f"stage.arena_hard.version={sec['version']!r}", f"choose from: {', '.join(VERSIONS)}")
    sec["version"] = version
    for key, value in VERSIONS[version].items():
        if sec.get(key) is None:
            sec[key] = dict(value) if isinstance(value, dict) else value
    for key in ("baselines", "system_prompts"):
        if isinstance(sec[key], str):  # one file for every category
            sec[key] = {"*": sec[key]}
        if not isinstance(sec[key], dict) or not sec[key]:
            raise ZephyrError(f"stage.arena_hard.{key} must map a category to a file",
                              f"write {key}: {{arena-hard-v0.1: path/or/URL}} (or one path for every category)")
    weight, rounds = sec["strong_weight"], sec["bootstrap_rounds"]
    if not isinstance(weight, int) or weight < 1 or not isinstance(rounds, int) or rounds < 1:
        raise ZephyrError(f"stage.arena_hard.strong_weight={weight!r}, bootstrap_rounds={rounds!r}",
                          "give positive whole numbers (the benchmark's: 3 and 100)")


def _check_alpaca_eval_2(sec: dict) -> None:
    from ..evaluation.alpaca_lc import GLMS

    if sec["glm"] not in GLMS:
        raise ZephyrError(f"stage.alpaca_eval_2.glm={sec['glm']!r}", f"choose from: {', '.join(GLMS)}")
    if sec["df_gamed"] is None and sec["glm"] != "length_controlled_minimal":
        raise ZephyrError(f"stage.alpaca_eval_2.df_gamed is null, and glm {sec['glm']} needs alpaca_eval's "
                          "df_gamed.csv", "give its path (or hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv), "
                          "or glm: length_controlled_minimal for an instruction set other than AlpacaEval's")


def _check_judge_ready(judge: dict) -> None:
    env = judge.get("api_key_env")
    if judge.get("type") == "openai" and env and not os.environ.get(env):
        raise ZephyrError(f"the judge's API key variable {env} is not set",
                          f"export {env}=... before the run (keys are read from the environment only)")


def judge_spec(stage: dict, name: str) -> dict:
    """A benchmark's own judge (stage.<benchmark>.judge), else the stage's."""
    return (stage.get(name) or {}).get("judge") or stage["judge"]


ASKS = {"mt_bench": ("grade", "MT-Bench"), "alpaca_eval": ("compare", "AlpacaEval"),
        "alpaca_eval_2": ("compare", "AlpacaEval 2.0"), "arena_hard": ("verdict", "Arena-Hard")}  # what each asks


def _reads_prompts(cfg: dict, name: str) -> bool:
    """Whether the benchmark's judge reads its judge prompts (checked first: its type can do what it asks)."""
    from ..feedback.judges import check_judge, reads_prompts

    kind = judge_spec(cfg["stage"], name)["type"]
    check_judge(kind, *ASKS[name])
    return reads_prompts(kind)


def _judge(cfg: dict, name: str, max_new_tokens: int, temperature: float = 0.0):
    """The benchmark's judge, made with its token budget and temperature (the spec's own sampling wins)."""
    from ..feedback.judges import make_judge

    return make_judge(judge_spec(cfg["stage"], name), cfg["hardware"],
                      sampling={"temperature": temperature, "max_new_tokens": max_new_tokens})


def _backend(cfg: dict):
    from ..feedback.backends import TransformersBackend

    model = cfg["model"]
    return TransformersBackend(model["name_or_path"], model, cfg["hardware"], cfg["stage"]["batch_size"])


@contextlib.contextmanager
def _stores(out: Path):
    """A benchmark's answers.jsonl and judgments.jsonl, closed whatever happens."""
    answers, judgments = Store(out / "answers.jsonl"), Store(out / "judgments.jsonl")
    try:
        yield answers, judgments
    finally:
        answers.close()
        judgments.close()


def _answers(sec: dict, imported, generate):
    """The benchmark's answers file when it names one (returns where they came from), else the model answers."""
    if sec["answers"]:
        return imported()
    generate()
    return None


def run_mt_bench(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import mt_bench, precomputed
    sec = cfg["stage"]["mt_bench"]
    questions = mt_bench.load_questions(sec["questions"], sec["max_questions"])
    prompts = mt_bench.load_judge_prompts(sec["judge_prompts"]) if _reads_prompts(cfg, "mt_bench") else None
    references = mt_bench.load_references(sec["reference_answers"])
    log.info("MT-Bench: %d questions from %s", len(questions), sec["questions"])
    out = folder / "mt_bench"
    with _stores(out) as (answers, judgments):
        imported = _answers(sec, lambda: precomputed.fastchat_answers(sec["answers"], questions, answers),
                            lambda: mt_bench.generate(backend(), questions, answers, sec["max_new_tokens"],
                                                      sec["temperatures"]))
        rows = mt_bench.answer_records(questions, answers, model_id)
        (out / "model_answer.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        judge = _judge(cfg, "mt_bench", sec["judge_max_new_tokens"])
        mt_bench.judge_all(judge, questions, answers, judgments, prompts, references)
        del judge  # a local judge model leaves memory before the next one loads
        gc.collect()
    ids = {str(q.id) for q in questions}
    result = mt_bench.scores([j for j in judgments.records.values() if str(j["question_id"]) in ids])
    result["questions"] = len(questions)
    result["answered"] = len(rows)
    if imported:
        result["answers_from"] = imported
    log.info("MT-Bench: %s (turn 1 %s, turn 2 %s; %d judge failures)", result["score"], result["turn_1"],
             result["turn_2"], result["failures"])
    return result


def _alpaca_answers(sec: dict, rows: list[dict], outputs: Store, backend) -> dict | None:
    from ..evaluation import alpaca, precomputed

    if sec["answers"]:
        return precomputed.alpaca_outputs(sec["answers"], rows, outputs)
    alpaca.generate(backend(), rows, outputs, sec["sampling"])
    return None


def run_alpaca_eval(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import alpaca
    from ..evaluation.sources import read_text

    sec = cfg["stage"]["alpaca_eval"]
    rows = alpaca.load_instructions(sec["instructions"], sec["max_samples"], sec["seed"])
    prompt = read_text(sec["prompt"], "AlpacaEval judge prompt") if _reads_prompts(cfg, "alpaca_eval") else None
    log.info("AlpacaEval: %d instructions from %s", len(rows), sec["instructions"])
    out = folder / "alpaca_eval"
    outputs, judgments = Store(out / "outputs.jsonl"), Store(out / "judgments.jsonl")
    try:
        imported = _alpaca_answers(sec, rows, outputs, backend)
        produced = alpaca.model_outputs(rows, outputs, model_id)
        alpaca.write_outputs(out / "model_outputs.json", produced)
        judge = _judge(cfg, "alpaca_eval", sec["judge_max_new_tokens"])
        alpaca.judge_all(judge, rows, outputs, judgments, prompt, sec["both_orders"])
    finally:
        outputs.close()
        judgments.close()
    wanted = {alpaca.instruction_id(r["instruction"]) for r in rows}
    result = alpaca.scores(rows, produced, [j for j in judgments.records.values() if j["instruction_id"] in wanted])
    if imported:
        result["answers_from"] = imported
    log.info("AlpacaEval: win rate %s ± %s (avg length %s; %d judge failures)", result["win_rate"],
             result["standard_error"], result["avg_length"], result["failures"])
    return result


def _reuse_alpaca_eval_answers(cfg: dict, folder: Path, rows: list[dict], outputs: Store) -> None:
    """The model's AlpacaEval 1 answers serve AlpacaEval 2.0 too (same instructions, same sampling): only the
    baseline and the judge differ, as on alpaca_eval's leaderboards."""
    from ..evaluation.alpaca import instruction_id

    stage = cfg["stage"]
    first, second = stage["alpaca_eval"], stage["alpaca_eval_2"]
    if "alpaca_eval" not in stage["benchmarks"] or first["answers"] or second["answers"] \
            or first["sampling"] != second["sampling"]:
        return
    earlier = Store(folder / "alpaca_eval" / "outputs.jsonl")  # read only
    for r in rows:
        rec = earlier.get(instruction_id(r["instruction"]))
        if rec and "output" in rec and rec["key"] not in outputs:
            outputs.add({**rec, "source": "alpaca_eval/outputs.jsonl"})


def run_alpaca_eval_2(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import alpaca, alpaca_lc
    from ..evaluation.sources import read_text

    sec = cfg["stage"]["alpaca_eval_2"]
    alpaca_lc._require_package()  # before any answer is generated
    rows = alpaca.load_instructions(sec["instructions"], sec["max_samples"], sec["seed"])
    prompt = read_text(alpaca_lc.package_file(sec["prompt"]), "AlpacaEval 2.0 judge prompt") \
        if _reads_prompts(cfg, "alpaca_eval_2") else None
    out = folder / "alpaca_eval_2"
    df_gamed = alpaca_lc.resolve_df_gamed(sec["df_gamed"], sec["glm"], rows, out)
    log.info("AlpacaEval 2.0: %d instructions from %s", len(rows), sec["instructions"])
    outputs, judgments = Store(out / "outputs.jsonl"), Store(out / "judgments.jsonl")
    try:
        _reuse_alpaca_eval_answers(cfg, folder, rows, outputs)
        imported = _alpaca_answers(sec, rows, outputs, backend)
        produced = alpaca.model_outputs(rows, outputs, model_id)
        alpaca.write_outputs(out / "model_outputs.json", produced)
        judge = _judge(cfg, "alpaca_eval_2", sec["judge_max_new_tokens"])
        alpaca_lc.judge_all(judge, rows, outputs, judgments, prompt, sec["both_orders"], sec["logprobs"])
    finally:
        outputs.close()
        judgments.close()
    wanted = {alpaca.instruction_id(r["instruction"]) for r in rows}
    by_iid = {alpaca.instruction_id(o["instruction"]): o["output"] for o in produced}
    result = alpaca_lc.scores(rows, by_iid, [j for j in judgments.records.values() if j["instruction_id"] in wanted],
                              model_id, sec["glm"], df_gamed, out)
    if imported:
        result["answers_from"] = imported
    log.info("AlpacaEval 2.0: LC win rate %s ± %s, win rate %s ± %s (%s preferences, GLM %s; %d judge failures)",
             result.get("length_controlled_winrate"), result.get("lc_standard_error"), result.get("win_rate"),
             result.get("standard_error"), result["preferences"], result["glm"], result["failures"])
    return result


def run_arena_hard(cfg: dict, folder: Path, backend, model_id: str) -> dict:
    from ..evaluation import arena_hard, precomputed

    sec = cfg["stage"]["arena_hard"]
    questions = arena_hard.load_questions(sec["questions"], sec["max_questions"], sec["seed"])
    settings = arena_hard.load_settings(sec["judge_settings"])
    categories = sorted({q["category"] for q in questions})

    def for_category(mapping: dict, category: str, what: str):
        if category in mapping:
            return mapping[category]
        if "*" in mapping:
            return mapping["*"]
        if len(mapping) == 1:
            return next(iter(mapping.values()))
        raise ZephyrError(f"stage.arena_hard.{what} has no entry for the category {category!r}",
                          f"add {category}: <file> (categories of these questions: {', '.join(categories)})")

    files: dict[str, tuple] = {}
    baselines, missing = {}, []
    for q in questions:
        spec = for_category(sec["baselines"], q["category"], "baselines")
        if spec not in files:
            files[spec] = arena_hard.parse_answers(spec)
        name, answers = files[spec]
        if q["uid"] in answers:
            baselines[q["uid"]] = {"answer": answers[q["uid"]], "model": name or Path(spec).stem}
        else:
            missing.append(q["uid"])
    if missing:
        log.warning("Arena-Hard: the baseline has no answer to %d of %d prompts (%s%s); they are skipped "
                    "(all listed in arena_hard/missing_baseline.txt)", len(missing), len(questions),
                    ", ".join(missing[:5]), " ..." if len(missing) > 5 else "")
    system_prompts = {}
    if _reads_prompts(cfg, "arena_hard"):
        system_prompts = {c: arena_hard.read_prompt(for_category(sec["system_prompts"], c, "system_prompts"),
                                                    "Arena-Hard judge system prompt") for c in categories}
    log.info("Arena-Hard %s: %d prompts from %s", sec["version"], len(questions), sec["questions"])
    out = folder / "arena_hard"
    if missing:
        out.mkdir(parents=True, exist_ok=True)
        (out / "missing_baseline.txt").write_text("".join(f"{uid}\n" for uid in missing))
    with _stores(out) as (answers, judgments):
        imported = _answers(sec, lambda: precomputed.arena_hard_answers(sec["answers"], questions, answers),
                            lambda: arena_hard.generate(backend(), [q for q in questions if q["uid"] in baselines],
                                                        answers, sec["sampling"]))
        rows = arena_hard.answer_records(questions, answers, model_id)
        (out / "model_answer").mkdir(parents=True, exist_ok=True)
        (out / "model_answer" / f"{model_id.replace('/', '_')}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        temperature = settings.get("temperature")  # the benchmark's judge temperature, unless the spec sets one
        judge = _judge(cfg, "arena_hard", sec["judge_max_new_tokens"] or int(settings.get("max_tokens") or 4096),
                       0.0 if temperature is None else float(temperature))
        arena_hard.judge_all(judge, questions, answers, baselines, judgments, settings, system_prompts)
        del judge
        gc.collect()
    ids = {q["uid"] for q in questions}
    result = arena_hard.scores(questions, [j for j in judgments.records.values() if j["uid"] in ids], missing,
                               sec["strong_weight"], sec["bootstrap_rounds"], sec["seed"])
    result.update(version=sec["version"], answered=len(rows))
    if imported:
        result["answers_from"] = imported
    log.info("Arena-Hard: %s (95%% CI %s; %d battles, %d judge failures, %d prompts without a baseline answer)",
             result["score"], result["ci_95"], result["battles"], result["failures"], result["missing_baseline"])
    return result


RUNNERS = {"mt_bench": run_mt_bench, "alpaca_eval": run_alpaca_eval, "alpaca_eval_2": run_alpaca_eval_2,
           "arena_hard": run_arena_hard}


def needs_model(stage: dict) -> bool:
    """Whether the model under test is needed: not when every judged benchmark scores an answers file."""
    return "lm_eval" in stage["benchmarks"] or any(
        b in stage["benchmarks"] and not stage[b].get("answers") for b in JUDGED)


def run(cfg: dict, folder: Path) -> dict:
    """Run the configured benchmarks; returns the scores (also written to scores.json)."""
    from .. import modeling
    from ..evaluation import plots

    stage = cfg["stage"]
    model_id = stage["model_id"] or cfg["run"]["name"]
    for name in JUDGED:
        if name in stage["benchmarks"]:
            _check_judge_ready(judge_spec(stage, name))
    from ..evaluation import precomputed

    for name in JUDGED:  # answer files in the wrong format stop the run before any model answers
        if name in stage["benchmarks"] and stage[name].get("answers"):
            precomputed.check(name, stage[name]["answers"])
    if needs_model(stage):
        modeling.resolve_source(cfg["model"]["name_or_path"], "model")  # a missing run folder fails here
    from transformers import set_seed

    set_seed(cfg["run"]["seed"])  # sampled answers (writing, roleplay, AlpacaEval) are repeatable
    loaded = {}

    def backend():  # one model for every benchmark, loaded when first needed
        if "b" not in loaded:
            loaded["b"] = _backend(cfg)
        return loaded["b"]

    result = {"model": cfg["model"]["name_or_path"], "model_id": model_id,
              "judge": {k: stage["judge"].get(k) for k in ("type", "module", "model", "base_url") if stage["judge"].get(k)}}
    for name in JUDGED:  # in this order, whatever the list's: the random streams of the first two stay as they were
        if name in stage["benchmarks"]:
            result[name] = RUNNERS[name](cfg, folder, backend, model_id)
            own = stage[name].get("judge")
            if own:
                result[name]["judge"] = {k: own.get(k) for k in ("type", "module", "model", "base_url") if own.get(k)}
    loaded.clear()
    gc.collect()
    if "lm_eval" in stage["benchmarks"]:
        from ..evaluation import harness

        placement = modeling.resolve_placement(cfg["hardware"])
        result["lm_eval"] = harness.run(stage["lm_eval"], cfg["model"], placement, folder)
    if result.get("mt_bench"):
        plots.radar({model_id: result["mt_bench"]["categories"]}, folder / "radar.png")
    return result


class Eval(TaskStage):
    """MT-Bench, AlpacaEval 1/2.0, Arena-Hard and lm-eval tasks of model.name_or_path."""

    name = "eval"
    schema = EvalStageConfig
    rows = None  # the benchmarks name their own sets
    result_file = "scores.json"
    finished_hint = "compare runs with `zephyr-recipes report {folder} ...`"

    def check(self, cfg: dict) -> None:
        check_config(cfg)

    def reads(self, cfg: dict) -> str:
        return ", ".join(cfg["stage"].get("benchmarks") or []) or "no benchmarks"

    def inputs(self, cfg: dict) -> dict:
        return {"model": cfg["model"]["name_or_path"]}

    def reads_model(self, cfg: dict) -> bool:
        """Not when every benchmark scores answers another tool produced."""
        stage = cfg["stage"]
        return any(name not in JUDGED or not (stage.get(name) or {}).get("answers") for name in stage["benchmarks"])

    def loads(self, cfg: dict) -> list[dict]:
        from ..feedback.specs import load_of

        stage, out = cfg["stage"], []
        model = {"type": "transformers", "model": cfg["model"]["name_or_path"], "batch_size": stage["batch_size"]}
        for name in JUDGED:
            if name not in stage["benchmarks"]:
                continue
            sec = stage[name]
            full = PUBLISHED_SIZES[name] if name != "arena_hard" else PUBLISHED_SIZES[f"arena_hard_{sec['version']}"]
            n = min(full, sec.get("max_questions") or sec.get("max_samples") or full)
            turns = 2 if name == "mt_bench" else 1
            new = int(sec.get("max_new_tokens") or (sec.get("sampling") or {}).get("max_new_tokens") or 1024)
            if not sec.get("answers"):
                out.append(load_of(f"{name} answers", model, n * turns, new))
            judged = n * turns * (2 if sec.get("both_orders") or name == "arena_hard" else 1)
            budget = int(sec.get("judge_max_new_tokens") or 1024)
            out.append(load_of(f"{name} judge", judge_spec(stage, name), judged, budget))
        return out

    def execute(self, cfg: dict, folder: Path) -> dict:
        return run(cfg, folder)

    def card(self, cfg: dict, prov: dict, result: dict) -> str:
        from ..evaluation.card import eval_card

        return eval_card(cfg, prov, result)

    def headline(self, result: dict) -> dict:
        out = {}
        if result.get("mt_bench"):
            out["mt_bench"] = result["mt_bench"]["score"]
        if result.get("alpaca_eval"):
            out["alpaca_eval"] = result["alpaca_eval"]["win_rate"]
        for task, value in (result.get("lm_eval") or {}).items():
            out[task] = value["value"]
        return out


STAGE = Eval()
