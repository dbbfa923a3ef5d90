"""A rehearsal's benchmark stand-ins are each benchmark's own (`Benchmark.standin`): the built-in ones write their
files in the benchmark's public format, which the benchmark's own readers then read, and a benchmark that says
nothing about rehearsals (an outside plugin's) gets the default: its sizes shrink and its keys stay."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Optional

import pytest

from zephyr_recipes import benchmarks
from zephyr_recipes.benchmarks import Benchmark, Metric, Standins
from zephyr_recipes.core.schema import option
from zephyr_recipes.evaluation import alpaca, arena_hard, harness, mt_bench
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.rehearse import _remote
from zephyr_recipes.runtime.validate import validate


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> dict:
    """The stage section of the paper's evaluation recipe, validated: every built-in benchmark, remote files."""
    out = tmp_path_factory.mktemp("eval")
    raw, name, _ = compose("zephyr-7b-beta/eval", [f"run.output_dir={out}"])
    return validate(raw, name).config["stage"]


def _standin(stage: dict, name: str, folder) -> tuple[dict, list[str]]:
    sec = copy.deepcopy(stage[name])
    return sec, benchmarks.get(name).standin(sec, Standins(folder, _remote, 16))


def test_mt_bench_stands_in_fastchat_files(stage, tmp_path):
    sec, notes = _standin(stage, "mt_bench", tmp_path)
    assert notes == [f"stage.mt_bench: questions, reference_answers, judge_prompts -> stand-in files in {tmp_path}"]
    assert sec["questions"] == "builtin://tiny-zephyr-eval/question.jsonl" and sec["reference_answers"] is None
    assert sec["max_new_tokens"] == 16 and sec["max_questions"] == 4
    questions = mt_bench.load_questions(sec["questions"], sec["max_questions"], sec["seed"])
    assert len(questions) == 4 and all(len(q.turns) == 2 for q in questions)
    prompts = mt_bench.load_judge_prompts(sec["judge_prompts"])  # FastChat's judge_prompts.jsonl, read by its reader
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(prompts)


def test_alpaca_eval_stands_in_model_outputs_and_a_judge_prompt(stage, tmp_path):
    sec, notes = _standin(stage, "alpaca_eval", tmp_path)
    assert notes == [f"stage.alpaca_eval: instructions, prompt -> stand-in files in {tmp_path}"]
    assert sec["max_samples"] == 10 and sec["sampling"]["max_new_tokens"] == 16
    assert sec["sampling"]["temperature"] == 0.7  # the recipe's own sampling, only shorter
    rows = alpaca.load_instructions(sec["instructions"], sec["max_samples"], sec["seed"])
    assert len(rows) == 10 and all(r["instruction"] and r["output"] for r in rows)
    text = (tmp_path / "alpaca_judge.txt").read_text()
    assert all(f"{{{k}}}" in text for k in ("instruction", "output_1", "output_2"))


def test_alpaca_eval_2_drops_the_hub_df_gamed_for_the_minimal_glm(stage, tmp_path):
    sec, notes = _standin(stage, "alpaca_eval_2", tmp_path)
    assert notes == [f"stage.alpaca_eval_2: instructions, prompt, df_gamed (none: glm length_controlled_minimal) "
                     f"-> stand-in files in {tmp_path}"]
    assert sec["df_gamed"] is None and sec["glm"] == "length_controlled_minimal"
    local = tmp_path / "df_gamed.csv"
    local.write_text("x\n")
    kept = {**copy.deepcopy(stage["alpaca_eval_2"]), "df_gamed": str(local), "prompt": str(local)}
    notes = benchmarks.get("alpaca_eval_2").standin(kept, Standins(tmp_path, _remote, 16))
    assert kept["df_gamed"] == str(local) and kept["glm"] == "length_controlled_v1"  # a local file is the user's
    assert kept["prompt"] == str(local) and notes == [f"stage.alpaca_eval_2: instructions -> stand-in files in "
                                                      f"{tmp_path}"]


