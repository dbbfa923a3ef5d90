"""One judge interface: every judge answers ``ask(kind, items, benchmark)``, callers never check its class; what a
judge type cannot do is refused by name; a benchmark's judge settings are given when the judge is made."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.benchmark_files import DATA
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.evaluation import arena_hard
from zephyr_recipes.feedback.backends import FunctionBackend
from zephyr_recipes.feedback.judges import (
    FunctionJudge,
    Item,
    Judge,
    ModelJudge,
    Verdict,
    check_judge,
    make_judge,
    parse_preference,
    parse_ranking,
    reads_prompts,
)
from zephyr_recipes.feedback.store import Store

ROOT = Path(__file__).resolve().parents[1]
AH = DATA / "arena_hard_v0.1"
QUESTION = [{"role": "user", "content": "Name three primes."}]
GRADED: list = []  # what grade() below was called with


# ------------------------------------------------------- a function judge module (this file): compare, no verdict
def grade(messages, response, reference=None):
    GRADED.append((response, reference))
    return 5.0


def compare(messages, first, second):
    return 1.0 if len(first) > len(second) else 0.0 if len(first) < len(second) else 0.5


class LengthJudge(Judge):
    """A judge that reads no prompt and can only compare (as a reward model does): longer is better."""

    type = "by_length"
    KINDS = frozenset({"compare"})

    def __init__(self, spec=None, hardware=None):
        self.seen: list = []

    @classmethod
    def from_spec(cls, spec: dict, hardware: dict | None = None) -> "LengthJudge":
        return cls(spec, hardware)

    def compare_many(self, items):
        for i, it in enumerate(items):
            self.seen.append(it)
            yield i, Verdict(compare(it.messages, *it.answers), "by length")


@pytest.fixture
def length_judge_type():
    """The judge type by_length, registered as a stage module would register one, and removed afterwards."""
    from zephyr_recipes.feedback.specs import JUDGE_MAKERS, JudgeSpec, register_judge

    @dataclass
    class LengthJudgeSpec(JudgeSpec):
        pass

    register_judge("by_length", LengthJudgeSpec, LengthJudge.from_spec)
    yield "by_length"
    JudgeSpec.TYPES.pop("by_length", None)
    JUDGE_MAKERS.pop("by_length", None)


# ------------------------------------------------------------------------------------------ refusals
def test_a_judge_that_cannot_do_a_kind_is_refused_naming_its_type_and_the_benchmark(length_judge_type):
    judge = LengthJudge()
    with pytest.raises(ZephyrError) as err:
        judge.ask("grade", [Item(QUESTION, ("2 3 5",))], "MT-Bench")
    assert "type by_length cannot grade" in str(err.value) and "MT-Bench" in str(err.value)
    assert "function, openai, transformers or vllm" in err.value.fix
    with pytest.raises(ZephyrError, match="type by_length cannot rate.*AI feedback"):
        judge.ask("rate", [Item(QUESTION, ("2 3 5",))], "AI feedback")
    assert judge.seen == []  # refused before any question was asked
    # the same answer from the type alone, as a recipe is checked before anything runs
    with pytest.raises(ZephyrError, match="type by_length cannot grade an answer 1-10, which MT-Bench needs"):
        check_judge("by_length", "grade", "MT-Bench")
    check_judge("by_length", "compare", "AlpacaEval")
    check_judge("by_length", "verdict", "Arena-Hard")  # slight verdicts from its comparisons
    for kind in ("rate", "grade", "compare", "verdict"):
        check_judge("function", kind, "x")
        check_judge("openai", kind, "x")
    assert not reads_prompts("by_length") and not reads_prompts("function")
    assert reads_prompts("openai") and reads_prompts("transformers")


def test_a_judge_type_that_cannot_grade_stops_mt_bench_before_it_judges(length_judge_type, cli, tmp_path):
    data = AH.parent / "mt_bench"
    questions = [json.loads(line) for line in (data / "question.jsonl").read_text().splitlines()][:2]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": q["question_id"], "model_id": "m", "choices": [
        {"index": 0, "turns": ["one", "two"]}]}) + "\n" for q in questions))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[mt_bench]",
                       f"stage.mt_bench.questions={data / 'question.jsonl'}", "stage.mt_bench.max_questions=2",
                       f"stage.mt_bench.answers={answers}", "stage.mt_bench.reference_answers=null",
                       "~stage.judge.module", "stage.judge={type: by_length}", f"run.output_dir={out}")
    assert code == 2 and "type by_length cannot grade" in err and "MT-Bench" in err
    assert not (out / "mt_bench").exists()


# ------------------------------------------------------------------------------- function judges
def test_function_judge_passes_the_reference_only_to_functions_that_take_one():
    GRADED.clear()
    items = [Item(QUESTION, ("2 3 5",), reference="2, 3 and 5"), Item(QUESTION, ("4",))]
    got = dict(FunctionJudge("tests.test_judges").ask("grade", items, "MT-Bench"))
    assert got[0].value == 5.0 and GRADED == [("2 3 5", "2, 3 and 5"), ("4", None)]
    # zephyr_recipes.embedded.judge.grade takes (messages, response) only: the reference is not passed to it
    import random

    from zephyr_recipes.embedded import tasks

    task = tasks.sample(random.Random(0))
    got = dict(FunctionJudge("zephyr_recipes.embedded.judge").ask(
        "grade", [Item([{"role": "user", "content": task.instruction}], (task.answer,), reference="no")], "MT-Bench"))
    assert got[0].value == 10.0


def test_verdicts_from_comparisons_when_a_judge_has_no_verdict_of_its_own():
    items = [Item(QUESTION, ("2 3 5 7", "2"), parse=lambda t: arena_hard.parse_verdict(t)),
             Item(QUESTION, ("2", "2 3 5 7")), Item(QUESTION, ("2 3", "5 7"))]
    for judge in (FunctionJudge("tests.test_judges"), LengthJudge()):  # a module without verdict(); a class
        got = dict(judge.ask("verdict", items, "Arena-Hard"))
        assert [got[i].value for i in range(3)] == ["A>B", "B>A", "A=B"]  # slight verdicts only
        assert [got[i].raw for i in range(3)] == ["[[A>B]]", "[[B>A]]", "[[A=B]]"]


def test_arena_hard_with_a_judge_that_only_compares_and_reads_no_prompt(tmp_path):
    questions = arena_hard.load_questions(str(AH / "question.jsonl"), max_questions=5, seed=3)
    settings = arena_hard.load_settings(str(AH / "arena-hard-v0.1.yaml"))
    _, base = arena_hard.parse_answers(AH / "gpt-4-0314.jsonl")
    baselines = {uid: {"answer": text, "model": "gpt-4-0314"} for uid, text in base.items()}
    answers, judgments = Store(tmp_path / "a.jsonl"), Store(tmp_path / "j.jsonl")
    for q in questions:
        answers.add({"key": q["uid"], "uid": q["uid"], "answer": "short"})
    judge = LengthJudge()
    arena_hard.judge_all(judge, questions, answers, baselines, judgments, settings, {})
    records = list(judgments.records.values())
    assert len(records) == 10 and all(it.prompt is None for it in judge.seen)
    # the baseline's long answers win both games: B>A when it is B (game 1 shows it as A)
    assert {(r["game"], r["verdict"]) for r in records} == {(1, "A>B"), (2, "B>A")}
    assert arena_hard.scores(questions, records, [])["score"] < 50


# ---------------------------------------------------------------------------------- model judges
def test_a_judge_without_log_probabilities_gives_discrete_choices_for_labelled_items():
    judge = ModelJudge(FunctionBackend("tests.eval_helpers:ranker"), max_retries=0)
    assert not judge.offers_logprobs and not Judge.offers_logprobs
    prompt = [{"role": "user", "content": "which is better? model_1 model_2"}]
    got = dict(judge.ask("compare", [Item(QUESTION, ("a", "b"), prompt=prompt, parse=parse_ranking,
                                          labels=("m", "M"))], "AlpacaEval 2.0"))
    assert got[0].value == 1.0 and not got[0].weighted
    with pytest.raises(ZephyrError, match="no judge prompt"):  # a chat model needs the prompt of what it compares
        judge.ask("compare", [Item(QUESTION, ("a", "b"), parse=parse_preference)], "AlpacaEval")


def _VerdictServer():  # noqa: N802 - used as the class it was
    """An OpenAI-compatible judge on 127.0.0.1 that always answers [[A>B]] and keeps every request body."""
    from tests.eval_helpers import ChatEndpoint

    return ChatEndpoint(lambda body, headers: "My final verdict: [[A>B]]")


def test_the_callers_settings_are_given_when_the_judge_is_made_under_the_specs_own():
    server = _VerdictServer()
    try:
        spec = {"type": "openai", "base_url": server.url, "model": "judge", "max_retries": 0}
        items = [Item(QUESTION, ("a", "b"), prompt="A or B?", parse=arena_hard.parse_verdict)]
        judge = make_judge(spec, sampling={"temperature": 0.6, "max_new_tokens": 77})
        assert dict(judge.ask("verdict", items, "Arena-Hard"))[0].value == "A>B"
        judge = make_judge({**spec, "sampling": {"temperature": 0.2}}, sampling={"temperature": 0.6,
                                                                                 "max_new_tokens": 77})
        assert dict(judge.ask("verdict", items, "Arena-Hard"))[0].value == "A>B"
    finally:
        server.close()
    assert [(r["temperature"], r["max_tokens"]) for r in server.requests] == [(0.6, 77), (0.2, 77)]
    assert judge.offers_logprobs


def test_arena_hard_judge_temperature_and_budget_come_from_the_benchmark_settings(tmp_path, cli):
    arena = [json.loads(line) for line in (AH / "question.jsonl").read_text().splitlines()][:2]
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in arena))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"uid": q["uid"], "model": "m", "messages": [
        {"role": "user", "content": q["prompt"]}, {"role": "assistant", "content": {"answer": "an answer"}}]}) + "\n"
        for q in arena))
    settings = tmp_path / "settings.yaml"
    settings.write_text((AH / "arena-hard-v0.1.yaml").read_text().replace("temperature: 0.0", "temperature: 0.4")
                        .replace("max_tokens: 4096", "max_tokens: 321"))
    server = _VerdictServer()
    out = tmp_path / "run"
    try:
        code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[arena_hard]",
                           f"stage.arena_hard.questions={questions}", f"stage.arena_hard.answers={answers}",
                           f"stage.arena_hard.baselines={AH / 'gpt-4-0314.jsonl'}",
                           f"stage.arena_hard.system_prompts={AH / 'judge_system_prompt.txt'}",
                           f"stage.arena_hard.judge_settings={settings}", "~stage.judge.module",
                           "stage.judge={type: openai, base_url: '" + server.url + "', model: judge, max_retries: 0}",
                           f"run.output_dir={out}")
    finally:
        server.close()
    assert code == 0, err
    assert len(server.requests) == 4
    assert all(r["temperature"] == 0.4 and r["max_tokens"] == 321 for r in server.requests)
    assert all(r["messages"][0]["content"].startswith("Please act as an impartial judge") for r in server.requests)
    assert json.loads((out / "scores.json").read_text())["arena_hard"]["judged"] == 4
