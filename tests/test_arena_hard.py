"""Arena-Hard-Auto, AlpacaEval 2.0's length-controlled win rate and scoring answer files: on the shared Arena-Hard
v0.1 files with judges whose verdicts are known, alpaca_eval's own GLM on known annotations, and bad input."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from tests import eval_helpers
from tests.benchmark_files import ARENA_QUESTIONS, DATA, FULL
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.embedded import judge as embedded_judge
from zephyr_recipes.embedded import lexical_judge
from zephyr_recipes.evaluation import alpaca_lc, arena_hard, precomputed
from zephyr_recipes.feedback.backends import FunctionBackend
from zephyr_recipes.feedback.judges import VERDICT_LABELS, JudgeFailure, ModelJudge, label_probability
from zephyr_recipes.feedback.store import Store

AH = DATA / "arena_hard_v0.1"
WEIGHT = {"A>>B": 3, "B>>A": 3}
MODEL_SCORE = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}  # model written as A


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _model_answers(questions: list[dict], answers: Store) -> None:
    for q in questions:
        answers.add({"key": q["uid"], "uid": q["uid"], "answer": eval_helpers.model_answer(q["uid"])})


# ------------------------------------------------------------------------------------------ verdicts
def test_verdicts_read_as_the_benchmark_reads_them():
    assert arena_hard.parse_verdict("... My final verdict is tie: [[A=B]]") == "A=B"
    assert arena_hard.parse_verdict("first [[A>B]], on reflection [[b>>a]]") == "B>>A"  # the last one counts
    assert arena_hard.parse_verdict("Verdict: [A>>B]") == "A>>B"  # the benchmark's second pattern
    for bad in ("A is better", "[[A]]", "", "[[A>B>C]]"):
        with pytest.raises(JudgeFailure):
            arena_hard.parse_verdict(bad)
    assert set(arena_hard._A_SCORE) == VERDICT_LABELS  # every label the parser accepts is scored
    # a strong verdict weighs strong_weight battles; game 1 shows the baseline as A, game 2 the model as A
    judged = [{"game": 1, "verdict": "B>>A"}, {"game": 2, "verdict": "A=B"}, {"game": 2, "verdict": "B>A"},
              {"game": 1, "failure": "no verdict"}]
    assert arena_hard.battles(judged, 3) == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_embedded_judges_give_arena_hard_verdicts():
    messages = [{"role": "user", "content": "Sort the numbers: 5 3 9"}]
    assert "[[A>>B]]" in embedded_judge.verdict(messages, "3 5 9", "nothing useful")
    assert "[[B>>A]]" in embedded_judge.verdict(messages, "", "3 5 9")
    assert "[[A=B]]" in embedded_judge.verdict(messages, "3 5 9", "3 5 9")
    question = [{"role": "user", "content": "Explain how tides depend on the moon and the sun."}]
    good = "Tides depend on the moon and the sun: their gravity pulls the oceans, and the moon pulls hardest."
    assert lexical_judge.verdict(question, good, "") == "[[A>>B]]"
    assert lexical_judge.verdict(question, good, good) == "[[A=B]]"


def test_score_on_the_v01_files_matches_a_plain_logistic_regression(tmp_path):
    """Real prompts and gpt-4-0314 answers (all 500 with ../shared/data beside the checkout, else the first 100 in
    tests/data), the benchmark's system prompt and template; a judge with known verdicts. The score must agree
    with an independent logistic-regression fit on the same battles."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    full = FULL / "arena_hard_v0.1"
    n = ARENA_QUESTIONS
    questions = arena_hard.load_questions(str(full / "question.jsonl"))
    settings = arena_hard.load_settings(str(full / "arena-hard-v0.1.yaml"))
    system = arena_hard.read_prompt(str(full / "judge_system_prompt.txt"), "system prompt")
    assert len(questions) == n and system.startswith("Please act as an impartial judge")
    baseline_model, base = arena_hard.parse_answers(full / "gpt-4-0314.jsonl")
    assert baseline_model == "gpt-4-0314" and len(base) == n
    baselines = {uid: {"answer": text, "model": baseline_model} for uid, text in base.items()}
    eval_helpers.ARENA_SYSTEM[:] = [system]
    answers, judgments = Store(tmp_path / "answers.jsonl"), Store(tmp_path / "judgments.jsonl")
    _model_answers(questions, answers)
    judge = ModelJudge(FunctionBackend("tests.eval_helpers:arena_judge"), max_retries=0)
    arena_hard.judge_all(judge, questions, answers, baselines, judgments, settings, {"arena-hard-v0.1": system})
    result = arena_hard.scores(questions, list(judgments.records.values()), [], 3, 100, 0)
    assert result["judged"] == 2 * n and result["failures"] == 0  # every game got the verdict it was meant to

    # the same battles, built here from the known verdicts alone
    outcomes = []
    for q in questions:
        for model_is_a in (False, True):
            label = eval_helpers.known_outcome(q["uid"], model_is_a)
            outcomes += [MODEL_SCORE[label]] * WEIGHT.get(label, 1)
    assert sorted(arena_hard.battles(list(judgments.records.values()))) == sorted(outcomes)
    # a plain logistic regression, built as the benchmark's first scripts did: every battle twice, a tie as one
    # win and one loss; one feature (the model's side against the baseline's), no intercept, no penalty
    xs, ys = [], []
    for o in outcomes:
        for y in ((1, 0) if o == 0.5 else (int(o), int(o))):
            xs.append([1.0])
            ys.append(y)
    fit = sklearn.LogisticRegression(fit_intercept=False, C=math.inf, tol=1e-10, max_iter=1000).fit(xs, ys)
    expected = 100 / (1 + math.exp(-fit.coef_[0][0]))
    assert 5 < expected < 95  # the known verdicts are uneven, not a trivial 0 or 100
    assert abs(result["score"] - expected) < 0.5, (result, expected)
    lo, hi = result["ci_95"]
    assert lo <= expected <= hi and hi - lo > 0.5
    assert result["battles"] == len(outcomes)
    assert sum(result["verdicts"].values()) == 2 * n