def test_arena_hard_stands_in_its_question_baseline_and_settings_files(stage, tmp_path):
    sec, notes = _standin(stage, "arena_hard", tmp_path)
    assert notes == [f"stage.arena_hard: questions, baselines, system_prompts, judge_settings -> stand-in files in "
                     f"{tmp_path}"]
    questions = arena_hard.load_questions(sec["questions"], sec["max_questions"], sec["seed"])
    assert len(questions) == 4 and {q["category"] for q in questions} == {"arena-hard-v0.1"}
    model, answers = arena_hard.parse_answers(sec["baselines"]["*"])
    assert model == "teacher" and len(answers) == 12
    settings = arena_hard.load_settings(sec["judge_settings"])
    assert settings["max_tokens"] == 16 and "{ANSWER_B}" in settings["prompt_template"]
    assert sec["sampling"]["max_new_tokens"] == 16


def test_lm_eval_runs_one_arc_schema_task(stage, tmp_path):
    sec, notes = _standin(stage, "lm_eval", tmp_path)
    assert notes == ["stage.lm_eval.tasks arc_challenge, hellaswag, mmlu, truthfulqa_mc2 -> arc_challenge on "
                     "ARC-schema stand-in questions (builtin://tiny-arc), 8 of them"]
    assert harness.normalise_tasks(sec["tasks"])[0]["data_files"] == "builtin://tiny-arc"
    assert sec["limit"] == 8 and sec["batch_size"] == 8
    assert not list(tmp_path.iterdir())  # no files of its own


def test_ifeval_keeps_its_shipped_prompts_and_only_shrinks(stage, tmp_path):
    before = copy.deepcopy(stage["ifeval"])
    sec, notes = _standin(stage, "ifeval", tmp_path)
    assert notes == [] and not list(tmp_path.iterdir())
    assert sec == {**before, "max_questions": 4, "max_new_tokens": 16}


def test_the_stand_in_files_are_written_once_and_shared(stage, tmp_path):
    _standin(stage, "alpaca_eval", tmp_path)
    (tmp_path / "alpaca_judge.txt").write_text("{instruction} {output_1} {output_2} kept\n")
    sec, _ = _standin(stage, "alpaca_eval_2", tmp_path)  # the same format: the same file, not written again
    assert sec["prompt"] == str(tmp_path / "alpaca_judge.txt")
    assert (tmp_path / "alpaca_judge.txt").read_text().endswith("kept\n")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written file left


@dataclass
class RoundsConfig:
    questions: str = option("hf://datasets/someone/rounds/questions.jsonl", "The prompts.")
    max_questions: Optional[int] = option(None, "A sample of N; null for all.")
    max_new_tokens: int = option(512, "Tokens per answer.")
    sampling: dict = option({"temperature": 0.7, "max_new_tokens": 512}, "Sampling.", merge=True)


class Rounds(Benchmark):
    """An outside benchmark, as a plugin writes one: nothing about rehearsals."""

    name = "rounds"
    title = "Rounds"
    schema = RoundsConfig
    metrics = (Metric("rounds", "Rounds", ("score",)),)

    def run(self, ctx):
        raise NotImplementedError


def test_a_benchmark_without_a_stand_in_of_its_own_gets_the_default(tmp_path):
    sec = {"questions": "hf://datasets/someone/rounds/questions.jsonl", "max_questions": None, "max_new_tokens": 512,
           "sampling": {"temperature": 0.7, "max_new_tokens": 512}}
    notes = Rounds().standin(sec, Standins(tmp_path / "eval", _remote, 16))
    assert notes == []  # no files to swap in: its questions are its own
    assert sec == {"questions": "hf://datasets/someone/rounds/questions.jsonl", "max_questions": 4,
                   "max_new_tokens": 16, "sampling": {"temperature": 0.7, "max_new_tokens": 16}}
    assert not (tmp_path / "eval").exists()


def test_a_benchmark_with_files_only_swaps_what_is_not_here(tmp_path):
    class Files(Rounds):
        def standin_files(self, standins):
            return {"questions": standins.write("rounds.jsonl", json.dumps({"prompt": "Say hi."}) + "\n")}

    folder = tmp_path / "eval"
    remote = {"questions": "hf://datasets/someone/rounds/questions.jsonl"}
    notes = Files().standin(remote, Standins(folder, _remote, 16))
    assert remote["questions"] == str(folder / "rounds.jsonl") and json.loads((folder / "rounds.jsonl").read_text())
    assert notes == [f"stage.rounds: questions -> stand-in files in {folder}"]
    local = {"questions": str(tmp_path / "mine.jsonl")}
    assert Files().standin(local, Standins(folder, _remote, 16)) == [] and local["questions"].endswith("mine.jsonl")
