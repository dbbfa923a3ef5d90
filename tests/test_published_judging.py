"""The evaluation judges as their benchmarks ask (issue 30, items 2): alpaca_eval's draw for identical outputs,
Arena-Hard v0.1's continuation of a reply without a label, MT-Bench's single ask and FastChat's averaging, the unused
main judge left out of the pre-flight, the ``alpaca_eval:`` prefix for AlpacaEval 1, the pinned judge prompt, and
what scores.json names. Published annotations replayed through the same code a live run uses; live judges are
OpenAI-compatible endpoints on 127.0.0.1 (tests/eval_helpers.py)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.benchmark_files import DATA
from tests.eval_helpers import ChatEndpoint
from zephyr_recipes.evaluation import alpaca_lc
from zephyr_recipes.evaluation.alpaca import instruction_id

AE = DATA / "alpaca_eval"
AH = DATA / "arena_hard_v0.1"
NO_TIE = "{type: function, module: tests.replay_no_tie_judge}"
FOLLOW_UP = "continue your judgment and finish by outputting a final verdict label"  # arena-hard 2024

# alpaca_eval_gpt4_leaderboard.csv at tatsu-lab/alpaca_eval@cd543a1 (tests/data/alpaca_eval/SOURCES.md)
PUBLISHED = {"gpt4_0314": {"win_rate": 94.7826, "standard_error": 0.7490, "n_total": 805, "n_draws": 14},
             "alpaca-7b": {"win_rate": 26.4596, "standard_error": 1.5357, "n_total": 805, "n_draws": 16}}


def _annotations(model: str) -> list[dict]:
    path = AE / f"{model}_alpaca_eval_gpt4_annotations.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_identical_outputs_are_a_draw_without_asking_and_the_published_figure_comes_out(model, tmp_path, cli,
                                                                                         monkeypatch):
    """A judge that cannot say "tie" replays the published verdicts: the published figure, draws included, comes
    out exactly only when the identical pairs are never shown to it (they are alpaca_eval's only draws)."""
    rows = _annotations(model)
    base, answers, verdicts = tmp_path / "baseline.json", tmp_path / "model_outputs.json", tmp_path / "v.jsonl"
    base.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output_1"],
                                 "generator": r["generator_1"], "dataset": r["dataset"]} for r in rows]))
    answers.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output_2"],
                                    "generator": r["generator_2"]} for r in rows]))
    verdicts.write_text("".join(json.dumps({"instruction": r["instruction"], "preference": r["preference"],
                                            "switched": None}) + "\n" for r in rows))
    monkeypatch.setenv("ZR_REPLAY_VERDICTS", str(verdicts))
    monkeypatch.setenv("ZR_REPLAY_BASELINE", str(base))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "--trust-recipe-code", "model.name_or_path=./no-such-model",
                       "stage.benchmarks=[alpaca_eval]", f"stage.judge={NO_TIE}",
                       f"stage.alpaca_eval.instructions={base}", f"stage.alpaca_eval.answers={answers}",
                       "stage.alpaca_eval.max_samples=null", f"run.output_dir={out}")
    assert code == 0, err
    ae = json.loads((out / "scores.json").read_text())["alpaca_eval"]
    assert {k: ae[k] for k in PUBLISHED[model]} == PUBLISHED[model]
    identical = sum(r["output_1"] == r["output_2"] for r in rows)
    assert ae["identical"] == identical == PUBLISHED[model]["n_draws"] and ae["failures"] == 0
    judged = [json.loads(line) for line in (out / "alpaca_eval" / "judgments.jsonl").read_text().splitlines()]
    draws = [j for j in judged if j.get("identical")]
    assert len(draws) == identical and all(j["model_preference"] == 0.5 and "not asked" in j["raw"] for j in draws)
    assert "identical outputs, not asked" in (out / "README.md").read_text()


# -------------------------------------------------------------------------------------------- Arena-Hard
def _arena_files(tmp_path: Path, answers: list[str]) -> tuple[Path, Path, Path]:
    questions = [json.loads(line) for line in (AH / "question.jsonl").read_text().splitlines()][:len(answers)]
    qfile = tmp_path / "question.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    afile = tmp_path / "answers.jsonl"
    afile.write_text("".join(json.dumps({"uid": q["uid"], "model": "m", "messages": [
        {"role": "user", "content": q["prompt"]}, {"role": "assistant", "content": {"answer": a}}]}) + "\n"
        for q, a in zip(questions, answers)))
    return qfile, afile, AH / "gpt-4-0314.jsonl"