def test_judge_without_verdict_is_asked_again_then_counted_as_failure(tmp_path):
    questions = arena_hard.load_questions(str(AH / "question.jsonl"), max_questions=6, seed=1)
    settings = arena_hard.load_settings(str(AH / "arena-hard-v0.1.yaml"))
    _, base = arena_hard.parse_answers(AH / "gpt-4-0314.jsonl")
    baselines = {uid: {"answer": text, "model": "gpt-4-0314"} for uid, text in base.items()}
    mute = questions[0]["uid"]
    baselines[mute] = {"answer": "MUTE", "model": "gpt-4-0314"}
    answers, judgments = Store(tmp_path / "a.jsonl"), Store(tmp_path / "j.jsonl")
    _model_answers(questions, answers)
    eval_helpers.ASKED.clear()
    judge = ModelJudge(FunctionBackend("tests.eval_helpers:mute_judge"), max_retries=2)
    arena_hard.judge_all(judge, questions, answers, baselines, judgments, settings, {"arena-hard-v0.1": "judge"})
    records = list(judgments.records.values())
    failed = [r for r in records if "failure" in r]
    assert len(records) == 12 and len(failed) == 2 and {r["uid"] for r in failed} == {mute}
    assert all(n == 3 for text, n in eval_helpers.ASKED.items() if "MUTE" in text)  # asked 1 + 2 more times
    assert all(n == 2 for text, n in eval_helpers.ASKED.items() if "MUTE" not in text)  # one retry was enough
    result = arena_hard.scores(questions, records, [])
    assert result["failures"] == 2 and result["judged"] == 10 and result["battles"] == 10
    # resuming asks nothing again: every game, failed or not, is on disk
    before = sum(eval_helpers.ASKED.values())
    arena_hard.judge_all(judge, questions, answers, baselines, Store(tmp_path / "j.jsonl"), settings,
                         {"arena-hard-v0.1": "judge"})
    assert sum(eval_helpers.ASKED.values()) == before


