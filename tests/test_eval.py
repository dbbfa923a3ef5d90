"""Evaluation scoring on fixed judge replies (good and malformed), answer formats and input errors."""

from __future__ import annotations

import json
import math

import pytest

from tests import eval_helpers
from tests.benchmark_files import ALPACA_INSTRUCTIONS, DATA
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.embedded import lexical_judge
from zephyr_recipes.evaluation import alpaca, mt_bench
from zephyr_recipes.evaluation.sources import load_records, read_text
from zephyr_recipes.feedback.backends import FunctionBackend
from zephyr_recipes.feedback.judges import (
    Item,
    JudgeFailure,
    ModelJudge,
    chat_messages,
    fill,
    parse_grade,
    parse_ranking,
)
from zephyr_recipes.feedback.store import Store


# ----------------------------------------------------------------------------------------- parsing
def test_mt_bench_grades_from_judge_replies():
    assert parse_grade("Short explanation.\n\nRating: [[8]]") == 8.0
    assert parse_grade("Rating: [[6.5]]") == 6.5
    assert parse_grade("Rating: [9]") == 9.0  # FastChat's backup pattern
    assert parse_grade("[[10]] first, later [[2]]") == 10.0
    for bad in ("I would rate it 8/10.", "Rating: [[11]]", "Rating: [[0]]", "", "[[eight]]"):
        with pytest.raises(JudgeFailure):
            parse_grade(bad)


def test_alpaca_eval_rankings_from_judge_replies():
    assert parse_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]") == 1.0
    assert parse_ranking("[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]") == 0.0
    assert parse_ranking('```json\n[{"model": "model_2", "rank": 1}, {"model": "model_1", "rank": 2}]\n```') == 0.0
    assert parse_ranking("Here is my ranking:\n[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"
                         "\nThanks.") == 0.0
    assert parse_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]") == 0.5
    assert parse_ranking("{'model': 'model_2', 'rank': 1}") == 0.0  # one model ranked: the other is second
    # a list cut off by max_tokens still names its pairs
    assert parse_ranking("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'ra") == 1.0
    for bad in ("model_1 is better", "[{'model': 'model_1', 'rank': 'first'}]", "[]",
                "[{'model': 'model_1', 'rank': 3}]", "{'verdict': 'A'}"):
        with pytest.raises(JudgeFailure):
            parse_ranking(bad)


