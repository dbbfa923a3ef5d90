"""The benchmarks seam and the published protocols: replays of published AlpacaEval annotations through the same
code a live run uses (a judge that replays the recorded verdicts), Arena-Hard's verdict rules and intervals,
failures that end the stage failed, answers files in the wrong format, and a new benchmark as one module and one
registry line."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.benchmark_files import DATA, FULL, IS_FULL
from zephyr_recipes import benchmarks
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.evaluation import alpaca, arena_hard, mt_bench, precomputed

PREFS = DATA / "alpaca_eval" / "published_preferences.jsonl"
REPLAY = "{type: function, module: tests.replay_judge}"

# Published figures (tests/data/alpaca_eval/SOURCES.md; alpaca_eval's leaderboards at commit cd543a1):
# AlpacaEval 2.0, weighted_alpaca_eval_gpt4_turbo_leaderboard.csv, falcon-7b-instruct: 2.146617553167702 ± 0.454225792894195
AE2_FALCON = {"win_rate": 2.1466, "standard_error": 0.4542, "n_total": 805}
# AlpacaEval 1, alpaca_eval_gpt4_leaderboard.csv, zephyr-7b-beta: 90.5977584059776 ± 1.0287080531312012, n_total 803
AE1_ZEPHYR = {"win_rate": 90.5978, "standard_error": 1.0287, "n_total": 803}


def _published() -> list[dict]:
    return [json.loads(line) for line in PREFS.read_text().splitlines() if line.strip()]


def _stand_ins(tmp_path: Path, rows: list[dict]) -> tuple[Path, Path]:
    """The real instructions with stand-in answers: the baseline's and the model's (the win rate reads only the
    verdicts; the order alpaca_eval drew reads the instruction)."""
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps([{"instruction": r["instruction"], "output": f"baseline answer {i}",
                                 "generator": "published-baseline", "dataset": "alpaca_eval"}
                                for i, r in enumerate(rows)]))
    model = tmp_path / "model_outputs.json"
    model.write_text(json.dumps([{"instruction": r["instruction"], "output": f"model answer {i}", "generator": "pub"}
                                 for i, r in enumerate(rows)]))
    return base, model


def _verdicts(tmp_path: Path, rows: list[dict], pref: str, switched: str | None) -> Path:
    path = tmp_path / "verdicts.jsonl"
    path.write_text("".join(json.dumps({"instruction": r["instruction"], "preference": r[pref],
                                        "switched": r[switched] if switched else None}) + "\n" for r in rows))
    return path


def _replay(cli, monkeypatch, tmp_path, bench: str, base: Path, model: Path, verdicts: Path, *extra: str):
    monkeypatch.setenv("ZR_REPLAY_VERDICTS", str(verdicts))
    monkeypatch.setenv("ZR_REPLAY_BASELINE", str(base))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "--trust-recipe-code", "model.name_or_path=./no-such-model",
                       f"stage.benchmarks=[{bench}]",
                       f"stage.judge={REPLAY}", f"stage.{bench}.instructions={base}", f"stage.{bench}.answers={model}",
                       f"stage.{bench}.max_samples=null", f"run.output_dir={out}", *extra)
    return code, err, out


def test_alpaca_eval_2_replay_gives_the_published_win_rate_and_standard_error(tmp_path, cli, monkeypatch):
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    rows = _published()
    base, model = _stand_ins(tmp_path, rows)
    verdicts = _verdicts(tmp_path, rows, "ae2_falcon_preference", "ae2_falcon_switched")
    code, err, out = _replay(cli, monkeypatch, tmp_path, "alpaca_eval_2", base, model, verdicts,
                             "stage.alpaca_eval_2.glm=length_controlled_v1",
                             f"stage.alpaca_eval_2.df_gamed={tmp_path / 'no-df_gamed.csv'}")
    assert code == 0, err
    ae2 = json.loads((out / "scores.json").read_text())["alpaca_eval_2"]
    assert {k: ae2[k] for k in AE2_FALCON} == AE2_FALCON
    assert ae2["failures"] == 0 and ae2["orders"] == "one"  # every pair shown in the order alpaca_eval recorded
    # without df_gamed.csv: no LC figure, the reason said, and no standard error of a value never estimated
    assert ae2["length_controlled_winrate"] is None and ae2["lc_standard_error"] is None
    assert "not computed" in ae2["lc_note"] and "df_gamed" in ae2["lc_note"]
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete"
    assert status["summary"]["alpaca_eval_2"] == 2.1466 and status["summary"]["alpaca_eval_2_judge_failures"] == 0


def test_alpaca_eval_1_replay_gives_the_published_figure(tmp_path, cli, monkeypatch):
    rows = _published()
    base, model = _stand_ins(tmp_path, rows)
    verdicts = _verdicts(tmp_path, rows, "ae1_zephyr_preference", None)
    code, err, out = _replay(cli, monkeypatch, tmp_path, "alpaca_eval", base, model, verdicts)
    assert code == 0, err
    ae = json.loads((out / "scores.json").read_text())["alpaca_eval"]
    assert {k: ae[k] for k in AE1_ZEPHYR} == AE1_ZEPHYR
    assert ae["failures"] == 2  # the two annotations without a preference, dropped as alpaca_eval drops them
    card = (out / "README.md").read_text()
    assert "90.5978 ± 1.0287" in card and "alpaca_eval's seeded order" in card and "judge failures: 2" in card


def test_replay_in_both_orders_is_labelled_not_the_published_protocol(tmp_path, cli, monkeypatch):
    rows = _published()[:30]
    base, model = _stand_ins(tmp_path, rows)
    verdicts = _verdicts(tmp_path, rows, "ae1_zephyr_preference", None)
    code, err, out = _replay(cli, monkeypatch, tmp_path, "alpaca_eval", base, model, verdicts,
                             "stage.alpaca_eval.both_orders=true")
    assert code == 0, err
    ae = json.loads((out / "scores.json").read_text())["alpaca_eval"]
    assert ae["orders"] == "both" and "not the published protocol" in (out / "README.md").read_text()
    code, report, _ = cli("report", str(out))
    assert "NOT the published protocol" in report and "| Zephyr-7B-beta (published) | GPT-4 | 90.60 ± 1.03" in report


def test_the_reports_protocol_column_reads_each_runs_own_typed_section(tmp_path):
    """The protocol column says what the run's config.yaml held (an order seed of 3), and an older run's config
    without the key, or none readable, gives the section's default."""
    from zephyr_recipes.reports import report

    result = {"win_rate": 50.0, "standard_error": 1.0, "n_total": 10, "instructions": 10, "baseline": ["b"]}
    configs = {"seeded": "stage: {name: eval, alpaca_eval: {order_seed: 3}}\n", "older": "stage: {name: eval}\n",
               "broken": "stage: [unclosed\n"}
    runs = []
    for name, text in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(text)
        runs.append({"folder": str(tmp_path / name), "alpaca_eval": result})
    lines = report.beside_published(runs, list(configs)).splitlines()
    row = {name: next(line for line in lines if line.startswith(f"| {name} |")) for name in configs}
    assert "alpaca_eval's seeded order (seed 3)" in row["seeded"]
    assert "(seed 0)" in row["older"] and "(seed 0)" in row["broken"]


