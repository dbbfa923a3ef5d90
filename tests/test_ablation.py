"""The Table 3 report from pipeline folders: means and spread over seeds, claims checked seed by seed, and
the held-out evaluation prompts of the embedded default."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from zephyr_recipes.embedded import builtin, judge, tasks
from zephyr_recipes.evaluation import ablation

CLAIMS = [{"run": "dSFT + dDPO", "metric": "mt_bench", "above": "dSFT"},
          {"run": "dSFT + dDPO", "metric": "alpaca_eval", "above": 50},
          {"run": "dSFT + dDPO", "metric": "mt_bench", "at_least": "dSFT-2"}]


def _pipeline(folder, seed, rows):
    """A finished pipeline folder as the runner writes it: pipeline.yaml, pipeline.json, eval stages."""
    stages = [{"name": f"eval-{i}", "recipe": "tiny/eval-heldout"} for i in range(len(rows))]
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(
        {"pipeline": {"output_dir": str(folder), "seed": seed, "stages": stages, "report": {"claims": CLAIMS}}}))
    (folder / "pipeline.json").write_text(json.dumps({"seed": seed, "stages": {}}))
    for i, (name, mt, win) in enumerate(rows):
        (folder / f"eval-{i}").mkdir()
        (folder / f"eval-{i}" / "scores.json").write_text(json.dumps({
            "model_id": name, "judge": {"type": "function", "module": "zephyr_recipes.embedded.judge"},
            "mt_bench": {"score": mt, "turn_1": mt, "turn_2": mt, "categories": {"sort": mt, "count": mt, "add": mt}},
            "alpaca_eval": {"win_rate": win, "baseline": ["dSFT"]}}))
    return folder


def test_table3_means_spread_and_claims(tmp_path):
    a = _pipeline(tmp_path / "s1", 1, [("dSFT", 3.0, None), ("dSFT-2", 3.5, 55.0), ("dSFT + dDPO", 4.0, 60.0)])
    b = _pipeline(tmp_path / "s2", 2, [("dSFT", 3.0, None), ("dSFT-2", 3.1, 52.0), ("dSFT + dDPO", 3.2, 48.0)])
    out = tmp_path / "report"
    md = ablation.report([a, b], out)
    assert "| dSFT + dDPO | 3.60 ± 0.57 |" in md  # mean 3.6, sample sd of (4.0, 3.2)
    assert "| dSFT-2 | 3.30 ± 0.28 |" in md and "53.5 ± 2.1" in md
    assert "| dSFT + dDPO | 4.00 / 60.0% | 3.20 / 48.0% |" in md and "| model | seed 1 | seed 2 |" in md
    assert "dSFT + dDPO > dSFT (MT-Bench-style grade (1-10)): **holds**, 2 of 2" in md
    assert "dSFT + dDPO > 50 (AlpacaEval-style win %): **holds in part**, 1 of 2" in md
    assert "dSFT + dDPO ≥ dSFT-2 (MT-Bench-style grade (1-10)): **holds**, 2 of 2" in md
    assert (out / "table3.png").stat().st_size > 1000 and (out / "radar.png").is_file()
    saved = json.loads((out / "scores.json").read_text())
    assert saved["seeds"] == ["seed 1", "seed 2"] and saved["rows"] == ["dSFT", "dSFT-2", "dSFT + dDPO"]


def test_table3_refuses_unlike_pipelines_and_bad_claims(tmp_path, cli):
    a = _pipeline(tmp_path / "s1", 1, [("dSFT", 3.0, None), ("dSFT + dDPO", 4.0, 60.0)])
    b = _pipeline(tmp_path / "s2", 2, [("dSFT", 3.0, None)])
    code, _, err = cli("report", str(a), str(b))
    assert code == 2 and "the row 'dSFT + dDPO' is in 1 of the 2 pipelines" in err
    run = tmp_path / "s1" / "eval-0"
    code, _, err = cli("report", str(a), str(run))
    assert code == 2 and "mix pipeline folders and evaluation run folders" in err
    bad = tmp_path / "p.yaml"
    bad.write_text("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft}\n"
                   "  report:\n    claims:\n      - {run: dSFT, metric: mt_bench}\n")
    code, _, err = cli("validate", str(bad))
    assert code == 2 and "needs exactly one of `above` and `at_least`" in err


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
    assert len(questions) == 50 and all(len(q["turns"]) == 2 for q in questions) and len(alpaca) == 100
    assert not set(asked) & seen and len(set(asked)) == len(asked)
    assert {q["category"] for q in questions} == set(tasks.TASKS)
    # The baseline outputs are the teacher's, which the judge grades as exact.
    assert all(judge.grade([{"role": "user", "content": r["instruction"]}], r["output"]) == 10 for r in alpaca)
    with pytest.raises(builtin.ZephyrError, match="has no 'nope.json'"):
        builtin.resolve("builtin://tiny-zephyr-eval/nope.json")