def test_system_prompt_from_the_benchmark_source_without_running_it(tmp_path):
    source = tmp_path / "judge_utils.py"
    source.write_text('import os\nOG = "first prompt"\nSETTINGS = {"hard": {"baseline": "x", "system_prompt": OG},\n'
                      '  "creative": {"system_prompt": "second prompt"}}\nos.system("exit 1")\n')
    assert arena_hard.read_prompt(f"{source}#OG", "p") == "first prompt"
    assert arena_hard.read_prompt(f"{source}#SETTINGS.hard.system_prompt", "p") == "first prompt"
    assert arena_hard.read_prompt(f"{source}#SETTINGS.creative.system_prompt", "p") == "second prompt"
    with pytest.raises(ZephyrError, match="has no string SETTINGS.none"):
        arena_hard.read_prompt(f"{source}#SETTINGS.none", "p")


# ---------------------------------------------------------------------------------------- AlpacaEval 2.0
def _annotations(n: int, length_decides: bool, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        base_len = rng.randint(200, 1200)
        model_len = base_len + rng.randint(-300, 900)  # the model tends to write more
        if length_decides:  # the judge's preference follows the difference in length, and nothing else
            pref = 1.0 + 1.0 / (1.0 + math.exp(-2.0 * math.tanh((model_len - base_len) / 350)))
        else:
            pref = 2.0 if i % 10 < 3 else 1.0  # 30% wins whatever the lengths
        out.append({"instruction": f"instruction {i}", "output_1": "b" * base_len, "output_2": "m" * model_len,
                    "generator_1": "baseline", "generator_2": "model", "annotator": "test", "preference": pref,
                    "index": i})
    return out


def test_length_controlled_win_rate_through_alpaca_evals_own_function(tmp_path):
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    rows = [{"index": i} for i in range(300)]
    table = alpaca_lc.standin_difficulties(rows, tmp_path / "difficulty.csv")
    by_length = _annotations(300, length_decides=True)
    raw = 100 * sum(a["preference"] - 1 for a in by_length) / len(by_length)
    got = alpaca_lc.length_controlled(by_length, "length_controlled_minimal", str(table), tmp_path / "w")
    assert got["win_rate"] == pytest.approx(raw, abs=1e-3) and got["n_total"] == 300
    assert got["standard_error"] > 0 and got["lc_standard_error"] is not None
    # every win is explained by length: once length is held equal the model is no better than the baseline
    assert raw > 65 and abs(got["length_controlled_winrate"] - 50) < 3
    fair = _annotations(300, length_decides=False, seed=1)
    got = alpaca_lc.length_controlled(fair, "length_controlled_minimal", str(table), None)
    assert got["win_rate"] == pytest.approx(30.0, abs=1e-3)
    assert abs(got["length_controlled_winrate"] - 30.0) < 5  # length explains nothing: LC stays near raw
    assert (tmp_path / "w" / "length_controlled_minimal" / "baseline_baseline.csv").is_file()


def test_weighted_preferences_from_logprobs():
    payload = {"choices": [{"message": {"content": "M"}, "logprobs": {"content": [{"token": "M", "top_logprobs": [
        {"token": "M", "logprob": math.log(0.6)}, {"token": "m", "logprob": math.log(0.2)},
        {"token": "Both", "logprob": math.log(0.2)}]}]}}]}
    p, text = label_probability(payload, alpaca_lc.LABELS)
    assert p == pytest.approx(0.25) and text == "M"  # m among m and M: 0.2 / 0.8
    assert label_probability({"choices": [{"message": {"content": "m"}}]}, alpaca_lc.LABELS) == (None, "m")
    assert alpaca_lc.parse_choice(" m\n") == 1.0 and alpaca_lc.parse_choice("M") == 0.0
    with pytest.raises(JudgeFailure):
        alpaca_lc.parse_choice("model m is better")


def test_published_alpaca_eval_2_rows_match_alpaca_evals_leaderboard():
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    import csv

    import alpaca_eval

    from zephyr_recipes.reports.report import PUBLISHED

    board = Path(alpaca_eval.__file__).parent / "leaderboards" / "data_AlpacaEval_2" / \
        "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
    rows = {r[""]: r for r in csv.DictReader(board.open())}
    zephyr = rows["zephyr-7b-beta"]
    published = PUBLISHED[0]
    assert round(float(zephyr["length_controlled_winrate"]), 2) == published["alpaca_eval_2_lc"] == 13.2
    assert round(float(zephyr["win_rate"]), 2) == published["alpaca_eval_2"] == 10.99
    from zephyr_recipes import benchmarks

    ref = benchmarks.get("alpaca_eval_2").references[0]  # the registry's row, with its standard error
    assert ref.values["alpaca_eval_2"][1] == round(float(zephyr["standard_error"]), 2)


# ----------------------------------------------------------------------------------------- answer files
def test_answer_files_in_the_wrong_format_name_the_expected_one(tmp_path):
    fastchat = _write_jsonl(tmp_path / "fastchat.jsonl", [{"question_id": 81, "model_id": "m",
                                                           "choices": [{"index": 0, "turns": ["a", "b"]}]}])
    alpaca = tmp_path / "model_outputs.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi", "output": "hi", "generator": "m"}]))
    store = Store(tmp_path / "s.jsonl")
    with pytest.raises(ZephyrError, match="alpaca_eval's model_outputs") as err:
        precomputed.alpaca_outputs(str(fastchat), [], store)
    assert "model_outputs.json" in err.value.fix
    with pytest.raises(ZephyrError, match="Arena-Hard's format") as err:
        precomputed.arena_hard_answers(str(alpaca), [], store)
    assert "model_answer" in err.value.fix
    with pytest.raises(ZephyrError, match="FastChat's model_answer format") as err:
        precomputed.fastchat_answers(str(alpaca), [], store)
    assert '"choices"' in err.value.fix
    assert len(store) == 0


