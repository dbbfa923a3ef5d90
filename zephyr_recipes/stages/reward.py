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

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..core.errors import ZephyrError
from ..core.schema import TrainerStageConfig, option
from .base import PreferenceStage

log = logging.getLogger("zephyr_recipes")


# ------------------------------------------------------------------------------------------------ model
def load_reward_model(name: str, model_cfg: dict, placement):
    """``name`` as AutoModelForSequenceClassification with one output, in the placement's dtype.

    A causal LM checkpoint gets a new, randomly initialised score head (transformers' usual warning about it is
    expected); a reward run folder loads as saved.
    """
    from ..model import modeling

    model = modeling.load_model(name, model_cfg, placement, Reward.auto_model, **Reward.model_options)
    if model.config.num_labels != 1:
        raise ZephyrError(f"{name} is a classifier with {model.config.num_labels} outputs, and a reward model has one",
                          "start from a causal LM or a reward model (num_labels 1)")
    return model


class Scorer:
    """Rewards of whole conversations: chat template as the model was trained with, batched, no gradients.

    Conversations are sorted by length and right-padded in batches; the head reads the last token that is not
    padding, as in training. ``max_length`` keeps the first tokens of a longer conversation.
    """

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: Optional[int] = None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = max(1, int(batch_size)), max_length
        self.truncated = 0
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    def ids(self, messages: list[dict]) -> list[int]:
        enc = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        ids = list(enc["input_ids"])
        if self.max_length and len(ids) > self.max_length:
            self.truncated += 1
            ids = ids[:self.max_length]
        return ids

    def score(self, conversations: list[list[dict]]) -> list[float]:
        import torch

        encoded = [self.ids(c) for c in conversations]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = [math.nan] * len(encoded)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                width = max(len(encoded[i]) for i in idx)
                input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, :len(encoded[i])] = 1
                with torch.no_grad():
                    logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                for row, i in enumerate(idx):
                    out[i] = float(logits[row, 0].float())
        finally:
            self.model.train(was_training)
        return out


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
    auto_model = "AutoModelForSequenceClassification"
    model_options = {"num_labels": 1}

    def check(self, cfg: dict) -> None:
        trainer = cfg["stage"]["trainer"]
        ds = cfg["dataset"]
        has_test = bool(ds.get("test_split") or ds.get("test_fraction") or
                        any(m.get("test_split") for m in ds.get("mixture") or [] if isinstance(m, dict)))
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

    def load_model(self, name: str, cfg: dict, placement):
        return load_reward_model(name, cfg["model"], placement)

    def build_trainer(self, cfg, model, tokenizer, train, eval_dataset, args, load_other):
        from trl import RewardTrainer

        from ..model.modeling import lora_config

        hw = cfg["hardware"]
        # A reward model's LoRA is a sequence-classification task: peft then trains the new score head too.
        peft_config = lora_config({**hw, "lora": {"task_type": "SEQ_CLS", **hw["lora"]}}) if hw.get("lora") else None
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
            from ..model import modeling

            placement = modeling.Placement(device=str(trainer.args.device.type), attn_implementation="sdpa",
                                           precision="bf16" if trainer.args.bf16 else "fp32")
            model = load_reward_model(trainer.args.output_dir, {"dtype": "auto"}, placement).to(trainer.args.device)
        scorer = Scorer(model, trainer.processing_class, batch_size=trainer.args.per_device_eval_batch_size,
                        max_length=trainer.args.max_length)
        figures = pair_accuracy(scorer, eval_dataset)
        log.info("reward model: held-out accuracy %.4f on %d pairs (%d ties), mean margin %.4f",
                 figures["heldout_accuracy"], figures["heldout_pairs"], figures["heldout_ties"],
                 figures["heldout_margin"])
        return figures

    def card_usage(self, cfg: dict) -> str:
        where = cfg["run"]["output_dir"]
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


# ------------------------------------------------------------------------------------------------ judge
def _judge_base():
    from ..feedback.judges import Judge

    return Judge


