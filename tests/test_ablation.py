"""The Table 3 report from pipeline folders: means and spread over seeds, claims with their intervals and
verdicts, and the held-out evaluation prompts of the embedded default."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from zephyr_recipes.embedded import builtin, judge, tasks
from zephyr_recipes.reports import ablation

CLAIMS = [{"run": "dSFT + dDPO", "metric": "mt_bench", "above": "dSFT"},
          {"run": "dSFT + dDPO", "metric": "alpaca_eval", "above": 50},
          {"run": "dSFT + dDPO", "metric": "mt_bench", "at_least": "dSFT-2"}]


def _pipeline(folder, seed, rows):
    """A finished pipeline folder as the runner writes it: pipeline.yaml, pipeline.json, eval stages with their
    scores and per-item judgments. A row is (name, grades per question, preferences per instruction or None)."""
    stages = [{"name": f"eval-{i}", "recipe": "tiny/eval-heldout"} for i in range(len(rows))]
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(
        {"pipeline": {"output_dir": str(folder), "seed": seed, "stages": stages, "report": {"claims": CLAIMS}}}))
    (folder / "pipeline.json").write_text(json.dumps({"seed": seed, "stages": {}}))
    for i, (name, grades, prefs) in enumerate(rows):
        ev = folder / f"eval-{i}"
        (ev / "mt_bench").mkdir(parents=True)
        (ev / "mt_bench" / "judgments.jsonl").write_text("".join(
            json.dumps({"key": f"{q}:{t}", "question_id": q, "turn": t, "score": g}) + "\n"
            for q, g in enumerate(grades) for t in (1, 2)))
        mt = sum(grades) / len(grades)
        win = None
        if prefs is not None:
            (ev / "alpaca_eval").mkdir()
            (ev / "alpaca_eval" / "judgments.jsonl").write_text("".join(
                json.dumps({"key": f"i{k}:o{o}", "instruction_id": f"i{k}", "model_preference": p}) + "\n"
                for k, p in enumerate(prefs) for o in (1, 2)))
            win = 100 * sum(prefs) / len(prefs)
        (ev / "scores.json").write_text(json.dumps({
            "model_id": name, "judge": {"type": "function", "module": "zephyr_recipes.embedded.judge"},
            "mt_bench": {"score": mt, "turn_1": mt, "turn_2": mt, "categories": {"sort": mt, "count": mt, "add": mt}},
            "alpaca_eval": {"win_rate": win, "baseline": ["dSFT"]}}))
    return folder


def _grades(mean, spread, n=40):
    """n grades with the given mean, alternating mean +- spread."""
    return [mean + (spread if q % 2 else -spread) for q in range(n)]


def test_table3_means_spread_and_claim_intervals(tmp_path, cli):
    # Seed 1: dDPO 1.0 above dSFT on every question, 0.5 above dSFT-2, wins 70%. Seed 2: 0.2 above dSFT on
    # every question, 0.1 above dSFT-2, wins 48%: pooled, the grade claims hold and the win rate is not shown.
    a = _pipeline(tmp_path / "s1", 1, [("dSFT", _grades(3.0, 1), None), ("dSFT-2", _grades(3.5, 1), [1, 0] * 20),
                                       ("dSFT + dDPO", _grades(4.0, 1), [1] * 70 + [0] * 30)])
    b = _pipeline(tmp_path / "s2", 2, [("dSFT", _grades(3.0, 1), None), ("dSFT-2", _grades(3.1, 1), [1, 0] * 20),
                                       ("dSFT + dDPO", _grades(3.2, 1), [1] * 48 + [0] * 52)])
    out = tmp_path / "report"
    md = ablation.report([a, b], out)
    assert "| dSFT + dDPO | 3.60 ± 0.57 |" in md  # mean 3.6, sample sd of (4.0, 3.2)
    assert "| dSFT-2 | 3.30 ± 0.28 |" in md and "| dSFT + dDPO | 4.00 / 70.0% | 3.20 / 48.0% |" in md
    assert "| model | seed 1 | seed 2 |" in md
    # A difference the same on every question has no spread over questions: its interval is the seeds' range.
    assert "dSFT + dDPO > dSFT (MT-Bench-style grade (1-10)): **holds**, +0.60 [+0.20, +1.00] over 2 seed(s) " \
           "× 40 questions. Holds in 2 of 2 seeds alone (seed 1 4.00 vs 3.00, +1.00 [+1.00, +1.00] holds; " \
           "seed 2 3.20 vs 3.00, +0.20 [+0.20, +0.20] holds)" in md
    assert "dSFT + dDPO ≥ dSFT-2 (MT-Bench-style grade (1-10)): **holds**, +0.30 [+0.10, +0.50]" in md
    assert "dSFT + dDPO > 50 (AlpacaEval-style win %): **not shown**, +9.0 [" in md
    assert "seed 2 48.0 vs 50.0, -2.0 [" in md
    assert (out / "table3.png").stat().st_size > 1000 and (out / "radar.png").is_file()
    # Through the command line: report.html with the ablation table, Table 3's chart inside the page, and the first
    # pipeline's rows side by side on every question.
    code, _, err = cli("report", str(a), str(b), "--out", str(tmp_path / "page"))
    assert code == 0, err
    page = (tmp_path / "page" / "report.html").read_text()
    assert "<td>dSFT + dDPO</td><td>3.60 ± 0.57</td>" in page and "data:image/png;base64," in page
    mt = page.split('id="b-mt_bench"', 1)[1].split("</section>", 1)[0]
    assert mt.count('<details class="q"') == 40 and "Compared: dSFT, dSFT-2, dSFT + dDPO." in mt
    assert "From the pipeline" in mt and "(seed 1)" in mt
    assert mt.count("grade 5/10") == 40  # seed 1: dDPO graded 5 on 20 questions, both turns
    saved = json.loads((out / "scores.json").read_text())
    assert saved["seeds"] == ["seed 1", "seed 2"] and saved["rows"] == ["dSFT", "dSFT-2", "dSFT + dDPO"]
    assert [c["verdict"] for c in saved["claims"]] == ["holds", "not shown", "holds"]
    win = saved["claims"][1]
    assert win["low"] < 0 < win["high"] and win["per_seed"][0]["verdict"] == "holds"


def test_one_seed_claims_get_intervals_over_questions(tmp_path):
    noisy = [8.0 if q % 3 == 0 else 4.0 for q in range(60)]  # mean 5.33, spread over questions
    a = _pipeline(tmp_path / "s1", 42, [("dSFT", [5.0] * 60, None), ("dSFT-2", [6.0] * 60, [0.5] * 60),
                                        ("dSFT + dDPO", noisy, [0] * 45 + [1] * 15)])
    md = ablation.report([a])
    assert "over 1 seed(s) × 60 questions" in md and "crossed" not in md
    assert "dSFT + dDPO > dSFT (MT-Bench-style grade (1-10)): **not shown**, +0.33 [" in md
    assert "dSFT + dDPO > 50 (AlpacaEval-style win %): **fails**, -25.0 [" in md
    assert "dSFT + dDPO ≥ dSFT-2 (MT-Bench-style grade (1-10)): **fails**, -0.67 [" in md
    assert "(5.33 vs 6.00)" in md


def test_bootstrap_and_verdicts():
    import numpy as np

    from zephyr_recipes.evaluation import intervals

    rng = np.random.default_rng(7)
    d = rng.normal(0.5, 1.0, size=(3, 400))
    mean, low, high = intervals.bootstrap(d)
    assert low < mean < high and abs(mean - d.mean()) < 1e-12
    assert intervals.bootstrap(d) == (mean, low, high)  # seeded: the same report every time
    # Over one seed of 400 items the 95% interval is about mean +- 1.96 * sd / sqrt(n).
    m1, l1, h1 = intervals.bootstrap(d[0])
    assert abs((h1 - l1) / 2 - 1.96 * d[0].std() / 20) < 0.02
    assert intervals.verdict(0.1, 0.4, strict=True) == "holds"
    assert intervals.verdict(-0.1, 0.4, strict=True) == "not shown"
    assert intervals.verdict(-0.4, 0.0, strict=True) == "fails"
    assert intervals.verdict(0.0, 0.0, strict=False) == "holds"  # at_least: equal is enough
    assert intervals.verdict(-0.3, -0.1, strict=False) == "fails"


def test_report_check_asserts_verdicts_not_figures(tmp_path, cli):
    rows = [("dSFT", _grades(3.0, 1), None), ("dSFT-2", _grades(3.2, 1), [1, 0] * 50),
            ("dSFT + dDPO", _grades(4.0, 1), [1] * 80 + [0] * 20)]
    good = _pipeline(tmp_path / "good", 1, rows)
    code, out, err = cli("report", str(good), "--check")
    assert code == 0 and "check: all 3 asserted claims hold over 1 seed(s)" in err and "| dSFT + dDPO |" in out
    rows[2] = ("dSFT + dDPO", _grades(4.0, 1), [1] * 52 + [0] * 48)  # 52% of 100: not shown above 50
    weak = _pipeline(tmp_path / "weak", 1, rows)
    code, _, err = cli("report", str(weak), "--check")
    assert code == 1 and "check: dSFT + dDPO > 50 (AlpacaEval-style win %): not shown" in err
    assert "check: 1 of 3 asserted claim(s) do not hold" in err
    code, _, err = cli("report", str(weak / "eval-0"), "--check")
    assert code == 2 and "--check needs pipeline folders" in err


def test_table3_refuses_unlike_pipelines_and_bad_claims(tmp_path, cli):
    a = _pipeline(tmp_path / "s1", 1, [("dSFT", [3.0], None), ("dSFT + dDPO", [4.0], [1, 0])])
    b = _pipeline(tmp_path / "s2", 2, [("dSFT", [3.0], None)])
    code, _, err = cli("report", str(a), str(b))
    assert code == 2 and "the row 'dSFT + dDPO' is in 1 of the 2 pipelines" in err
    run = tmp_path / "s1" / "eval-0"
    code, _, err = cli("report", str(a), str(run))
    assert code == 2 and "mix pipeline folders and evaluation run folders" in err
    bad = tmp_path / "p.yaml"
    bad.write_text("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft}\n"
                   "  report:\n    claims:\n      - {run: dSFT, metric: mt_bench}\n")
    code, _, err = cli("validate", str(bad))
    assert code == 2 and "needs exactly one of `above`, `at_least` and `recovers`" in err


def test_held_out_prompts_are_not_in_any_training_set():
    root = builtin.resolve("builtin://tiny-zephyr-eval")
    seen = set()
    for name in ("builtin://tiny-ultrachat", "builtin://tiny-ultrafeedback"):
        for part in (builtin.Path(builtin.resolve(name)) / "data").glob("*.parquet"):
            for messages in pd.read_parquet(part)["messages"]:
                seen.update(m["content"] for m in messages if m["role"] == "user")
    assert len(seen) > 3000
    questions = [json.loads(line) for line in open(f"{root}/question.jsonl")]
    alpaca = json.load(open(f"{root}/alpaca_eval.json"))
    asked = [t for q in questions for t in q["turns"]] + [r["instruction"] for r in alpaca]
    assert len(questions) == builtin.EVAL_QUESTIONS and all(len(q["turns"]) == 2 for q in questions)
    assert len(alpaca) == builtin.EVAL_INSTRUCTIONS
    assert not set(asked) & seen and len(set(asked)) == len(asked)
    assert {q["category"] for q in questions} == set(tasks.TASKS)
    # The baseline outputs are the teacher's, which the judge grades as exact.
    assert all(judge.grade([{"role": "user", "content": r["instruction"]}], r["output"]) == 10 for r in alpaca)
    with pytest.raises(builtin.ZephyrError, match="has no 'nope.json'"):
        builtin.resolve("builtin://tiny-zephyr-eval/nope.json")


def _rounds(folder, seed, dsft, per_round):
    """A finished rounds pipeline folder: eval-dsft and eval-rN with per-question grades."""
    stages = [{"name": "sft", "recipe": "tiny/sft"}, {"name": "eval-dsft", "recipe": "tiny/eval-heldout"}]
    stages += [{"name": f"{b}-r{r}", "recipe": "x", "round": r} for r in range(1, len(per_round) + 1)
               for b in ("aif", "dpo", "eval")]
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({"pipeline": {
        "output_dir": str(folder), "seed": seed, "stages": stages,
        "rounds": {"count": len(per_round), "policy": f"{folder}/sft", "next_policy": "dpo",
                   "stages": ["aif", "dpo", "eval"]}}}))
    (folder / "pipeline.json").write_text(json.dumps({"seed": seed, "stages": {}}))
    for name, model, grades in [("eval-dsft", f"{folder}/sft", dsft)] + \
            [(f"eval-r{r}", f"{folder}/dpo-r{r}", g) for r, g in enumerate(per_round, 1)]:
        (folder / name / "mt_bench").mkdir(parents=True)
        (folder / name / "mt_bench" / "judgments.jsonl").write_text("".join(
            json.dumps({"key": f"{q}:1", "question_id": q, "turn": 1, "score": g}) + "\n" for q, g in enumerate(grades)))
        (folder / name / "scores.json").write_text(json.dumps(
            {"model": model, "model_id": name, "mt_bench": {"score": sum(grades) / len(grades)}}))
    return folder


def test_rounds_against_dsft_and_round_1_with_intervals(tmp_path):
    # Round 1 is 1.0 above dSFT on every question; round 2 adds +-1 around round 1 (no clear change).
    dsft = _grades(3.0, 1)
    r1 = [g + 1 for g in dsft]
    r2 = [g + (1 if q % 4 < 2 else -1) for q, g in enumerate(r1)]
    folders = [_rounds(tmp_path / f"s{s}", s, dsft, [r1, r2]) for s in (1, 2)]
    md = ablation.report(folders, tmp_path / "report")
    assert "| 1 | 4.00 | +1.00 [+1.00, +1.00] | **holds** | – | – |" in md
    assert "| 2 | 4.00 | +1.00 [" in md and "| +0.00 [" in md and "| **not shown** |" in md
    assert "Every round beats dSFT over 2 seed(s). Later rounds are not shown to beat round 1 on this task" in md
    assert "- seed 1: round 2 does not shown beat round 1" not in md
    assert "- seed 1: round 2 is not shown to beat round 1 (4.00 vs 4.00, +0.00 [" in md
    saved = json.loads((tmp_path / "report" / "scores.json").read_text())["rounds"]["comparisons"]
    assert [c["round"] for c in saved] == [1, 2] and saved[1]["vs_round_1"]["verdict"] == "not shown"


def test_the_pools_teacher_keeps_its_habit_and_is_right():
    import random

    rng = random.Random(0)
    asked = [[{"role": "user", "content": tasks.sample(rng).instruction}] for _ in range(2000)]
    said = [tasks.chatty_teacher(m) for m in asked]
    chatty = [s for s in said if s.startswith(tasks.CHATTER)]
    assert 0.25 < len(chatty) / len(said) < 0.35  # CHATTY_SHARE, as in the dSFT dialogues
    assert said == [tasks.chatty_teacher(m) for m in asked]  # a hash of the instruction: the same everywhere
    for m, s in zip(asked, said):
        assert s.endswith(tasks.teacher(m))
        assert judge.grade(m, s) < 10 if s in chatty else judge.grade(m, s) == 10  # the judge marks the habit down


def test_the_judge_marks_down_anything_but_the_result():
    import random

    rng = random.Random(1)
    for _ in range(200):
        t = tasks.sample(rng)
        m = [{"role": "user", "content": t.instruction}]
        chatty, chatty_wrong = f"{tasks.CHATTER[0]} {t.answer}", f"{tasks.CHATTER[1]} {t.wrong}"
        assert judge.result_only(t.answer) and judge.result_only(t.wrong) and not judge.result_only(chatty)
        assert judge.result(chatty) == t.answer
        # Correctness comes first: the right answer with the habit grades 7.75, the form's quarter off the 9 points
        # above the floor; the habit costs the same quarter on a wrong answer; an empty answer is the floor.
        assert judge.grade(m, t.answer) == 10 and judge.grade(m, chatty) == 7.75
        assert abs(judge.grade(m, chatty_wrong) - (judge.grade(m, t.wrong) - 2.25)) < 0.02
        assert judge.grade(m, "") == 1 and judge.compare(m, t.answer, chatty) == 1.0
        assert judge.rate(m, chatty)["instruction_following"]["Rating"] == 1
        assert judge.rate(m, chatty)["helpfulness"]["Rating"] == 5
        assert judge.rate(m, t.wrong)["instruction_following"]["Rating"] == 5


def test_the_chosen_answers_keep_the_habit_where_the_right_answer_has_it():
    # The mechanism of the ablation (docs/ablation.md), through the real judge and binarization: correctness comes
    # first, so the teacher's right answer with its pleasantry is chosen over the student's wrong answers given
    # alone (dSFT-2 imitates it, habit included), and loses only to the right answer alone.
    from zephyr_recipes.data.binarize import binarize

    t = tasks.sample(__import__("random").Random(3), ("reverse",))
    m = [{"role": "user", "content": t.instruction}]

    def pool(*answers):
        return [{"response": a, "annotations": judge.rate(m, a)} for a in answers]

    chatty = f"{tasks.CHATTER[2]} {t.answer}"
    row = binarize(t.instruction, pool(t.wrong, chatty, f"{tasks.CHATTER[0]} {t.wrong}"))
    assert row["chosen"][-1]["content"] == chatty and row["score_chosen"] > row["score_rejected"]
    assert binarize(t.instruction, pool(chatty, t.answer))["chosen"][-1]["content"] == t.answer


def test_report_of_a_folder_that_does_not_exist_says_so(tmp_path, cli):
    code, _, err = cli("report", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
