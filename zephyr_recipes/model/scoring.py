"""Reward models: a sequence-classification model with one output that scores whole conversations.

Loaded and used by the reward stage (held-out pair accuracy after training) and by the ``reward_model`` judge
type (AI feedback and evaluation with a trained reward model as judge).
"""

from __future__ import annotations

import math
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import ModelConfig
from . import modeling

AUTO_MODEL = "AutoModelForSequenceClassification"
MODEL_OPTIONS = {"num_labels": 1}


def load_reward_model(name: str, model_cfg: ModelConfig | dict, placement):
    """``name`` as AutoModelForSequenceClassification with one output, in the placement's dtype.

    A causal LM checkpoint gets a new, randomly initialised score head (transformers' usual warning about it is
    expected); a reward run folder loads as saved.
    """
    model = modeling.load_model(name, model_cfg, placement, AUTO_MODEL, **MODEL_OPTIONS)
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
