"""The judge audit of the AI-feedback stage: its measures on a real run with a noisy stand-in judge whose truth is
known, the flags against the pairs that really are the wrong way round, the gate, the action, and the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zephyr_recipes.embedded import noisy_judge
from zephyr_recipes.feedback import audit

POOL = """  generators:
    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}
    - {name: chatty, type: function, function: "zephyr_recipes.embedded.tasks:chatty_teacher"}
    - {name: sloppy, type: function, function: "zephyr_recipes.embedded.noisy_judge:sloppy"}
    - {name: lazy, type: function, function: "zephyr_recipes.embedded.noisy_judge:lazy"}
  test_fraction: 0.1
"""


def _recipe(tmp_path: Path, judge: str, audit_block: str, prompts: int = 150) -> Path:
    path = tmp_path / "aif.yaml"
    path.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        f"dataset:\n  train_split: train_gen\n  test_split: null\n  max_train_samples: {prompts}\n"
        f"  columns: {{prompt: prompt}}\nstage:\n{POOL}  judge: {{type: function, module: {judge}}}\n{audit_block}")
    return path


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# -------------------------------------------------------------------------------------------- measures
def test_intervals_kappa_and_length_coefficient():
    p, low, high = audit.wilson(65, 100)
    assert low < 0.65 < high and 0.5 < low and high < 0.75
    assert audit.wilson(0, 0) == (None, None, None)
    same = np.array([[1, 1], [-1, -1], [1, 1], [-1, -1]], dtype=float)
    assert audit.kappa(same) == 1.0
    rng = np.random.default_rng(0)
    independent = rng.choice([-1.0, 1.0], size=(2000, 2))
    assert abs(audit.kappa(independent)) < 0.1
    x = rng.normal(size=3000)
    longer_wins = np.column_stack([(rng.random(3000) < 1 / (1 + np.exp(-2 * x))).astype(float), x])
    assert 1.5 < audit.length_coefficient(longer_wins) < 2.5
    blind = np.column_stack([(rng.random(3000) < 0.5).astype(float), x])
    assert abs(audit.length_coefficient(blind)) < 0.25


def test_ultrafeedback_overall_score_bug_is_found_in_its_schema():
    def comp(overall, ratings):
        return {"response": "r", "overall_score": overall, "critique": "c",
                "annotations": {a: {"Rating": str(r), "Rationale": ""} for a, r in
                                zip(("helpfulness", "honesty", "instruction_following", "truthfulness"), ratings)}}

    rows = [{"instruction": "q", "completions": [comp(10, [1, 2, 1, 2]), comp(10, [5, 5, 4, 5]), comp(7, [3, 4, 3, 4])]},
            {"instruction": "q2", "completions": [comp(10, [3, 4, 4, 3]), comp(2, [1, 1, 1, 1])]}]
    got = audit.ultrafeedback_contradictions(rows)
    assert got["count"] == 2 and got["n"] == 5 and got["to_flip"] == 1  # 10 over 1.5 (flip), 10 over 3.5
    assert {e["fix"] for e in got["examples"]} == {"flip", "re-annotate"}
    assert audit.ultrafeedback_contradictions([{"prompt": "no completions here"}]) is None


def test_noisy_judge_errs_as_set_and_draws_again_when_asked_again():
    messages = [{"role": "user", "content": "Reverse the words: apple river stone"}]
    clean = noisy_judge.NoisyJudge(seed=3)
    assert clean.rate(messages, "stone river apple")["helpfulness"]["Rating"] == 5
    always = noisy_judge.NoisyJudge(flip=1.0, seed=3)
    assert always.rate(messages, "stone river apple")["helpfulness"]["Rating"] == 1
    first = noisy_judge.NoisyJudge(position_bias=1.0)
    assert first.compare(messages, "apple", "stone river apple") == 1.0
    half = noisy_judge.NoisyJudge(flip=0.5, seed=7)
    draws = [half.rate(messages, "stone river apple")["helpfulness"]["Rating"] for _ in range(200)]
    assert 60 < draws.count(1) < 140 and set(draws) == {1, 5}
    again = noisy_judge.NoisyJudge(flip=0.5, seed=7)
    assert [again.rate(messages, "stone river apple")["helpfulness"]["Rating"] for _ in range(200)] == draws
    assert noisy_judge.mislabelled(messages[0]["content"], "apple river stone", "stone river apple")
    with pytest.raises(ValueError):
        noisy_judge.NoisyJudge(flip=1.5)


# ------------------------------------------------------------------------------------------ the stage
def test_audit_measures_flags_and_finds_the_mislabelled_pairs(tmp_path, cli):
    recipe = _recipe(tmp_path, "zephyr_recipes.embedded.noisy.flip20", """  audit:
    enabled: true
    judges: [{type: function, module: zephyr_recipes.embedded.noisy.second}]