def test_arena_hard_v01_continues_a_reply_without_label_and_drops_two_labels(tmp_path, cli):
    """gen_judgment.py of 2024: no label -> the same conversation goes on, at the same temperature (0), with
    "continue your judgment ..." once, and the replies are read together; two different labels -> no score and no
    second ask."""
    def answer(body, headers):
        last = body["messages"][-1]["content"]
        if last == FOLLOW_UP:
            return "So my final verdict is: [[B>A]]"
        if "NOLABEL" in last:
            return "Assistant B explains more, but I need to weigh it further."
        if "CONFLICT" in last:
            return "Either [[A>B]] or, on reflection, [[B>A]]."
        return "My final verdict is tie: [[A=B]]"

    server = ChatEndpoint(answer)
    qfile, afile, baseline = _arena_files(tmp_path, ["NOLABEL answer", "CONFLICT answer", "plain answer"])
    out = tmp_path / "run"
    try:
        code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[arena_hard]",
                           "stage.arena_hard.version=v0.1", f"stage.arena_hard.questions={qfile}",
                           f"stage.arena_hard.answers={afile}", f"stage.arena_hard.baselines={baseline}",
                           f"stage.arena_hard.system_prompts={AH / 'judge_system_prompt.txt'}",
                           f"stage.arena_hard.judge_settings={AH / 'arena-hard-v0.1.yaml'}",
                           "~stage.judge.module",
                           "stage.judge={type: openai, base_url: '" + server.url + "', model: gpt-4-1106-preview, "
                           "max_retries: 2, backoff: 0.01}", f"run.output_dir={out}")
    finally:
        server.close()
    assert code == 0, err
    asked = server.requests
    first = [r for r in asked if "NOLABEL" in r["messages"][1]["content"] and len(r["messages"]) == 2]
    more = [r for r in asked if "NOLABEL" in r["messages"][1]["content"] and len(r["messages"]) > 2]
    assert len(first) == 2 and len(more) == 2  # two games, each continued once
    for cont in more:
        assert cont["messages"][:2] in [f["messages"] for f in first]
        assert cont["messages"][2:] == [
            {"role": "assistant", "content": "Assistant B explains more, but I need to weigh it further."},
            {"role": "user", "content": FOLLOW_UP}]
    assert {r.get("temperature") for r in first + more} == {0.0}
    assert sum("CONFLICT" in r["messages"][1]["content"] for r in asked) == 2  # once per game, never again
    assert len(asked) == 8
    judged = [json.loads(line) for line in (out / "arena_hard" / "judgments.jsonl").read_text().splitlines()]
    nolabel = [j for j in judged if j["uid"] == json.loads(qfile.read_text().splitlines()[0])["uid"]]
    assert {j["verdict"] for j in nolabel} == {"B>A"}
    assert all(j["judgment"] == "\nAssistant B explains more, but I need to weigh it further.\n"
                                "So my final verdict is: [[B>A]]" for j in nolabel)
    conflict = [j for j in judged if "failure" in j]
    assert len(conflict) == 2 and all("conflicting" in j["failure"] for j in conflict)
    scores = json.loads((out / "scores.json").read_text())["arena_hard"]
    assert scores["failures"] == 2 and "continued once" in scores["unparsable"]