def test_scoring_answer_files_in_the_three_formats_without_a_model(tmp_path, cli):
    """Answers another tool wrote: FastChat's model_answer (MT-Bench), alpaca_eval's model_outputs.json (AlpacaEval
    1 and 2.0) and Arena-Hard's model_answer, judged by the offline judge; the model named does not exist, so
    nothing can have been generated. The baseline lacks answers to three Arena-Hard prompts."""
    mt = _rows(DATA / "mt_bench" / "question.jsonl")[:3]
    questions = _write_jsonl(tmp_path / "question.jsonl", mt)
    fastchat = _write_jsonl(tmp_path / "fastchat.jsonl", [
        {"question_id": q["question_id"], "answer_id": "x", "model_id": "other-tool-model",
         "choices": [{"index": 0, "turns": [f"An answer about {t[:40]}" for t in q["turns"]]}]} for q in mt[:2]])
    instructions = json.loads((DATA / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output"][: len(r["output"]) // 2],
                                    "generator": "other-tool-model"} for r in instructions]))
    arena = _rows(AH / "question.jsonl")[:12]
    arena_questions = _write_jsonl(tmp_path / "arena_question.jsonl", arena)
    gone = {q["uid"] for q in arena[:3]}
    baseline = _write_jsonl(tmp_path / "gpt-4-0314.jsonl",
                            [r for r in _rows(AH / "gpt-4-0314.jsonl") if r["uid"] not in gone])
    arena_answers = _write_jsonl(tmp_path / "arena_answers.jsonl", [
        {"uid": q["uid"], "ans_id": "x", "model": "other-tool-model",
         "messages": [{"role": "user", "content": q["prompt"]},
                      {"role": "assistant", "content": {"answer": q["prompt"][:200]}}]} for q in arena])
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model",
                       "stage.benchmarks=[mt_bench,alpaca_eval,alpaca_eval_2,arena_hard]", "stage.model_id=other",
                       f"stage.mt_bench.questions={questions}", f"stage.mt_bench.answers={fastchat}",
                       "stage.mt_bench.reference_answers=null",
                       f"stage.alpaca_eval.instructions={DATA / 'alpaca_eval' / 'text_davinci_003_outputs.json'}",
                       "stage.alpaca_eval.max_samples=5", f"stage.alpaca_eval.answers={outputs}",
                       "stage.alpaca_eval_2.max_samples=30", f"stage.alpaca_eval_2.answers={outputs}",
                       f"stage.arena_hard.questions={arena_questions}", f"stage.arena_hard.baselines={baseline}",
                       f"stage.arena_hard.judge_settings={AH / 'arena-hard-v0.1.yaml'}",
                       f"stage.arena_hard.answers={arena_answers}", f"run.output_dir={out}")
    assert code == 0, err
    scores = json.loads((out / "scores.json").read_text())
    mtb = scores["mt_bench"]
    assert mtb["answered"] == 2 and mtb["answers_from"]["missing"] == 1 and mtb["judged"] == 4
    assert mtb["answers_from"]["model"] == "other-tool-model"
    ae = scores["alpaca_eval"]
    assert ae["n_total"] == 5 and ae["failures"] == 0 and ae["answers_from"]["missing"] == 0
    ae2 = scores["alpaca_eval_2"]
    assert ae2["n_total"] == 30 and ae2["glm"] == "length_controlled_minimal" and ae2["preferences"] == "discrete"
    assert ae2["length_controlled_winrate"] is not None and ae2["win_rate"] is not None
    # the model's outputs are the baseline's first halves: shorter, so the LC GLM moves the win rate up
    assert ae2["avg_length"] < ae2["baseline_avg_length"]
    annotated = json.loads((out / "alpaca_eval_2" / "annotations.json").read_text())
    assert len(annotated) == 30 and all(1 <= a["preference"] <= 2 for a in annotated)
    ah = scores["arena_hard"]
    assert ah["questions"] == 12 and ah["missing_baseline"] == 3 and set(ah["missing_baseline_uids"]) == gone
    assert ah["judged"] == 18 and ah["failures"] == 0 and ah["baselines"] == ["gpt-4-0314"]
    assert set((out / "arena_hard" / "missing_baseline.txt").read_text().split()) == gone
    assert 0 <= ah["ci_95"][0] <= ah["score"] <= ah["ci_95"][1] <= 100
    model, written = arena_hard.parse_answers(out / "arena_hard" / "model_answer" / "other.jsonl")
    assert model == "other" and len(written) == 12  # the benchmark's own format, readable back
    code, report, _ = cli("report", str(out), "--out", str(tmp_path / "report"))
    assert code == 0
    assert "Arena-Hard skipped 3 of 12 prompts that have no baseline answer" in report
    assert "AlpacaEval 2.0 LC %" in report and "13.2" in report  # beside the published row
    assert "MT-Bench: answers read from" in report
    # report.html: every prompt of each benchmark, the baseline's answer beside the model's, both games' verdicts
    page = (tmp_path / "report" / "report.html").read_text()
    arena = page.split('id="b-arena_hard"', 1)[1].split("</section>", 1)[0]
    assert arena.count('<details class="q"') == 12 and arena.count("baseline (gpt-4-0314)") == 9
    assert arena.count("game 1 (baseline is A, model is B): [[") == 9 and "game 2 (model is A" in arena
    ae2_section = page.split('id="b-alpaca_eval_2"', 1)[1].split("</section>", 1)[0]
    assert ae2_section.count('<details class="q"') == 30
    # each instruction with the baseline's answer, read through the run's own (typed) section of config.yaml
    assert ae2_section.count("<strong>baseline (") == 30, ae2_section.count("<strong>baseline (")
    mt_section = page.split('id="b-mt_bench"', 1)[1].split("</section>", 1)[0]
    assert mt_section.count('<details class="q"') == 3 and mt_section.count("/10</div>") == 4  # one unanswered