def test_alpaca_eval_2_replay_on_the_published_answer_files(tmp_path, cli, monkeypatch):
    """The published baseline file, falcon-7b-instruct's published answers and its published annotations: all 805,
    giving the published figures, with ../shared/data beside the checkout; else the first 40 of each (tests/data)
    with their published preferences, giving the win rate those preferences make by hand."""
    pytest.importorskip("alpaca_eval", reason="alpaca-eval is in the eval extra")
    ae = FULL / "alpaca_eval"
    published = _published()
    switched = {r["instruction"]: r["ae2_falcon_switched"] for r in published}
    falcon = json.loads((ae / "falcon-7b-instruct_outputs.json").read_text())
    if IS_FULL:
        annotations = json.loads((ae / "falcon-7b-instruct_ae2_annotations.json").read_text())
        prefs = [(a["instruction"], a["preference"]) for a in annotations]
    else:
        prefs = [(r["instruction"], r["ae2_falcon_preference"]) for r in published[: len(falcon)]]
    assert [i for i, _ in prefs] == [r["instruction"] for r in falcon]  # the same instructions, in the same order
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("".join(json.dumps({"instruction": i, "preference": p, "switched": switched[i]}) + "\n"
                                for i, p in prefs))
    base = ae / "alpaca_eval_2_baseline_gpt4_1106_preview.json"
    code, err, out = _replay(cli, monkeypatch, tmp_path, "alpaca_eval_2", base, ae / "falcon-7b-instruct_outputs.json",
                             verdicts, "stage.alpaca_eval_2.glm=length_controlled_v1",
                             f"stage.alpaca_eval_2.df_gamed={tmp_path / 'no-df_gamed.csv'}")
    assert code == 0, err
    ae2 = json.loads((out / "scores.json").read_text())["alpaca_eval_2"]
    if IS_FULL:
        assert {k: ae2[k] for k in AE2_FALCON} == AE2_FALCON
    else:  # a weighted preference p in [1, 2] counts p - 1 of a win
        assert ae2["n_total"] == len(prefs) == 40 and ae2["failures"] == 0
        assert ae2["win_rate"] == pytest.approx(100 * sum(p - 1 for _, p in prefs) / len(prefs), abs=1e-3)
    assert ae2["baseline"] == ["gpt4_1106_preview"]
    assert ae2["avg_length"] == pytest.approx(sum(len(r["output"]) for r in falcon) / len(falcon), abs=0.1)


