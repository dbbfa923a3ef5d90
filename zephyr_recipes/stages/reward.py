"""Reward modelling: a sequence-classification model learns to score a conversation from preference pairs.

The model is the base (or the dSFT model) with a one-output head (``num_labels=1``) on its last token, trained
with TRL's ``RewardTrainer`` on the same prompt / chosen / rejected rows as dDPO (the AIF stage's run folder, or
``HuggingFaceH4/ultrafeedback_binarized``): the loss is ``-log sigmoid(r(chosen) - r(rejected))``. After training
the run scores every held-out pair and writes the share where ``r(chosen) > r(rejected)`` to ``metrics.json``
(``heldout_accuracy``, with ``heldout_pairs``).

A trained reward model is also a judge: ``stage.judge: {type: reward_model, model: <run folder>}`` in an AIF
recipe rates every answer with its reward (the same number on each UltraFeedback aspect, so the mean score the
pairs are binarized on is the reward), and compares two answers by their rewards.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import ModelConfig, TrainerStageConfig
from ..model import modeling
from ..model.modeling import lora_config
from ..model.scoring import AUTO_MODEL, MODEL_OPTIONS, Scorer, load_reward_model
from .base import PreferenceStage

log = logging.getLogger("zephyr_recipes")


def pair_accuracy(scorer: Scorer, rows) -> dict:
    """Held-out figures of a reward model on prompt / chosen / rejected rows (conversational)."""
    prompts, chosen, rejected = rows["prompt"], rows["chosen"], rows["rejected"]
    good = scorer.score([p + c for p, c in zip(prompts, chosen)])
    bad = scorer.score([p + r for p, r in zip(prompts, rejected)])
    n = len(good)
    wins = sum(g > b for g, b in zip(good, bad))
    ties = sum(g == b for g, b in zip(good, bad))
    return {"heldout_accuracy": wins / n if n else math.nan, "heldout_pairs": n, "heldout_ties": ties,
            "heldout_margin": sum(g - b for g, b in zip(good, bad)) / n if n else math.nan,
            "heldout_truncated_sequences": scorer.truncated}


# ------------------------------------------------------------------------------------------------ stage
class Reward(PreferenceStage):
    """Reward modelling on preference pairs: one score per conversation (TRL RewardTrainer)."""

    name = "reward"
    schema = TrainerStageConfig
    trl_config = "RewardConfig"
    curves = ("loss", "accuracy", "margin")
    auto_model = AUTO_MODEL
    model_options = MODEL_OPTIONS
    overlong = "drop"  # RewardTrainer filters out pairs with a sequence longer than max_length

    def check(self, recipe: Recipe[TrainerStageConfig]) -> None:
        trainer = recipe.stage.trainer
        ds = recipe.dataset
        has_test = bool(ds.test_split or ds.test_fraction or
                        any(m.get("test_split") for m in ds.mixture or [] if isinstance(m, dict)))
        if not has_test:
            log.warning("stage=reward without held-out pairs (dataset.test_split and dataset.test_fraction are "
                        "null): metrics.json will have no heldout_accuracy")
        elif str(trainer.get("eval_strategy", "no")) == "no":
            # The runner loads the test split only when the trainer evaluates, and the held-out accuracy is
            # computed on it: without it the run would finish with no accuracy, which is what this stage is for.
            raise ZephyrError("stage=reward computes its held-out pair accuracy on the test split, which the runner "
                              "loads only when stage.trainer.eval_strategy is not 'no'",
                              "set stage.trainer.eval_strategy=epoch (or steps), or dataset.test_split=null to "
                              "train without a held-out accuracy")

    def load_model(self, name: str, recipe: Recipe, placement):
        return load_reward_model(name, recipe.model, placement)

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        from trl import RewardTrainer

        hw = recipe.hardware
        # A reward model's LoRA is a sequence-classification task: peft then trains the new score head too.
        peft_config = lora_config(dataclasses.replace(hw, lora={"task_type": "SEQ_CLS", **hw.lora})) if hw.lora else None
        model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last token that is not padding
        trainer = RewardTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                                processing_class=tokenizer, peft_config=peft_config)
        return trainer, {"head": "AutoModelForSequenceClassification, num_labels 1"}

    def results(self, trainer, eval_dataset) -> dict:
        if eval_dataset is None or len(eval_dataset) == 0:
            return {}
        model = trainer.accelerator.unwrap_model(trainer.model)
        sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
        if sharded and trainer.args.world_size > 1:
            # Only rank 0 gets here, and a forward pass through sharded weights needs every rank: score with the
            # weights just saved to the run folder instead.

            placement = modeling.Placement(device=str(trainer.args.device.type), attn_implementation="sdpa",
                                           precision="bf16" if trainer.args.bf16 else "fp32")
            model = load_reward_model(trainer.args.output_dir, ModelConfig(dtype="auto"), placement).to(trainer.args.device)
        scorer = Scorer(model, trainer.processing_class, batch_size=trainer.args.per_device_eval_batch_size,
                        max_length=trainer.args.max_length)
        figures = pair_accuracy(scorer, eval_dataset)
        log.info("reward model: held-out accuracy %.4f on %d pairs (%d ties), mean margin %.4f",
                 figures["heldout_accuracy"], figures["heldout_pairs"], figures["heldout_ties"],
                 figures["heldout_margin"])
        return figures

    def card_usage(self, recipe: Recipe) -> str:
        where = recipe.run.output_dir
        return f"""A reward model: one score per conversation (higher is better), read at its last token.

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tok = AutoTokenizer.from_pretrained("{where}")
rm = AutoModelForSequenceClassification.from_pretrained("{where}", num_labels=1)  # also loads a LoRA run (peft)
chat = [{{"role": "user", "content": "Reverse the words: red green blue"}}, {{"role": "assistant", "content": "blue green red"}}]
ids = tok.apply_chat_template(chat, return_tensors="pt", return_dict=True)
with torch.no_grad():
    print(rm(**ids).logits[0, 0].item())
```

As the judge of an AI feedback recipe: `stage.judge: {{type: reward_model, model: {where}}}`.
"""


STAGE = Reward()