# ---------------------------------------------------------------------------------------------- MT-Bench
def test_mt_bench_asks_once_records_minus_one_and_averages_a_grade_outside_1_to_10(tmp_path, cli):
    """FastChat's run_judge_single asks once; a reply without [[N]] is rating -1, which show_result leaves out of
    the means; a grade of 15 is averaged as FastChat averages it."""
    def answer(body, headers):
        text = body["messages"][-1]["content"]
        if "NOGRADE" in text:
            return "A fine answer, I would say."
        if "BIG" in text:
            return "Outstanding. Rating: [[15]]"
        return "Rating: [[7]]"

    questions = [json.loads(line) for line in (DATA / "mt_bench" / "question.jsonl").read_text().splitlines()]
    questions = [q for q in questions if q["category"] == "writing"][:2]
    qfile = tmp_path / "question.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    afile = tmp_path / "answers.jsonl"
    turns = [["plain one", "NOGRADE two"], ["plain one", "BIG two"]]
    afile.write_text("".join(json.dumps({"question_id": q["question_id"], "model_id": "m", "answer_id": "x",
                                         "choices": [{"index": 0, "turns": t}]}) + "\n"
                             for q, t in zip(questions, turns)))
    server = ChatEndpoint(answer)
    out = tmp_path / "run"
    try:
        code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[mt_bench]",
                           f"stage.mt_bench.questions={qfile}", f"stage.mt_bench.answers={afile}",
                           f"stage.mt_bench.judge_prompts={DATA / 'mt_bench' / 'judge_prompts.jsonl'}",
                           "stage.mt_bench.reference_answers=null",
                           "~stage.judge.module", "stage.judge={type: openai, base_url: '" + server.url + "', model: gpt-4, "
                           "max_retries: 2, backoff: 0.01}", f"run.output_dir={out}")
    finally:
        server.close()
    assert code == 0, err
    # turn 2 of the first question has no grade: asked once, never again
    nograde = [r for r in server.requests if "NOGRADE" in r["messages"][-1]["content"]]
    assert len(nograde) == 1 and len(server.requests) == 4
    judged = {(j["question_id"], j["turn"]): j for j in
              map(json.loads, (out / "mt_bench" / "judgments.jsonl").read_text().splitlines())}
    missing = judged[(questions[0]["question_id"], 2)]
    assert missing["score"] == -1 and "no [[rating]]" in missing["failure"]
    mtb = json.loads((out / "scores.json").read_text())["mt_bench"]
    assert mtb["failures"] == 1 and mtb["judged"] == 3
    assert mtb["score"] == pytest.approx((7 + 15 + 7) / 3, abs=1e-4)  # -1 left out, 15 averaged
    assert mtb["turn_1"] == 7 and mtb["turn_2"] == 15 and "score -1" in mtb["unparsable"]


# ------------------------------------------------------------------------------------ AlpacaEval 2.0 only
def test_a_run_with_only_alpaca_eval_2_does_not_ask_the_unused_main_judge(tmp_path, cli, monkeypatch):
    """stage.judge is an endpoint nobody serves, with a key that is not set; AlpacaEval 2.0 has its own judge."""
    monkeypatch.delenv("ZR_UNSET_KEY", raising=False)
    rows = json.loads((AE / "text_davinci_003_outputs.json").read_text())[:6]
    answers = tmp_path / "model_outputs.json"
    answers.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output"][:40]} for r in rows]))
    args = ["tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[alpaca_eval_2]",
            f"stage.alpaca_eval_2.answers={answers}",
            "~stage.judge.module",
            "stage.judge={type: openai, base_url: 'http://127.0.0.1:9/v1', model: gpt-4, api_key_env: ZR_UNSET_KEY}",
            "stage.alpaca_eval_2.judge={type: function, module: zephyr_recipes.embedded.lexical_judge}"]
    code, out, err = cli("validate", *args)
    assert code == 0, err
    # the same judge, used: refused before anything runs
    code, _, err = cli("validate", *args, "~stage.alpaca_eval_2.judge")
    assert code == 2 and "ZR_UNSET_KEY" in err