def test_alpaca_eval_prompt_splits_into_system_and_user_messages():
    prompt = read_text(str(DATA / "alpaca_eval" / "alpaca_eval_gpt4_judge_prompt.txt"), "prompt")
    messages = chat_messages(fill(prompt, instruction="Say {hi}", output_1="A {output_2}", output_2="B"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == "You are a helpful assistant, that ranks models by the quality of their answers."
    user = messages[1]["content"]
    assert '"instruction": """Say {hi}"""' in user and '"answer": """A {output_2}"""' in user  # one pass only
    assert "<|im_end|>" not in user and "{'model': <model-name>, 'rank': <model-rank>}" in user
    assert chat_messages("plain prompt") == [{"role": "user", "content": "plain prompt"}]


# ------------------------------------------------------------------------------------------ scoring
def test_win_rate_and_standard_error_by_hand():
    got = alpaca.win_rate([1.0, 0.0, 0.5, 1.0])
    assert got["win_rate"] == 62.5
    # deviations .375 -.625 -.125 .375 -> variance .6875/3, sem = sqrt(.229167)/2
    assert got["standard_error"] == pytest.approx(100 * math.sqrt(0.6875 / 3) / 2, abs=1e-4)
    assert (got["n_wins"], got["n_draws"], got["n_losses"], got["n_total"]) == (2, 1, 1, 4)
    assert alpaca.win_rate([])["win_rate"] is None and alpaca.win_rate([1.0])["standard_error"] == 0.0


def _judgment(iid, order, output_1_pref):
    model = 1 - output_1_pref if order == 0 else output_1_pref
    return {"key": f"{iid}:o{order}", "instruction_id": iid, "order": order, "preference_output_1": output_1_pref,
            "model_preference": model}


def test_both_orders_cancel_position_bias_and_ties_count_half():
    rows = [{"instruction": i, "output": "x" * 10, "generator": "base"} for i in "ABCD"]
    outputs = [{"instruction": i, "output": "y" * 20, "generator": "m"} for i in "ABC"]
    judgments = [
        _judgment("A", 0, 0.0), _judgment("A", 1, 1.0),  # the model wins in both orders -> 1
        _judgment("B", 0, 1.0), _judgment("B", 1, 1.0),  # output_1 always wins: position bias -> 0.5
        _judgment("C", 0, 0.5), _judgment("C", 1, 0.0),  # a tie, then a loss -> 0.25
        {"key": "D:o0", "instruction_id": "D", "order": 0, "failure": "no ranking"},
    ]
    got = alpaca.scores(rows, outputs, judgments)
    assert got["win_rate"] == pytest.approx(100 * 1.75 / 3, abs=1e-4)
    # values 1, .5, .25: mean .58333, sample variance .291667/2
    assert got["standard_error"] == pytest.approx(100 * math.sqrt(0.291667 / 2) / math.sqrt(3), abs=1e-3)
    assert (got["n_wins"], got["n_draws"], got["n_losses"]) == (1, 1, 1)
    assert got["failures"] == 1 and got["order_agreement"] == pytest.approx(1 / 3, abs=1e-4)
    assert got["output_1_preferred"] == pytest.approx(3.5 / 6, abs=1e-4)
    assert got["avg_length"] == 20 and got["baseline_avg_length"] == 10


def test_mt_bench_scores_overall_per_turn_per_category():
    judgments = [
        {"question_id": 1, "turn": 1, "category": "writing", "score": 8.0},
        {"question_id": 1, "turn": 2, "category": "writing", "score": 6.0},
        {"question_id": 2, "turn": 1, "category": "math", "score": 3.0},
        {"question_id": 2, "turn": 2, "category": "math", "failure": "no [[rating]] in the reply"},
        {"question_id": 3, "turn": 1, "category": "stem", "score": 10.0},
    ]
    got = mt_bench.scores(judgments)
    assert got["score"] == pytest.approx(27 / 4) and got["turn_1"] == 7.0 and got["turn_2"] == 6.0
    assert got["categories"] == {"writing": 7.0, "math": 3.0, "stem": 10.0}
    assert got["judged"] == 4 and got["failures"] == 1


def test_model_judge_retries_malformed_replies_then_records_failure():
    eval_helpers.ASKED.clear()
    judge = ModelJudge(FunctionBackend("tests.eval_helpers:grader"), max_retries=2, system="Judge well.")
    prompts = ["<|The Start of Assistant A's Conversation with User|> ...", "single turn", "NEVER grade this"]
    items = [Item([{"role": "user", "content": "q"}], ("a",), prompt=p, parse=parse_grade) for p in prompts]
    got = dict(judge.ask("grade", items, "MT-Bench"))
    assert got[0].value == 7.0 and eval_helpers.ASKED[prompts[0]] == 2  # malformed once, then graded
    assert got[1].value == 7.0 and eval_helpers.ASKED[prompts[1]] == 1  # the system message was sent
    assert isinstance(got[2], JudgeFailure) and eval_helpers.ASKED[prompts[2]] == 3
    assert "I cannot decide" in got[2].raw
    # a full message list is sent as given
    again = [{"role": "user", "content": "single turn again"}]
    got = dict(judge.ask("grade", [Item(again, ("a",), prompt=again, parse=parse_grade)], "MT-Bench"))
    assert got[0].value == 3.0


# ------------------------------------------------------------------------------------ MT-Bench bits
def test_mt_bench_judge_prompt_per_turn_and_category():
    questions = {q.category: q for q in mt_bench.load_questions(str(DATA / "mt_bench" / "question.jsonl"))}
    assert set(questions) == set(mt_bench.CATEGORIES) and len(mt_bench.load_questions(
        str(DATA / "mt_bench" / "question.jsonl"))) == 80
    prompts = mt_bench.load_judge_prompts(str(DATA / "mt_bench" / "judge_prompts.jsonl"))
    refs = mt_bench.load_references(str(DATA / "mt_bench" / "reference_answer_gpt-4.jsonl"))
    math_q, writing = questions["math"], questions["writing"]
    assert math_q.id in refs and writing.id not in refs
    name, msgs = mt_bench.judge_prompt(prompts, writing, ["first answer"], 1, None)
    assert name == "single-v1" and msgs[0]["role"] == "system" and writing.turns[0] in msgs[1]["content"]
    assert "first answer" in msgs[1]["content"] and "[[rating]]" in msgs[1]["content"]
    name, msgs = mt_bench.judge_prompt(prompts, math_q, ["A1", "A2"], 2, refs[math_q.id])
    text = msgs[1]["content"]
    assert name == "single-math-v1-multi-turn" and refs[math_q.id][1] in text and refs[math_q.id][0] in text
    assert math_q.turns[1] in text and "A2" in text and "{" not in text.replace(math_q.turns[1], "")[:40]
    assert "reference answer" in msgs[0]["content"].lower()
    name, _ = mt_bench.judge_prompt(prompts, math_q, ["A1"], 1, refs[math_q.id])
    assert name == "single-math-v1"
    assert mt_bench.temperature("writing", mt_bench.TEMPERATURES) == 0.7
    assert mt_bench.temperature("stem", mt_bench.TEMPERATURES) == 0.1
    assert mt_bench.temperature("math", mt_bench.TEMPERATURES) == 0.0


def test_answer_files_in_fastchat_and_alpaca_eval_formats(tmp_path):
    store = Store(tmp_path / "answers.jsonl")
    q = mt_bench.Question(81, "writing", ["Write.", "Rewrite."])
    store.add({"key": "q81:t1", "question_id": 81, "turn": 1, "answer": "one", "tstamp": 1.0})
    store.add({"key": "q81:t2", "question_id": 81, "turn": 2, "answer": "two", "tstamp": 2.0})
    unanswered = mt_bench.Question(82, "writing", ["Only turn one answered.", "?"])
    store.add({"key": "q82:t1", "question_id": 82, "turn": 1, "answer": "x", "tstamp": 1.0})
    rows = mt_bench.answer_records([q, unanswered], store, "my-model")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert row["choices"] == [{"index": 0, "turns": ["one", "two"]}] and row["model_id"] == "my-model"
    assert row["tstamp"] == 2.0 and len(row["answer_id"]) == 22
    assert mt_bench.conversation(q, ["one"], 2) == [
        {"role": "user", "content": "Write."}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "Rewrite."}]
    outputs = Store(tmp_path / "outputs.jsonl")
    outputs.add({"key": alpaca.instruction_id("Hi?"), "instruction": "Hi?", "output": "Hello."})
    got = alpaca.model_outputs([{"instruction": "Hi?", "output": "b", "dataset": "helpful_base"}], outputs, "m")
    assert got == [{"instruction": "Hi?", "output": "Hello.", "generator": "m", "dataset": "helpful_base"}]


# ---------------------------------------------------------------------------------- offline judging
def test_lexical_judge_is_a_sanity_check():
    msgs = [{"role": "user", "content": "Name three primary colors of paint."}]
    assert lexical_judge.grade(msgs, "") == 1.0
    ref = "The primary colors are red, yellow and blue."
    assert lexical_judge.grade(msgs, "Red, yellow and blue are the primary colors.", ref) > \
        lexical_judge.grade(msgs, "Seven.", ref)
    good = "The three primary colors of paint are red, yellow and blue; mixing them gives the other colors."
    assert lexical_judge.compare(msgs, good, "colors colors colors") == 1.0
    assert lexical_judge.compare(msgs, "", good) == 0.0 and lexical_judge.compare(msgs, good, good) == 0.5
    assert 1 <= lexical_judge.grade(msgs, good) <= 10


# --------------------------------------------------------------------------------------- bad input
def test_bad_input_files_are_reported_by_file_and_line(tmp_path):
    bad = tmp_path / "question.jsonl"
    bad.write_text('{"question_id": 1, "category": "writing", "turns": ["a", "b"]}\n{"question_id": 2, oops}\n')
    with pytest.raises(ZephyrError, match=r"question.jsonl, line 2: not valid JSON"):
        mt_bench.load_questions(str(bad))
    with pytest.raises(ZephyrError, match="does not exist"):
        mt_bench.load_questions(str(tmp_path / "missing.jsonl"))
    bad.write_text('{"question_id": 1, "category": "writing", "turns": "not a list"}\n')
    with pytest.raises(ZephyrError, match="question 1 lacks"):
        mt_bench.load_questions(str(bad))
    prompts = tmp_path / "judge_prompts.jsonl"
    prompts.write_text(json.dumps({"name": "single-v1", "prompt_template": "{question}"}) + "\n")
    with pytest.raises(ZephyrError, match="lacks the judge prompt"):
        mt_bench.load_judge_prompts(str(prompts))
    outputs = tmp_path / "outputs.json"
    outputs.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c"}]')
    with pytest.raises(ZephyrError, match="row 2 lacks"):
        alpaca.load_instructions(str(outputs), None, 0)
    outputs.write_text('[{"instruction": "a",\n "output": }]')
    with pytest.raises(ZephyrError, match=r"outputs.json:2: "):
        load_records(str(outputs), "AlpacaEval instructions")


def test_alpaca_eval_subset_is_seeded():
    path = str(DATA / "alpaca_eval" / "text_davinci_003_outputs.json")
    assert len(alpaca.load_instructions(path, None, 0)) == ALPACA_INSTRUCTIONS
    a, b = alpaca.load_instructions(path, 20, 3), alpaca.load_instructions(path, 20, 3)
    assert a == b and len(a) == 20 and a != alpaca.load_instructions(path, 20, 4)
    assert all(r["generator"] == "text_davinci_003" for r in a)


def test_eval_config_errors(cli, monkeypatch, tmp_path):
    for override, problem in (
        ("stage.judge.type=oracle", "stage.judge.type is 'oracle'"),
        ("stage.mt_bench.max_question=3", "unknown key `stage.mt_bench.max_question`"),
        ("stage.benchmarks=[mmlu]", "stage.benchmarks"),
        ("stage.alpaca_eval.max_samples=0", "stage.alpaca_eval.max_samples"),
        ("+stage.lm_eval.tasks.0.shots=3", "unknown key `stage.lm_eval.tasks[0].shots`"),
    ):
        code, _, err = cli("validate", "zephyr-7b-beta/eval" if "oracle" in override else "tiny/eval", override)
        assert code == 2 and problem in err and "fix:" in err, (override, err)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "never"
    code, _, err = cli("zephyr-7b-beta/eval", "hardware=cpu", f"run.output_dir={out}")
    assert code == 2 and "OPENAI_API_KEY is not set" in err and "fix: export OPENAI_API_KEY" in err
    assert not out.exists()  # refused before anything was written


def test_switching_a_judge_or_generator_type_names_the_leftover_key(cli):
    """A function judge turned into an endpoint on the command line keeps its `module`: the error says to drop
    it with the exact override, and that override works."""
    switch = ["stage.judge.type=openai", "stage.judge.model=gpt-4", "stage.judge.base_url=http://127.0.0.1:9/v1"]
    code, _, err = cli("validate", "tiny/eval-heldout", *switch)
    assert code == 2 and "stage.judge.module belongs to judge type function" in err and "add ~stage.judge.module" in err
    code, out, err = cli("validate", "tiny/eval-heldout", *switch, "~stage.judge.module", "--no-preflight")
    assert code == 0, err
    code, _, err = cli("validate", "tiny/aif", "stage.generators.3.type=transformers", "stage.generators.3.model=x")
    assert code == 2 and "add ~stage.generators.3.function" in err
    assert cli("validate", "tiny/aif", "stage.generators.3.type=transformers", "stage.generators.3.model=x",
               "~stage.generators.3.function")[0] == 0
