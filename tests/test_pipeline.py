"""Pipelines: wiring of stage outputs, skipping finished stages, --from and --only, bad pipeline files."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow

EVALS = ("eval-dsft", "eval-base", "eval-ddpo-only", "eval-dsft2", "eval-dpo")
FAST = ["sft.dataset.max_train_samples=320", "sft.dataset.test_split=null", "sft.stage.trainer.num_train_epochs=1",
        "aif.dataset.max_train_samples=24", "aif.stage.sampling.max_new_tokens=12",
        "dpo.dataset.max_test_samples=4", "dpo-base.dataset.max_test_samples=4"] + \
    [f"{e}.{k}" for e in EVALS for k in ("stage.mt_bench.max_questions=5", "stage.mt_bench.max_new_tokens=8",
                                         "stage.alpaca_eval.max_samples=6", "stage.alpaca_eval.sampling.max_new_tokens=8")]
TRAINED = ("sft", "aif", "dpo", "sft2", "dpo-base")


def _status(folder):
    return json.loads((folder / "run.json").read_text())


def test_pipeline_runs_wires_skips_and_restarts(tmp_path, cli):
    out = tmp_path / "zephyr"
    args = ["tiny/zephyr", f"pipeline.output_dir={out}", *FAST]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "| dSFT + dDPO |" in stdout and f"report: {out}/report/report.md" in stdout  # the table is printed
    for stage in TRAINED + EVALS:
        assert _status(out / stage)["status"] == "complete"
    # Wiring: AIF generated with the SFT output, DPO started from it and trained on the AIF pairs.
    aif_cfg = yaml.safe_load((out / "aif" / "config.yaml").read_text())
    assert aif_cfg["stage"]["generators"][0]["model"] == f"{out}/sft"
    pairs = json.loads((out / "aif" / "summary.json").read_text())["pairs"]["train_prefs"]
    dpo_prov = json.loads((out / "dpo" / "provenance.json").read_text())
    assert dpo_prov["reference_model"] == str((out / "sft").resolve())
    assert dpo_prov["data"]["train"]["rows"] == pairs
    # The controls: dSFT-2 continues the SFT model on the AIF chosen answers; dDPO without dSFT starts from the
    # untrained base model, which is then also its reference.
    sft2_cfg = yaml.safe_load((out / "sft2" / "config.yaml").read_text())
    assert sft2_cfg["model"]["name_or_path"] == f"{out}/sft" and sft2_cfg["dataset"]["train_split"] == "train_prefs"
    assert json.loads((out / "sft2" / "provenance.json").read_text())["data"]["train"]["rows"] == pairs
    base_prov = json.loads((out / "dpo-base" / "provenance.json").read_text())
    assert "tiny-mistral" in base_prov["reference_model"]
    # Every model was evaluated on the same held-out prompts; all but dSFT against dSFT's answers.
    scores = {e: json.loads((out / e / "scores.json").read_text()) for e in EVALS}
    assert [scores[e]["model_id"] for e in EVALS] == ["dSFT", "base (no training)", "dDPO without dSFT", "dSFT-2",
                                                      "dSFT + dDPO"]
    assert scores["eval-dpo"]["model"] == f"{out}/dpo" and scores["eval-base"]["model"] == "builtin://tiny-mistral"
    assert scores["eval-dsft"]["alpaca_eval"]["baseline"] == ["teacher"]
    assert all(scores[e]["alpaca_eval"]["baseline"] == ["dSFT"] for e in EVALS[1:])
    assert all(scores[e]["mt_bench"]["judged"] == 10 and scores[e]["mt_bench"]["failures"] == 0 for e in EVALS)
    # The report: Table 3 with every row, and the pipeline's claims checked.
    report = (out / "report" / "report.md").read_text()
    for e in EVALS:
        assert f"| {scores[e]['model_id']} | {scores[e]['mt_bench']['score']:.2f} |" in report
    assert "dSFT + dDPO > dSFT (MT-Bench-style grade (1-10)): **" in report and (out / "report" / "table3.png").is_file()
    assert (out / "pipeline.yaml").is_file()
    assert set(json.loads((out / "pipeline.json").read_text())["stages"]) == set(TRAINED + EVALS)

    stamps = {s: _status(out / s)["started"] for s in TRAINED + EVALS}
    code, _, err = cli(*args)  # everything finished: nothing runs again
    assert code == 0 and "sft finished already" in err and "eval-dpo finished already" in err
    assert {s: _status(out / s)["started"] for s in stamps} == stamps

    code, _, err = cli(*args, "--only", "dpo")
    assert code == 0
    assert _status(out / "dpo")["started"] != stamps["dpo"] and _status(out / "sft")["started"] == stamps["sft"]
    assert _status(out / "eval-dpo")["started"] == stamps["eval-dpo"]

    code, _, err = cli(*args, "--from", "eval-dsft2")
    assert code == 0
    assert _status(out / "eval-dsft2")["started"] != stamps["eval-dsft2"]
    assert _status(out / "eval-dpo")["started"] != stamps["eval-dpo"]
    assert _status(out / "eval-base")["started"] == stamps["eval-base"]

    # A finished stage whose config changed is not silently reused.
    code, _, err = cli(*[a.replace("max_train_samples=320", "max_train_samples=321") for a in args])
    assert code == 2 and "stage 'sft' finished with a different config" in err and "--from sft" in err


@pytest.mark.parametrize("text, problem", [
    ("pipeline:\n  stages: []\n  output_dir: x\n", "must be a non-empty list"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft}\n    - {name: a, recipe: tiny/dpo}\n",
     "two pipeline stages are named 'a'"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/nope}\n", "pipeline stage 'a': no recipe named"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft, overrides: {stage.trainer.lr: 1}}\n",
     "unknown key `stage.trainer.lr`"),
    ("pipeline:\n  outdir: x\n", "unknown key `pipeline.outdir`"),
])
def test_bad_pipelines(tmp_path, cli, text, problem):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, _, err = cli("validate", str(path))
    assert code == 2 and problem in err, err


def test_from_needs_a_pipeline_stage(cli, tmp_path):
    code, _, err = cli("tiny/zephyr", f"pipeline.output_dir={tmp_path}", "--from", "eval")
    assert code == 2 and "no stage of that name" in err
    code, _, err = cli("tiny/sft", "--only", "sft")
    assert code == 2 and "apply to pipeline recipes" in err


def test_stage_overrides_of_any_shape_reach_the_stage(tmp_path):
    """Lists of mappings, strings with spaces, quotes and brackets, numbers and nulls are written in Hydra's
    override grammar, so the stage receives them exactly as the pipeline file gives them."""
    from zephyr_recipes.runtime import pipeline, pipespec

    generators = [{"name": "it's (teacher)", "type": "function", "function": "zephyr_recipes.embedded.tasks:teacher"},
                  {"name": "sft, hot", "type": "transformers", "model": "builtin://tiny-mistral",
                   "model_config": {"chat_template": "zephyr"}, "sampling": {"temperature": 1.0, "top_p": None}}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "out"), "stages": [
        {"name": "aif", "recipe": "tiny/aif", "overrides": {"stage.generators": generators,
                                                            "recipe.description": "a [b] {c}, 'd'"}}]}}))
    spec, _, recipe_file = pipespec.load(str(path), [])
    (_, _, recipe), = pipeline.stage_configs(spec, recipe_file.parent)
    assert recipe.stage.generators[0].name == "it's (teacher)"
    assert recipe.config["stage"]["generators"][1]["sampling"] == {"temperature": 1.0, "top_p": None}
    assert recipe.recipe.description == "a [b] {c}, 'd'"


def test_a_report_that_cannot_be_made_does_not_fail_finished_stages(tmp_path, cli):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "out"), "stages": [
        {"name": "sft", "recipe": "tiny/sft", "overrides": {"dataset.max_train_samples": 32, "dataset.test_split": None,
                                                          "stage.trainer.num_train_epochs": 1}}],
        "report": {"claims": [{"run": "dSFT", "metric": "mt_bench", "above": 1}]}}}))
    code, _, err = cli(str(path))
    assert code == 0, err
    assert _status(tmp_path / "out" / "sft")["status"] == "complete"
    assert "no report:" in err and "holds no finished evaluation stage" in err
    assert not (tmp_path / "out" / "report").exists()


def _rounds_pipeline(tmp_path, count=2):
    """dSFT, its evaluation, then `count` rounds of on-policy AIF + dDPO + evaluation, all shortened."""
    quick_eval = {"stage.mt_bench.max_questions": 3, "stage.mt_bench.max_new_tokens": 8,
                  "stage.alpaca_eval.max_samples": 4, "stage.alpaca_eval.sampling.max_new_tokens": 8}
    path = tmp_path / "rounds.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "it"), "seed": 5, "stages": [
        {"name": "sft", "recipe": "tiny/sft", "overrides": {"dataset.max_train_samples": 64, "dataset.test_split": None,
                                                          "stage.trainer.max_steps": 6}},
        {"name": "eval-dsft", "recipe": "tiny/eval-heldout",
         "overrides": {"model.name_or_path": "${pipeline.output_dir}/sft", "stage.model_id": "dSFT", **quick_eval}}],
        "rounds": {"count": count, "policy": "${pipeline.output_dir}/sft", "next_policy": "dpo",
                   "prompts": {"stage": "aif", "per_round": 12, "mode": "fresh"}, "stages": [
            {"name": "aif", "recipe": "tiny/aif", "overrides": {
                "stage.sampling.max_new_tokens": 8,
                "stage.generators": [
                    {"name": "policy", "type": "transformers", "model": "{policy}", "sampling": {"temperature": 1.0}},
                    {"name": "teacher", "type": "function", "function": "zephyr_recipes.embedded.tasks:teacher"}]}},
            {"name": "dpo", "recipe": "tiny/dpo", "overrides": {
                "model.name_or_path": "{policy}", "dataset.path": "{aif}", "dataset.max_test_samples": 2,
                "stage.trainer.max_steps": 2}},
            {"name": "eval", "recipe": "tiny/eval-heldout", "overrides": {
                "model.name_or_path": "{dpo}", "stage.model_id": "dDPO round {round}", **quick_eval}}]}}}))
    return path


def _prompts(aif_folder):
    return {json.loads(line)["prompt_id"] for line in (aif_folder / "completions.jsonl").read_text().splitlines()
            if line.strip()}


def test_rounds_wire_each_round_to_the_last_and_report_by_round(tmp_path, cli):
    path = _rounds_pipeline(tmp_path)
    out = tmp_path / "it"
    code, stdout, err = cli(str(path))
    assert code == 0, err
    for stage in ("sft", "eval-dsft", "aif-r1", "dpo-r1", "eval-r1", "aif-r2", "dpo-r2", "eval-r2"):
        assert _status(out / stage)["status"] == "complete", stage
    # Round 1 starts from dSFT; round 2's policy and reference are round 1's output.
    for r, policy in ((1, out / "sft"), (2, out / "dpo-r1")):
        aif = yaml.safe_load((out / f"aif-r{r}" / "config.yaml").read_text())
        assert aif["stage"]["generators"][0]["model"] == str(policy)
        dpo = yaml.safe_load((out / f"dpo-r{r}" / "config.yaml").read_text())
        assert dpo["model"]["name_or_path"] == str(policy) and dpo["dataset"]["path"] == str(out / f"aif-r{r}")
        prov = json.loads((out / f"dpo-r{r}" / "provenance.json").read_text())
        assert prov["reference_model"] == str(policy.resolve())
        assert json.loads((out / f"eval-r{r}" / "scores.json").read_text())["model"] == str(out / f"dpo-r{r}")
    # Fresh prompts: each round answers its own seeded slice of the prompt set.
    first, second = _prompts(out / "aif-r1"), _prompts(out / "aif-r2")
    assert len(first) == len(second) == 12 and not first & second
    # The report: grade by round beside dSFT, and whether round 2 beat round 1, said either way.
    report = (out / "report" / "report.md").read_text() if (out / "report").exists() else None
    from zephyr_recipes.reports import ablation

    md = ablation.report([out], tmp_path / "report")
    grades = [json.loads((out / s / "scores.json").read_text())["mt_bench"]["score"]
              for s in ("eval-dsft", "eval-r1", "eval-r2")]
    assert "| seed 5 | " + " | ".join(f"{g:.2f}" for g in grades) + " |" in md
    # Each round against dSFT and round 1 with an interval over the 3 questions and a verdict, said either way.
    assert "| round | grade | − dSFT | verdict | − round 1 | verdict |" in md
    assert f"| 2 | {grades[2]:.2f} | {grades[2] - grades[0]:+.2f} [" in md
    said = md.split("Do later rounds beat round 1, seed by seed?")[1]
    assert f"round 2 beats round 1 ({grades[2]:.2f} vs {grades[1]:.2f}, " in said or \
        "measured:" in said and "preference pairs against" in said
    assert (tmp_path / "report" / "rounds.png").is_file() and report is None  # no claims: no automatic report

    # A finished round is never recomputed; --only and --from address one round's stage.
    stamps = {s: _status(out / s)["started"] for s in ("aif-r1", "dpo-r1", "aif-r2", "dpo-r2", "eval-r2")}
    code, _, err = cli(str(path))
    assert code == 0 and "dpo-r1 finished already" in err
    assert {s: _status(out / s)["started"] for s in stamps} == stamps
    code, _, err = cli(str(path), "--only", "dpo")
    assert code == 2 and "dpo-r1 ... dpo-r2" in err
    code, _, err = cli(str(path), "--from", "eval-r2")
    assert code == 0
    assert _status(out / "eval-r2")["started"] != stamps["eval-r2"]
    assert _status(out / "dpo-r2")["started"] == stamps["dpo-r2"]
    # A third round continues from round 2's model; rounds 1 and 2 stay as they are.
    code, _, err = cli(str(path), "pipeline.rounds.count=3")
    assert code == 0, err
    assert yaml.safe_load((out / "dpo-r3" / "config.yaml").read_text())["model"]["name_or_path"] == str(out / "dpo-r2")
    assert _status(out / "dpo-r1")["started"] == stamps["dpo-r1"]
    assert not _prompts(out / "aif-r3") & (first | second)


@pytest.mark.parametrize("rounds, problem", [
    ({"count": 0, "policy": "x", "next_policy": "a", "stages": [{"name": "a", "recipe": "tiny/dpo"}]},
     "pipeline.rounds.count` is 0"),
    ({"count": 2, "policy": "x", "next_policy": "b", "stages": [{"name": "a", "recipe": "tiny/dpo"}]},
     "next_policy` is 'b', not a stage of the round"),
    ({"count": 2, "policy": "x", "next_policy": "a", "stages": [{"name": "a", "recipe": "tiny/dpo"}],
      "prompts": {"stage": "a", "per_round": 0}}, "per_round` is 0"),
    ({"count": 2, "policy": "x", "next_policy": "a", "stages": [{"name": "a", "recipe": "tiny/dpo"}], "every": 1},
     "unknown key `pipeline.rounds.every`"),
])
def test_bad_rounds(tmp_path, cli, rounds, problem):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": "x", "stages": [{"name": "sft", "recipe": "tiny/sft"}],
                                                 "rounds": rounds}}))
    code, _, err = cli("validate", str(path))
    assert code == 2 and problem in err, err


def test_reuse_copies_finished_stages_of_the_same_config_and_only_those(tmp_path, cli):
    quick = {"dataset.max_train_samples": 16, "dataset.test_split": None, "stage.trainer.max_steps": 2}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "a"), "seed": 3, "stages": [
        {"name": "sft", "recipe": "tiny/sft", "overrides": quick},
        {"name": "more", "recipe": "tiny/sft", "overrides": {**quick, "model.name_or_path": "${pipeline.output_dir}/sft",
                                                            "model.chat_template": None}}]}}))
    assert cli(str(path))[0] == 0
    # The same pipeline elsewhere copies both finished stages instead of training them.
    code, _, err = cli(str(path), f"pipeline.output_dir={tmp_path / 'b'}", f"pipeline.reuse=[{tmp_path / 'a'}]")
    assert code == 0 and "pipeline: running" not in err, err
    for stage in ("sft", "more"):
        status = _status(tmp_path / "b" / stage)
        assert status["status"] == "complete" and status["reused_from"] == str(tmp_path / "a" / stage)
        cfg = yaml.safe_load((tmp_path / "b" / stage / "config.yaml").read_text())
        assert cfg["run"]["output_dir"] == str(tmp_path / "b" / stage)
    assert yaml.safe_load((tmp_path / "b" / "more" / "config.yaml").read_text())["model"]["name_or_path"] == \
        str(tmp_path / "b" / "sft")
    # Another sft: the later stage's config reads the same way, but it reads another model, so it trains.
    code, _, err = cli(str(path), f"pipeline.output_dir={tmp_path / 'c'}", f"pipeline.reuse=[{tmp_path / 'a'}]",
                       "sft.stage.trainer.learning_rate=1e-3")
    assert code == 0, err
    assert "pipeline: running sft" in err and "pipeline: running more" in err
    assert "reused_from" not in _status(tmp_path / "c" / "more")