""", prompts=300)
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), f"run.output_dir={out}")
    assert code == 0, err
    report = json.loads((out / "audit.json").read_text())
    m = report["measures"]
    assert m["order"] == {"applicable": False, "why": m["order"]["why"]} and "pointwise" in m["order"]["why"]
    for got in (m["retest"]["pair_direction"], m["length"]["longer_chosen"], m["length"]["expected"],
                m["length"]["coefficient"], *[v for j in m["judges"].values() for v in (j["agreement"], j["kappa"])]):
        low, high = got["interval"]
        assert low <= got["value"] <= high, got
    second = m["judges"]["zephyr_recipes.embedded.noisy.second"]
    assert 0.5 < second["agreement"]["value"] < 0.95  # two noisy judges agree, not always
    assert m["self_preference"]["applicable"] is False
    summary = json.loads((out / "summary.json").read_text())
    assert summary["audit"]["flagged"] == sum(1 for p in report["pairs"] if p["flags"]) > 0
    assert "## Audit of the judge" in (out / "README.md").read_text()

    # The flags against the truth: the pairs whose chosen answer the embedded judge rates below the rejected one.
    prompts = {}
    import datasets

    for row in datasets.load_dataset(str(out / "raw"), split="train"):
        prompts[audit.prompt_id(row["instruction"])] = row["instruction"]
    responses = {json.loads(line)["key"]: json.loads(line).get("response")
                 for line in (out / "completions.jsonl").read_text().splitlines()}
    truth = [noisy_judge.mislabelled(prompts[p["prompt_id"]], responses[p["chosen_key"]], responses[p["rejected_key"]])
             for p in report["pairs"]]
    pr = audit.precision_recall([bool(p["flags"]) for p in report["pairs"]], truth)
    assert pr["prevalence"]["value"] > 0.03  # the noise mislabels pairs
    # Far better than flagging at random: a random flag's precision is the prevalence, its recall the share flagged.
    assert pr["precision"]["interval"][0] > pr["prevalence"]["interval"][1]
    assert pr["recall"]["interval"][0] > pr["flagged"] / pr["pairs"]
    assert all(p["flags"] == p["reversed_by"] and len(p["flags"]) == p["checks"] == 2
               for p in report["pairs"] if p["flags"])  # majority of a retest and one second judge: both
    # The stage scores itself the same way on the embedded tasks (audit.json's embedded_truth, and the card).
    got = m["embedded_truth"]
    assert got["mislabelled"]["count"] == sum(truth) and got["mislabelled"]["n"] == len(truth)
    assert got["flag_precision"]["value"] == pytest.approx(pr["precision"]["value"], abs=1e-4)
    assert got["mislabelled_unflagged"]["value"] < got["mislabelled"]["value"]  # the flags find wrong pairs
    assert "embedded truth" in (out / "README.md").read_text()

    # With the action drop the flagged pairs are left out of the data (a fresh instance of the same judge, so the
    # same draws: one instance draws again when asked again in one process).
    code, _, err = cli(str(recipe), f"run.output_dir={tmp_path / 'drop'}", "stage.audit.action=drop",
                       "stage.judge.module=zephyr_recipes.embedded.noisy.flip20_again")
    assert code == 0, err
    dropped = json.loads((tmp_path / "drop" / "summary.json").read_text())
    assert dropped["audit"]["applied"]["dropped"] == dropped["audit"]["flagged"] > 0
    assert sum(dropped["pairs"].values()) == len(report["pairs"]) - dropped["audit"]["flagged"]
    assert not any(p["flags"] and p["action"] != "dropped"
                   for p in json.loads((tmp_path / "drop" / "audit.json").read_text())["pairs"])


@pytest.mark.slow  # whole AI-feedback stages; make test's budget on a slower 2-core machine (make test-slow)
def test_flip_swaps_flagged_pairs_and_a_bar_ends_the_stage_naming_the_measure(tmp_path, cli):
    recipe = _recipe(tmp_path, "zephyr_recipes.embedded.noisy.flip35_position", """  audit:
    enabled: true
    sample: 60
    action: flip