def test_alpaca_evals_seeded_order_is_the_one_its_annotations_recorded():
    rows = [r for r in _published() if r["ae2_falcon_switched"] is not None]
    assert len(rows) == 803
    assert all(alpaca.switched(r["instruction"], 0) == r["ae2_falcon_switched"] for r in rows)
    assert alpaca.orders(rows[0]["instruction"], True, 0) == (0, 1)


def test_the_alpaca_eval_1_default_baseline_is_the_leaderboards(tmp_path):
    """alpaca_eval's annotations format is read as a baseline file: output_1 is what the leaderboard judged."""
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps([{"instruction": "Say hi", "output_1": "Hi!", "generator_1": "text_davinci_003",
                                 "output_2": "hello", "generator_2": "x", "preference": 2.0}]))
    rows = alpaca.load_instructions(str(path), None, 0)
    assert rows[0]["output"] == "Hi!" and rows[0]["generator"] == "text_davinci_003"
    sec = benchmarks.get("alpaca_eval").schema()
    assert sec.instructions.endswith("results/zephyr-7b-beta/alpaca_eval_gpt4/annotations.json")
    assert sec.both_orders is False and sec.order_seed == 0 and sec.judge_max_new_tokens == 100


# ------------------------------------------------------------------------------------------- Arena-Hard
def test_arena_hard_v01_drops_a_judgment_with_conflicting_labels_and_v20_takes_the_last():
    reply = "At first [[A>B]] seemed right, but on reflection: [[B>A]]"
    with pytest.raises(Exception, match="conflicting"):
        arena_hard.parse_verdict(reply, rule="2024")
    assert arena_hard.parse_verdict(reply, rule="2025") == "B>A"
    assert arena_hard.parse_verdict("[[A>B]] and again [[A>B]]", rule="2024") == "A>B"
    assert arena_hard.PROTOCOLS["v0.1"]["verdict_rule"] == "2024" and arena_hard.PROTOCOLS["v2.0"]["interval"] == 90