def test_older_arena_hard_answer_format_and_v20_selection(tmp_path, cli):
    rows = _rows(AH / "gpt-4-0314.jsonl")[:2]
    old = _write_jsonl(tmp_path / "old.jsonl", [
        {"question_id": r["uid"], "answer_id": "x", "model_id": "gpt-4-0314",
         "choices": [{"index": 0, "turns": [{"content": r["messages"][-1]["content"]["answer"], "token_len": 1}]}]}
        for r in rows])
    model, answers = arena_hard.parse_answers(old)
    assert model == "gpt-4-0314" and answers[rows[0]["uid"]] == rows[0]["messages"][-1]["content"]["answer"]
    code, out, _ = cli("show", "tiny/eval", "stage.arena_hard.version=v2.0")
    assert code == 0
    assert "arena-hard-v2.0/model_answer/o3-mini-2025-01-31.jsonl" in out
    assert "gemini-2.0-flash-001.jsonl" in out and "JUDGE_SETTINGS.creative_writing.system_prompt" in out
    code, _, err = cli("show", "tiny/eval", "stage.arena_hard.version=v3")
    assert code != 0 and "choose from: v0.1, v2.0" in err


def _LogprobJudge():  # noqa: N802 - used as the class it was
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers alpaca_eval's clf prompt with log-probabilities:
    70% for the model's identifier, whichever position it holds; no log-probabilities for NOLOGPROB instructions
    (a plain 'm' or 'M' then), and no identifier at all for MUTE ones."""
    from tests.eval_helpers import ChatEndpoint

    def answer(body, headers):
        user = body["messages"][-1]["content"]
        first = user.index('"model_identifier": "m"')
        model_is_m = user.index("MODEL:", first) < user.index('"model_identifier": "M"')
        p_m = 0.7 if model_is_m else 0.3
        best = "m" if p_m > 0.5 else "M"
        choice = {"index": 0, "message": {"role": "assistant", "content": best}}
        if "MUTE" in user:
            choice["message"]["content"] = "Both are good."
        elif "NOLOGPROB" not in user:
            choice["logprobs"] = {"content": [{"token": best, "logprob": math.log(max(p_m, 1 - p_m)),
                                               "top_logprobs": [{"token": "m", "logprob": math.log(p_m)},
                                                                {"token": "M", "logprob": math.log(1 - p_m)}]}]}
        return choice

    return ChatEndpoint(answer)


def test_alpaca_eval_2_weighted_preferences_from_an_endpoints_logprobs(tmp_path, cli):
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    instructions = json.loads((DATA / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())[:10]
    instructions[3]["instruction"] += " NOLOGPROB"
    instructions[4]["instruction"] += " MUTE"
    data = tmp_path / "instructions.json"
    data.write_text(json.dumps(instructions))
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps([{"instruction": r["instruction"], "output": f"MODEL: {r['output'][:80]}",
                                    "generator": "m"} for r in instructions]))
    server = _LogprobJudge()
    out = tmp_path / "run"
    try:
        code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[alpaca_eval_2]",
                           f"stage.alpaca_eval_2.instructions={data}", f"stage.alpaca_eval_2.answers={outputs}",
                           "stage.alpaca_eval_2.prompt=alpaca_eval:evaluators_configs/alpaca_eval_clf_gpt4_turbo/"
                           "alpaca_eval_clf.txt", "stage.alpaca_eval_2.glm=length_controlled_minimal",
                           "stage.alpaca_eval_2.judge={type: openai, base_url: '" + server.url + "', model: "
                           "gpt-4-1106-preview, max_retries: 1, backoff: 0.01}", f"run.output_dir={out}")
    finally:
        server.close()
    assert code == 0, err
    asked = server.requests
    assert all(r["logprobs"] is True and r["top_logprobs"] == 5 and r["max_tokens"] == 1 for r in asked)
    assert asked[0]["messages"][0]["role"] == "system"  # the clf prompt's <|im_start|>system block
    ae2 = json.loads((out / "scores.json").read_text())["alpaca_eval_2"]
    # 8 instructions weighted at 0.7 in alpaca_eval's seeded order, one discrete win (1.0), one never judged
    assert ae2["n_total"] == 9 and ae2["failures"] == 1 and ae2["preferences"] == "discrete+logprob"
    assert ae2["win_rate"] == pytest.approx(100 * (8 * 0.7 + 1.0) / 9, abs=1e-3)
    # one order, asked once: AlpacaEval's rule (alpaca_eval asks once), not the judge client's max_retries
    assert sum(1 for r in asked if "MUTE" in r["messages"][-1]["content"]) == 1
    assert ae2["orders"] == "one" and ae2["lc_standard_error"] is None and "approximate" in ae2["lc_note"]
    from zephyr_recipes import benchmarks

    lc = benchmarks.get("alpaca_eval_2").metrics[0]
    assert lc.format(ae2).endswith("(approximate, not comparable)") and "±" not in lc.format(ae2)


@pytest.mark.slow
def test_tiny_model_answers_arena_hard_and_alpaca_eval_2_offline(tmp_path, cli):
    """The model really answers: 4 Arena-Hard v0.1 prompts, 5 AlpacaEval instructions (AlpacaEval 2.0 judges the
    same answers), the lexical judge standing in for GPT-4."""
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr",
                       "stage.benchmarks=[alpaca_eval,alpaca_eval_2,arena_hard]",
                       f"stage.alpaca_eval.instructions={DATA / 'alpaca_eval' / 'text_davinci_003_outputs.json'}",
                       "stage.alpaca_eval.max_samples=5", "stage.alpaca_eval_2.max_samples=5",
                       "stage.alpaca_eval.sampling.max_new_tokens=6", "stage.alpaca_eval_2.sampling.max_new_tokens=6",
                       f"stage.arena_hard.questions={AH / 'question.jsonl'}",
                       f"stage.arena_hard.baselines={AH / 'gpt-4-0314.jsonl'}",
                       f"stage.arena_hard.judge_settings={AH / 'arena-hard-v0.1.yaml'}",
                       "stage.arena_hard.max_questions=4", "stage.arena_hard.sampling.max_new_tokens=6",
                       f"run.output_dir={out}")
    assert code == 0, err
    scores = json.loads((out / "scores.json").read_text())
    first = {r["key"]: r["output"] for r in _rows(out / "alpaca_eval" / "outputs.jsonl")}
    second = _rows(out / "alpaca_eval_2" / "outputs.jsonl")
    assert len(second) == 5 and all(r["output"] == first[r["key"]] for r in second)  # answered once
    assert all(r["source"] == "alpaca_eval/outputs.jsonl" for r in second)
    assert scores["alpaca_eval_2"]["n_total"] == 5 and scores["alpaca_eval_2"]["length_controlled_winrate"] is not None
    ah = scores["arena_hard"]
    assert ah["questions"] == 4 and ah["judged"] == 8 and ah["failures"] == 0 and ah["version"] == "v0.1"
    answers = _rows(out / "arena_hard" / "answers.jsonl")
    assert len(answers) == 4 and all("answer" in a and "source" not in a for a in answers)
    card = (out / "README.md").read_text()
    assert "## Arena-Hard-Auto v0.1" in card and "## AlpacaEval 2.0" in card


def test_wrong_answer_file_stops_the_run_before_any_answer_is_generated(tmp_path, cli):
    wrong = tmp_path / "model_outputs.json"
    wrong.write_text(json.dumps([{"instruction": "Say hi", "output": "hi"}]))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr",
                       "stage.benchmarks=[alpaca_eval,arena_hard]",
                       f"stage.alpaca_eval.instructions={DATA / 'alpaca_eval' / 'text_davinci_003_outputs.json'}",
                       f"stage.arena_hard.answers={wrong}", f"run.output_dir={out}")
    assert code != 0
    assert "is not an answer in Arena-Hard's format" in err and "model_answer/<model>.jsonl" in err
    assert not (out / "alpaca_eval" / "outputs.jsonl").exists()
    assert not (out / "scores.json").exists()


def test_new_sections_appear_in_the_resolved_config_only_when_chosen():
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    cfg, name, _ = compose("tiny/eval-heldout")
    stage = validate(cfg, name).config["stage"]
    assert "alpaca_eval_2" not in stage and "arena_hard" not in stage  # the configs of earlier runs still match
    cfg, name, _ = compose("tiny/eval")
    stage = validate(cfg, name).config["stage"]
    assert stage["arena_hard"]["strong_weight"] == 3 and stage["alpaca_eval_2"]["glm"] == "length_controlled_minimal"
    assert stage["alpaca_eval_2"]["instructions"] == stage["alpaca_eval"]["instructions"]


def test_scores_per_category_with_a_baseline_each():
    judged = []
    for n in range(20):  # hard prompts: the model wins 3 of 4; creative writing: it loses 3 of 4
        for cat, baseline, win in (("hard_prompt", "o3-mini", n % 4 != 0), ("creative_writing", "gemini", n % 4 == 0)):
            judged.append({"uid": f"{cat}{n}", "game": 2, "category": cat, "baseline": baseline,
                           "verdict": "A>B" if win else "B>A"})
    result = arena_hard.scores([{}] * 40, judged, [], rounds=50)
    assert result["categories"]["hard_prompt"]["score"] == pytest.approx(75.0, abs=0.01)
    assert result["categories"]["creative_writing"]["score"] == pytest.approx(25.0, abs=0.01)
    assert result["score"] == pytest.approx(50.0, abs=0.01) and result["baselines"] == ["gemini", "o3-mini"]
