"""The reward stage: a real RewardTrainer run on the tiny model, its held-out accuracy, and the model as a judge.

The pairs come from a real AI feedback run with programs as generators and judge (the teacher's right answer
against a sloppy one), so no language model has to be trained first.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from zephyr_recipes.data.binarize import ASPECTS, binarize, completion_score
from zephyr_recipes.embedded import tasks

pytestmark = pytest.mark.slow

CPU = {"name": "cpu", "device": "cpu", "precision": "fp32", "attn_implementation": "sdpa"}
BASE = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr"]


def _sloppy(answer: str) -> str:
    words = answer.split()
    return " ".join(words[:-1]) if len(words) > 1 else str(int(answer) + 1) if answer.isdigit() else "?"


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """An AIF run folder: 160 embedded prompts, the teacher and a sloppy program answer, the judge program rates."""
    from zephyr_recipes.commands.cli import main

    tmp = tmp_path_factory.mktemp("reward-pairs")
    prompts = list(dict.fromkeys(tasks.sample(random.Random(i)).instruction for i in range(160)))
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    recipe = tmp / "aif.yaml"
    recipe.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        "dataset:\n  test_split: null\n  columns: {prompt: prompt}\n"
        "stage:\n  generators:\n"
        "    - {name: teacher, type: function, function: \"zephyr_recipes.embedded.tasks:teacher\"}\n"
        "    - {name: sloppy, type: function, function: \"tests.helpers:sloppy\"}\n"
        "  judge: {type: function, module: zephyr_recipes.embedded.judge}\n"
        "  test_fraction: 0.2\n")
    out = tmp / "aif"
    assert main([str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}",
                 "--trust-recipe-code"]) == 0  # tests.helpers:sloppy is code from outside the package
    return out


@pytest.fixture(scope="module")
def reward_run(pairs_dir, tmp_path_factory):
    from zephyr_recipes.commands.cli import main

    folder = tmp_path_factory.mktemp("reward-runs") / "reward"
    assert main(["tiny/reward", *BASE, f"dataset.path={pairs_dir}", f"run.output_dir={folder}",
                 "stage.trainer.num_train_epochs=4"]) == 0
    return folder


def _test_pairs(pairs_dir: Path):
    import datasets

    return datasets.load_dataset(str(pairs_dir), split="test_prefs")


def _score_one_by_one(folder: Path, conversations: list[list[dict]]) -> list[float]:
    """Rewards straight from transformers, one conversation at a time (no batching, no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    out = []
    for conv in conversations:
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_tensors="pt")
        with torch.no_grad():
            out.append(model(**ids).logits[0, 0].item())
    return out


# ------------------------------------------------------------------------------------------------ stage
def test_reward_run_folder_holds_a_sequence_classifier_and_its_card(reward_run):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(reward_run))
    assert config.num_labels == 1 and config.architectures[0].endswith("ForSequenceClassification")
    assert config.pad_token_id is not None
    model = AutoModelForSequenceClassification.from_pretrained(str(reward_run))
    assert model.score.out_features == 1
    card = (reward_run / "README.md").read_text()
    assert "trl.RewardConfig" in card and "AutoModelForSequenceClassification" in card
    assert "heldout_accuracy" in card and 'pipeline("text-generation"' not in card
    status = json.loads((reward_run / "run.json").read_text())
    assert status["status"] == "complete"
    assert not list(reward_run.glob("checkpoint-*"))
    history = json.loads((reward_run / "log_history.json").read_text())
    assert any("accuracy" in h for h in history)  # RewardTrainer's training accuracy, drawn in the curves


def test_heldout_accuracy_is_measured_on_every_test_pair(reward_run, pairs_dir):
    metrics = json.loads((reward_run / "metrics.json").read_text())
    test = _test_pairs(pairs_dir)
    assert metrics["heldout_pairs"] == len(test) >= 10
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0
    # The same figure recomputed without the stage's batched scorer.
    chosen = _score_one_by_one(reward_run, list(test["chosen"]))
    rejected = _score_one_by_one(reward_run, list(test["rejected"]))
    wins = sum(c > r for c, r in zip(chosen, rejected))
    near_ties = sum(abs(c - r) < 1e-5 for c, r in zip(chosen, rejected))  # batching may flip these, nothing else
    assert abs(metrics["heldout_accuracy"] - wins / len(test)) <= near_ties / len(test) + 1e-9
    assert metrics["heldout_margin"] == pytest.approx(
        sum(c - r for c, r in zip(chosen, rejected)) / len(test), abs=1e-4)
    prov = json.loads((reward_run / "provenance.json").read_text())
    assert prov["data"]["eval"]["rows"] == len(test)