def test_arena_hard_v20_scores_per_category_with_90_percent_intervals():
    judgments = []
    for n in range(30):
        for cat, win in (("hard_prompt", n % 3 == 0), ("creative_writing", n % 3 != 0)):
            for game in (1, 2):
                label = ("B>A" if win else "A>B") if game == 1 else ("A>B" if win else "B>A")
                judgments.append({"uid": f"{cat}{n}", "game": game, "category": cat, "verdict": label,
                                  "baseline": "b"})
    judgments.append({"uid": "hard_prompt0", "game": 3, "category": "hard_prompt", "failure": "x"})
    out = arena_hard.scores([], judgments, [], version="v2.0")
    assert out["interval"] == 90 and set(out["categories"]) == {"hard_prompt", "creative_writing"}
    hard, creative = out["categories"]["hard_prompt"], out["categories"]["creative_writing"]
    assert hard["score"] == pytest.approx(100 / 3, abs=3) and creative["score"] == pytest.approx(200 / 3, abs=3)
    assert hard["ci_90"][0] < hard["score"] < hard["ci_90"][1]
    assert out["score"] == hard["score"] and out["score_category"] == "hard_prompt" and "pooled" in out
    v01 = arena_hard.scores([], judgments, [], version="v0.1")
    assert v01["interval"] == 95 and v01["ci_95"] and v01["verdict_rule"] == "2024"
    metric = benchmarks.get("arena_hard").metrics[0]
    assert "(90% CI" in metric.format(out) and "(95% CI" in metric.format(v01)


# ------------------------------------------------------------------------------------------- failures, input
def test_max_questions_samples_across_categories_seeded():
    spec = str(DATA / "mt_bench" / "question_slice.jsonl")
    first = mt_bench.load_questions(spec, 8, seed=0)
    assert len({q.category for q in first}) == 8  # not the first eight (all writing and roleplay)
    assert [q.id for q in first] == [q.id for q in mt_bench.load_questions(spec, 8, seed=0)]
    assert [q.id for q in first] != [q.id for q in mt_bench.load_questions(spec, 8, seed=1)]
    assert len({q.category for q in mt_bench.load_questions(spec, 4, seed=3)}) == 4


def _fastchat_answers(path: Path, questions: list) -> Path:
    path.write_text("".join(json.dumps({"question_id": q.id, "model_id": "other", "choices": [
        {"index": 0, "turns": [f"answer {q.id} {t}" for t in range(len(q.turns))]}]}) + "\n" for q in questions))
    return path


def test_a_benchmark_whose_every_judgment_failed_ends_the_stage_failed_with_the_reason(tmp_path, cli):
    spec = DATA / "mt_bench" / "question_slice.jsonl"
    answers = _fastchat_answers(tmp_path / "answers.jsonl", mt_bench.load_questions(str(spec)))
    out = tmp_path / "run"
    code, _, err = cli("tiny/eval", "--trust-recipe-code", "model.name_or_path=./no-such-model",
                       "stage.benchmarks=[mt_bench]",
                       f"stage.mt_bench.questions={spec}", f"stage.mt_bench.answers={answers}",
                       "stage.mt_bench.reference_answers=null", "stage.judge={type: function, module: tests.replay_judge}",
                       f"run.output_dir={out}")
    assert code != 0 and "MT-Bench: no score, all 32 judgment(s) failed" in err
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "failed" and "MT-Bench: no score" in status["error"]
    assert status["summary"]["mt_bench_judge_failures"] == 32  # the count is in run.json
    assert json.loads((out / "scores.json").read_text())["mt_bench"]["failures"] == 32