def test_the_alpaca_eval_prefix_reads_the_installed_packages_prompt_for_alpaca_eval_1(tmp_path, cli):
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    rows = json.loads((AE / "text_davinci_003_outputs.json").read_text())[:4]
    answers = tmp_path / "model_outputs.json"
    answers.write_text(json.dumps([{"instruction": r["instruction"], "output": "MODEL " + r["output"][:50],
                                    "generator": "other"} for r in rows]))
    server = ChatEndpoint(lambda body, headers: "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]")
    out = tmp_path / "run"
    try:
        code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[alpaca_eval]",
                           f"stage.alpaca_eval.instructions={AE / 'text_davinci_003_outputs.json'}",
                           f"stage.alpaca_eval.answers={answers}", "stage.alpaca_eval.max_samples=null",
                           "stage.alpaca_eval.prompt=alpaca_eval:evaluators_configs/alpaca_eval_gpt4/alpaca_eval.txt",
                           "~stage.judge.module", "stage.judge={type: openai, base_url: '" + server.url + "', model: gpt-4}",
                           f"run.output_dir={out}")
    finally:
        server.close()
    assert code == 0, err
    published = (AE / "alpaca_eval_gpt4_judge_prompt.txt").read_text()
    sent = server.requests[0]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"] in published  # the package's copy, as published
    scores = json.loads((out / "scores.json").read_text())
    # 4 answered of the 100 instructions; nothing generated: the top level names the answers file, not the model
    assert scores["alpaca_eval"]["n_total"] == 4 and "model" not in scores
    assert scores["answers_from"] == {"alpaca_eval": str(answers)} and scores["judge"]["type"] == "openai"


def test_scores_name_no_unused_judge_and_no_model_when_answers_come_from_files(tmp_path, cli):
    rows = json.loads((AE / "text_davinci_003_outputs.json").read_text())[:6]
    answers = tmp_path / "model_outputs.json"
    answers.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output"][:40],
                                    "generator": "other"} for r in rows]))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[alpaca_eval]",
                       f"stage.alpaca_eval.instructions={AE / 'text_davinci_003_outputs.json'}",
                       f"stage.alpaca_eval.answers={answers}", "stage.alpaca_eval.max_samples=null",
                       "~stage.judge.module", "stage.judge={type: openai, base_url: 'http://127.0.0.1:9/v1', model: unused}",
                       "stage.alpaca_eval.judge={type: function, module: zephyr_recipes.embedded.lexical_judge}",
                       f"run.output_dir={out}")
    assert code == 0, err
    scores = json.loads((out / "scores.json").read_text())
    assert "model" not in scores and "judge" not in scores  # neither the recipe's model nor the unused judge
    assert scores["alpaca_eval"]["judge"] == {"type": "function", "module": "zephyr_recipes.embedded.lexical_judge",
                                              "pipeline_check": True}  # what its judge type declares
    assert scores["answers_from"] == {"alpaca_eval": str(answers)}


def test_an_lc_from_a_user_supplied_df_gamed_is_named_and_not_the_published_protocol(tmp_path):
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    rows = [{"instruction": f"Say {i} things.", "output": "word " * (5 + i), "generator": "base", "index": i}
            for i in range(12)]
    produced = {instruction_id(r["instruction"]): "word " * (3 + 2 * i) for i, r in enumerate(rows)}
    judgments = [{"instruction_id": instruction_id(r["instruction"]), "model_preference": float(i % 2)}
                 for i, r in enumerate(rows)]
    mine = alpaca_lc.standin_difficulties(rows, tmp_path / "my_df_gamed.csv")
    source = alpaca_lc.df_gamed_source(str(mine), str(mine))
    got = alpaca_lc.scores(rows, produced, judgments, "m", "length_controlled_minimal", str(mine), tmp_path,
                           source=source)
    assert got["length_controlled_winrate"] is not None
    assert got["df_gamed"]["file"] == "my_df_gamed.csv" and re.fullmatch(r"[0-9a-f]{64}", got["df_gamed"]["sha256"])
    assert got["df_gamed"]["published"] is False
    assert "not the published-protocol LC" in got["lc_caveat"] and got["df_gamed"]["sha256"][:12] in got["lc_caveat"]
    from zephyr_recipes import benchmarks

    shown = benchmarks.get("alpaca_eval_2").metrics[0].format(got)
    assert "my_df_gamed.csv" in shown and "not the published-protocol LC" in shown
    published = alpaca_lc.df_gamed_source(alpaca_lc.PUBLISHED_DF_GAMED, str(mine))
    assert published["published"] is True


def test_the_shipped_recipe_pins_the_alpaca_eval_2_judge_prompt_to_a_commit():
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "zephyr-7b-beta" / "eval.yaml")
                            .read_text())
    prompt = recipe["stage"]["alpaca_eval_2"]["prompt"]
    assert re.search(r"/tatsu-lab/alpaca_eval/[0-9a-f]{40}/src/", prompt) and "/main/" not in prompt