class RewardModelJudge(_judge_base()):
    """A trained reward model as judge: it rates one answer and compares two, reading the conversation itself.

    A rating is the reward written on every aspect (so binarization's mean score is the reward itself, and a
    higher reward makes the chosen answer); a comparison is 1.0, 0.0 or 0.5 as the first answer's reward is
    higher, lower or equal (Arena-Hard gets slight verdicts from it). Nothing is sampled, so the judge agrees with
    itself exactly. It gives no 1-10 grades: MT-Bench is refused when the recipe is validated.
    """

    type = "reward_model"
    KINDS = frozenset({"rate", "compare"})
    READS_PROMPTS = False

    def __init__(self, model: str, hardware: dict | None = None, model_config: dict | None = None,
                 batch_size: Any = "auto", max_length: Optional[int] = None, aspects=None,
                 system: Optional[str] = None):
        from ..data.binarize import ASPECTS
        from ..model import modeling

        cfg, self.placement = modeling.standalone(model, model_config, hardware, "judge")
        tokenizer = modeling.load_tokenizer(cfg)  # chat_template null: the one the reward model was trained with
        net = load_reward_model(model, cfg, self.placement)
        if not self.placement.load_in_4bit:
            net = net.to(self.placement.device)
        if batch_size == "auto":
            batch_size = 64 if self.placement.device == "cuda" else 16
        self.scorer = Scorer(net.eval(), tokenizer, int(batch_size), max_length)
        self.aspects = tuple(aspects or ASPECTS)
        self.system = system
        self.name = model

    @classmethod
    def from_spec(cls, spec: dict, hardware: dict | None = None) -> "RewardModelJudge":
        """The judge of a checked ``{type: reward_model, model, ...}`` spec."""
        return cls(spec["model"], hardware, spec["model_config"], spec["batch_size"], spec["max_length"],
                   spec["aspects"], spec["system"])

    def _conversation(self, messages: list[dict], response: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system and \
            not any(m.get("role") == "system" for m in messages) else []
        return system + list(messages) + [{"role": "assistant", "content": response}]

    def scores(self, pairs: list[tuple]) -> list[float]:
        """Rewards of (messages, response) pairs."""
        return self.scorer.score([self._conversation(m, r) for m, r in pairs])

    def _streamed(self, pairs: list[tuple]) -> Iterator[tuple[int, float]]:
        """(index, reward) a few batches at a time, so the caller records ratings as they come."""
        step = self.scorer.batch_size * 8
        for start in range(0, len(pairs), step):
            for j, value in enumerate(self.scores(pairs[start:start + step])):
                yield start + j, value

    def rate_many(self, items) -> Iterator[tuple[int, Any]]:
        from ..feedback.judges import JudgeFailure, Verdict

        for i, value in self._streamed([(it.messages, it.answers[0]) for it in items]):
            if not math.isfinite(value):
                yield i, JudgeFailure(f"the reward model returned {value}")
                continue
            rating = repr(value)
            why = f"reward {value:.6g} from {self.name}"
            yield i, Verdict({a: {"Rating": rating, "Rationale": why} for a in self.aspects}, f"reward {rating}")

    def compare_many(self, items) -> Iterator[tuple[int, Any]]:
        """The first answer against the second, by their rewards; prompts are not read."""
        from ..feedback.judges import Verdict

        items = list(items)
        first = self.scores([(it.messages, it.answers[0]) for it in items])
        second = self.scores([(it.messages, it.answers[1]) for it in items])
        for i, (x, y) in enumerate(zip(first, second)):
            yield i, Verdict(1.0 if x > y else 0.0 if x < y else 0.5, f"rewards {x!r} vs {y!r}")


def _register() -> None:
    """Add the reward_model judge type to the judges a recipe may name."""
    from ..feedback.specs import JudgeSpec, register_judge

    @dataclass
    class RewardModelJudgeSpec(JudgeSpec):
        model: str = option("???", "Reward run folder (stage=reward), local folder or hub id of a sequence-"
                               "classification model with one output.")
        model_config: dict = option({}, "Model options as in the model section (revision, dtype, chat_template ...); "
                                    "chat_template null keeps the one the reward model was trained with.")
        batch_size: Any = option("auto", "Conversations scored per batch (auto: 64 on a GPU, 16 on the CPU).")
        max_length: Optional[int] = option(None, "Tokens kept of a longer conversation (its start); null keeps all.")

        @classmethod
        def after_check(cls, where: str, values: dict) -> None:
            if values.get("prompt"):
                raise ZephyrError(f"{where} of type reward_model scores the conversation itself and takes no prompt",
                                  f"remove {where}.prompt")
            size = values.get("batch_size")
            if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ZephyrError(f"{where}.batch_size is {size!r}", "use auto or a whole number of 1 or more")

    register_judge("reward_model", RewardModelJudgeSpec, RewardModelJudge.from_spec)


_register()