def test_answers_matching_no_prompt_or_in_another_benchmarks_format_are_refused(tmp_path):
    from zephyr_recipes.feedback.store import Store

    questions = mt_bench.load_questions(str(DATA / "mt_bench" / "question_slice.jsonl"))
    fastchat = _fastchat_answers(tmp_path / "mt_bench_answers.jsonl", questions)
    store = Store(tmp_path / "store.jsonl")
    try:
        ah_questions = [{"uid": "0a1b2c", "category": "arena-hard-v0.1", "prompt": "Write a haiku"}]
        with pytest.raises(ZephyrError) as err:  # MT-Bench's file given as Arena-Hard answers
            precomputed.arena_hard_answers(str(fastchat), ah_questions, store)
        assert "answers none of the 1 prompt(s)" in str(err.value) and "FastChat's MT-Bench" in str(err.value)
        assert "Arena-Hard's model_answer" in err.value.fix
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps([{"instruction": "Something else", "output": "x", "generator": "g"}]))
        with pytest.raises(ZephyrError) as err:  # alpaca_eval outputs for other instructions
            precomputed.alpaca_outputs(str(outputs), [{"instruction": "Say hi", "output": "Hi"}], store)
        assert "answers none of the 1 prompt(s)" in str(err.value) and "model_outputs.json" in err.value.fix
    finally:
        store.close()


# ------------------------------------------------------------------------------------------- the seam
def test_every_metric_key_is_unique_and_every_reference_names_its_protocol_and_source():
    keys = [m.key for _, m in benchmarks.metrics()]
    assert len(keys) == len(set(keys))
    for bench in benchmarks.all_benchmarks():
        assert bench.name in benchmarks.MODULES and bench.metrics
        for ref in bench.references:
            assert ref.protocol and ref.source and set(ref.values) <= {m.key for m in bench.metrics}
    assert benchmarks.value({"mt_bench": {"score": 7.1}}, "mt_bench") == 7.1


def test_a_new_benchmark_is_its_module_and_one_registry_line(tmp_path, cli, monkeypatch):
    """tests/toy_benchmark.py registered by one line: the stage's schema, the card, run.json and report read it."""
    from zephyr_recipes.stages import eval as eval_stage

    monkeypatch.setitem(benchmarks.MODULES, "toy", "tests.toy_benchmark")  # the one registry line
    try:
        importlib.reload(eval_stage)  # the stage's schema is built from the registry when it is imported
        monkeypatch.setattr("zephyr_recipes.stages.REGISTRY._loaded", {})
        out = tmp_path / "run"
        code, _, err = cli("tiny/eval", "stage.benchmarks=[toy]", "stage.toy.word=zephyr", f"run.output_dir={out}")
        assert code == 0, err
        status = json.loads((out / "run.json").read_text())
        assert status["status"] == "complete" and status["summary"] == {"toy_letters": 6}
        assert "## Toy\n" in (out / "README.md").read_text()
        code, report, _ = cli("report", str(out))
        assert "| Toy letters |" in report and "counts letters" in report
    finally:
        monkeypatch.undo()
        importlib.reload(eval_stage)


def test_too_few_judged_instructions_for_the_lc_glm_give_a_note_not_a_traceback(tmp_path):
    """alpaca_eval fits its GLM with 5-fold cross-validation: under 5 judged instructions (a small max_samples) the
    LC win rate is not computed and says why; the raw win rate is still given. At 6 it is computed."""
    from zephyr_recipes.evaluation import alpaca_lc
    from zephyr_recipes.evaluation.alpaca import instruction_id

    def case(n: int) -> dict:
        rows = [{"instruction": f"Say {i} things.", "output": "word " * (5 + i), "generator": "base", "index": i}
                for i in range(n)]
        produced = {instruction_id(r["instruction"]): "word " * (3 + 2 * i) for i, r in enumerate(rows)}
        judgments = [{"instruction_id": instruction_id(r["instruction"]), "model_preference": float(i % 2)}
                     for i, r in enumerate(rows)]
        difficulty = alpaca_lc.standin_difficulties(rows, tmp_path / f"df_{n}.csv")
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        return alpaca_lc.scores(rows, produced, judgments, "m", "length_controlled_minimal", str(difficulty),
                                folder, approximate=True)

    few = case(3)
    assert few["length_controlled_winrate"] is None and "5-fold" in few["lc_note"] and "here 3" in few["lc_note"]
    assert few["win_rate"] is not None
    enough = case(6)
    assert enough["length_controlled_winrate"] is not None and "lc_note" in enough