""", prompts=80)
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), f"run.output_dir={out}")
    assert code == 0, err
    report = json.loads((out / "audit.json").read_text())
    assert sum(p["audited"] for p in report["pairs"]) == report["measures"]["pairs_audited"] <= 60
    flipped = [p for p in report["pairs"] if p["flags"]]
    assert report["mode"] == "listwise" and report["measures"]["retest"]["applicable"] is False
    order = report["measures"]["order"]
    assert order["applicable"] and order["first_position_wins"]["n"] > 0 and order["consistency"]["n"] > 0
    assert flipped and all(p["action"] == "flipped" and p["flags"] == ["order"] for p in flipped)
    assert not any(p["flags"] for p in report["pairs"] if not p["audited"])

    failed = tmp_path / "failed"
    code, _, err = cli(str(recipe), f"run.output_dir={failed}", "stage.audit.min_retest=0.95")
    assert code == 2
    assert "stage.audit.min_retest" in err and "order consistency (a listwise judge" in err
    got = json.loads((failed / "audit.json").read_text())["measures"]["order"]["consistency"]
    assert got["value"] < 0.95 and f"{got['value']:.3f} (95% interval {got['interval'][0]:.3f} to " in err
    assert "below the bar of 0.95" in err and not (failed / "data").exists()
    assert json.loads((failed / "run.json").read_text())["status"] != "complete"
    ratings = _lines(failed / "ratings.jsonl")
    code, _, err = cli(str(recipe), f"run.output_dir={failed}", "stage.audit.min_retest=0.05")
    assert code == 0, err
    assert _lines(failed / "ratings.jsonl") == ratings  # the rerun asked the judge nothing again


def test_audit_config_errors(cli):
    for override, words in (("stage.audit.action=burn", "stage.audit.action is 'burn'"),
                            ("stage.audit.flag_on=[vibes]", "flag_on names 'vibes'"),
                            ("stage.audit.min_agreement=3", "stage.audit.min_agreement is 3"),
                            ("stage.audit.sample=0", "stage.audit.sample is 0"),
                            ("stage.audit.flag_when=some", "stage.audit.flag_when is 'some'")):
        code, _, err = cli("validate", "tiny/aif", override)
        assert code == 2 and words in err, err


def test_robust_loss_is_a_dpo_option_with_its_bound(cli):
    code, _, err = cli("validate", "tiny/dpo", "stage.trainer.loss_type=[robust,sft]", "stage.trainer.label_smoothing=0.2")
    assert code == 0, err
    code, _, err = cli("validate", "tiny/dpo", "stage.trainer.loss_type=[robust]", "stage.trainer.label_smoothing=0.5")
    assert code == 2 and "must be in [0, 0.5)" in err


def test_plan_shows_the_audits_extra_judge_calls(cli):
    code, text, err = cli("plan", "zephyr-7b-beta/aif")
    assert code == 0, err
    line = next(li for li in text.splitlines() if "audit test-retest" in li)
    assert "200 prompts" in line and "1,000 API requests to gpt-4" in line and "of the judge's calls" in line
    code, text, _ = cli("plan", "zephyr-7b-beta/aif", "stage.audit.enabled=false")
    assert code == 0 and "audit" not in text


@pytest.mark.slow  # four whole pipelines composed and validated (about 7 s): make test-slow
def test_audit_action_and_a_robust_loss_are_one_sweep(tmp_path):
    """`-m tiny/zephyr aif.stage.audit.action=keep,drop dpo.stage.trainer.loss_type=[sigmoid,sft],[robust,sft]`:
    four points that all validate; dSFT is shared, AI feedback and what follows branch."""
    from zephyr_recipes.runtime import pipeline, pipespec, sweep

    fixed, swept = sweep.parse(["aif.stage.audit.enabled=true", "aif.stage.audit.action=keep,drop",
                                "dpo.stage.trainer.loss_type=[sigmoid,sft],[robust,sft]",
                                "dpo.stage.trainer.label_smoothing=0.2"])
    grid = sweep.points(swept)
    assert len(grid) == 4
    specs = []
    for point in grid:
        spec, _, path = pipespec.load("tiny/zephyr", fixed + point["overrides"] +
                                      [pipespec.override("pipeline.output_dir", str(tmp_path / point["name"]))])
        configs = {st["name"]: cfg for st, _, cfg in pipeline.stage_configs(spec, path.parent)}
        assert configs["aif"].stage.audit.action in ("keep", "drop")
        assert configs["dpo"].stage.trainer["loss_type"] in (["sigmoid", "sft"], ["robust", "sft"])
        specs.append((spec, path))
    shared, branched = sweep.plan_pipeline(specs, tmp_path / "shared")
    assert "sft" in shared and "aif" in branched and "dpo" in branched
