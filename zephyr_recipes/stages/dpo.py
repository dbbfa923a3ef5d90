"""dDPO: direct preference optimisation of the dSFT model on prompt / chosen / rejected pairs.

Step 3 of the Zephyr method, with TRL's ``DPOTrainer``. The reference model is the policy's starting point (the
dSFT model) unless ``stage.ref_model`` names another; TRL then keeps a frozen copy of it (under ZeRO-3 sharded
like the policy, prepared by TRL). With LoRA (hardware.lora) there is no copy: the reference is the policy with its
adapters disabled. With ``stage.trainer.precompute_ref_log_probs: true`` TRL computes the reference
log-probabilities once before training and keeps no reference model in memory while training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import TrainerStageConfig, option
from ..model.modeling import lora_config, resolve_source
from .base import PreferenceStage

log = logging.getLogger("zephyr_recipes")


@dataclass
class DPOStageConfig(TrainerStageConfig):
    ref_model: Optional[str] = option(
        None, "Reference model. null means the policy's starting weights (model.name_or_path); with "
        "hardware.lora the reference is the base with adapters disabled and no copy is kept.")


class DPO(PreferenceStage):
    """Direct preference optimisation on preference pairs (TRL DPOTrainer)."""

    name = "dpo"
    schema = DPOStageConfig
    trl_config = "DPOConfig"
    curves = ("loss", "rewards/margins", "rewards/accuracies")
    mfu = 0.20
    mfu_source = "open-instruct's 7B DPO runs: 19-22.5%"

    def check(self, recipe: Recipe[DPOStageConfig]) -> None:
        trainer = recipe.stage.trainer
        beta = trainer.get("beta", 0.1)
        if isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta <= 0:
            raise ZephyrError(f"stage.trainer.beta={beta}: {self.name.upper()}'s beta must be positive",
                              "the Zephyr paper uses 0.01 to 0.1: stage.trainer.beta=0.01")
        loss = trainer.get("loss_type", "sigmoid")
        smoothing = trainer.get("label_smoothing", 0.0)
        if "robust" in ([loss] if isinstance(loss, str) else list(loss or [])) and isinstance(smoothing, (int, float)) \
                and not 0 <= smoothing < 0.5:  # TRL's noise-robust loss: the share of labels assumed flipped
            raise ZephyrError(f"stage.trainer.label_smoothing={smoothing}: the robust loss reads it as the share of "
                              "pairs whose labels are flipped, which must be in [0, 0.5)",
                              "for example stage.trainer.label_smoothing=0.2 (the audit's retest swap share "
                              "estimates it: docs/audit.md)")
        if recipe.hardware.lora is not None and recipe.stage.ref_model:
            raise ZephyrError(f"with hardware.lora the {self.name.upper()} reference is the base model with "
                              "adapters disabled; stage.ref_model would load a second model that is never used",
                              "remove stage.ref_model, or set hardware.lora=null for full fine-tuning")

    def frozen_copies(self, recipe: Recipe[DPOStageConfig]) -> tuple[int, str | None]:
        """The reference: no copy with LoRA (adapters disabled) or precomputed log-probabilities."""
        if recipe.hardware.lora:
            return 0, f"{self.name.upper()} reference: the policy with adapters disabled"
        if recipe.stage.trainer.get("precompute_ref_log_probs", False):
            return 0, f"{self.name.upper()} reference: precomputed log-probabilities"
        return 1, None

    def reference(self, recipe: Recipe[DPOStageConfig], args, load_other) -> tuple:
        """(frozen reference model or None, LoRA config or None, facts for provenance): the reference is the
        policy's starting weights unless stage.ref_model names another; TRL copies it when given None."""
        peft_config = lora_config(recipe.hardware)
        ref_name = recipe.stage.ref_model
        ref_model = load_other(ref_name) if ref_name and peft_config is None else None
        reference = resolve_source(ref_name or recipe.model.name_or_path)
        how = ("the policy with LoRA adapters disabled (no copy)" if peft_config is not None else
               "precomputed log-probabilities" if getattr(args, "precompute_ref_log_probs", False) else "a frozen copy")
        log.info("%s reference model: %s, %s", self.name.upper(), reference, how)
        return ref_model, peft_config, {"reference_model": reference, "reference_mode": how}

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        from trl import DPOTrainer

        ref_model, peft_config, facts = self.reference(recipe, args, load_other)
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                             eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
        return trainer, facts


STAGE = DPO()