def test_chat_data_is_refused_for_a_reward_model(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("tiny/reward", *BASE, "dataset=tiny-ultrachat", "dataset.path=builtin://tiny-ultrachat",
                       f"run.output_dir={out}")
    assert code == 2 and "no column 'chosen'" in err and "dataset.columns.chosen" in err
    assert not (out / "run.json").exists() and not (out / "model.safetensors").exists()


def test_reward_without_evaluation_is_refused_before_anything_loads(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("tiny/reward", *BASE, "stage.trainer.eval_strategy=no", f"run.output_dir={out}")
    assert code == 2 and "held-out pair accuracy" in err and "eval_strategy=epoch" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ judge
def test_reward_judge_rates_and_compares_in_the_model_s_order(reward_run):
    from zephyr_recipes.feedback.judges import Item, make_judge

    judge = make_judge({"type": "reward_model", "model": str(reward_run), "batch_size": 4}, CPU)
    rng = random.Random(7)
    items = []
    for _ in range(12):
        t = tasks.sample(rng)
        msgs = [{"role": "user", "content": t.instruction}]
        items += [(msgs, t.answer), (msgs, _sloppy(t.answer))]
    direct = _score_one_by_one(reward_run, [m + [{"role": "assistant", "content": r}] for m, r in items])
    ratings = dict(judge.ask("rate", [Item(m, (r,)) for m, r in items], "the test"))
    assert sorted(ratings) == list(range(len(items)))
    scores = []
    for i in range(len(items)):
        value = ratings[i].value
        assert set(value) == set(ASPECTS)
        assert len({v["Rating"] for v in value.values()}) == 1  # the reward, on every aspect
        scores.append(completion_score({"annotations": value}))
    assert scores == pytest.approx(direct, abs=1e-4)
    for k in range(0, len(items), 2):  # every pair ordered as the model's own scores order it
        if abs(direct[k] - direct[k + 1]) > 1e-4:
            assert (scores[k] > scores[k + 1]) == (direct[k] > direct[k + 1])
    verdicts = dict(judge.ask("compare", [Item(items[k][0], (items[k][1], items[k + 1][1]))
                                          for k in range(0, len(items), 2)], "the test"))
    for j, k in enumerate(range(0, len(items), 2)):
        expected = 1.0 if scores[k] > scores[k + 1] else 0.0 if scores[k] < scores[k + 1] else 0.5
        assert verdicts[j].value == expected
    # binarization makes the higher-rewarded answer `chosen`
    m, right = items[0]
    pair = binarize(m[0]["content"], [{"response": right, "annotations": ratings[0].value},
                                      {"response": items[1][1], "annotations": ratings[1].value}])
    if pair is not None:
        best = 0 if scores[0] > scores[1] else 1
        assert pair["chosen"][-1]["content"] == items[best][1]


def test_reward_judge_refuses_a_rating_prompt(reward_run):
    from zephyr_recipes.core.errors import ZephyrError
    from zephyr_recipes.feedback.judges import make_judge

    with pytest.raises(ZephyrError, match="takes no prompt"):
        make_judge({"type": "reward_model", "model": str(reward_run), "prompt": "Rate: {response}"}, CPU)


def test_aif_with_the_reward_model_as_judge_makes_pairs_it_prefers(reward_run, tmp_path, cli):
    import datasets

    prompts = list(dict.fromkeys(tasks.sample(random.Random(1000 + i)).instruction for i in range(30)))
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    out = tmp_path / "aif-rm"
    code, _, err = cli("tiny/aif-rm", f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}",
                       "stage.generators=[{name: teacher, type: function, function: "
                       "'zephyr_recipes.embedded.tasks:teacher'}, {name: sloppy, type: function, "
                       "function: 'tests.helpers:sloppy'}]",
                       f"stage.judge.model={reward_run}", "stage.test_fraction=0.0", "--trust-recipe-code")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_failures"] == 0 and summary["completions"] == 2 * len(prompts)
    assert summary["self_agreement"] is None or summary["self_agreement"]["exact"] == 1.0
    pairs = datasets.load_dataset(str(out), split="train_prefs")
    assert len(pairs) > 0
    chosen = _score_one_by_one(reward_run, list(pairs["chosen"]))
    rejected = _score_one_by_one(reward_run, list(pairs["rejected"]))
    assert all(c > r for c, r in zip(chosen, rejected))
    assert pairs["score_chosen"] == pytest.approx(chosen, abs=1e-4)


def test_reward_judge_keys_are_checked_before_anything_runs(cli):
    for override, problem in (
        ("stage.judge.prompt=rate_this", "takes no prompt"),
        ("stage.judge.batch_size=0", "stage.judge.batch_size is 0"),
        ("+stage.judge.modle=x", "unknown key `stage.judge.modle`"),
        ("~stage.judge.model", "`stage.judge.model` must be set"),
    ):
        code, _, err = cli("validate", "tiny/aif-rm", override)
        assert code == 2 and problem in err and "fix:" in err, (override, err)
    code, out, _ = cli("validate", "tiny/aif-rm")
    assert code == 0 and out.splitlines()[-1].startswith("ok: tiny/aif-rm")
