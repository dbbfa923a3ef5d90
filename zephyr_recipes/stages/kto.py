"""KTO: Kahneman-Tversky optimisation on unpaired rows (prompt, completion, label: desirable or not).

An alternative to dDPO for step 3 of the method, with TRL's ``KTOTrainer``: it needs no pairs, only a verdict per
answer, so binary feedback (thumbs up / down) trains too. Its dataset is read as unpaired rows (the
``unpaired`` row kind); preference pairs (an AIF run folder, UltraFeedback) are converted on load, each pair
giving a desirable row (its chosen answer) and an undesirable one (its rejected answer), shuffled with the run's
seed. The shuffle matters: TRL reads KTO rows in order and estimates its KL term from each row's neighbours in the
batch, so the two answers of one prompt must not sit side by side.

The reference model is handled as dDPO's: the policy's starting weights (a frozen copy) unless
``stage.ref_model`` names another; with LoRA the policy with adapters disabled; none in memory with
``precompute_ref_log_probs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..data import kinds
from .dpo import DPO, DPOStageConfig


@dataclass
class KTOStageConfig(DPOStageConfig):
    pass


class KTO(DPO):
    """Kahneman-Tversky optimisation on desirable / undesirable answers (TRL KTOTrainer)."""

    name = "kto"
    schema = KTOStageConfig
    rows = kinds.UNPAIRED
    trl_config = "KTOConfig"
    # One trained sequence per row; the KL term's mismatched sequence is a forward pass without gradients.
    sequences_per_row = 1
    curves = ("loss", "rewards/margins", "kl")

    def check(self, recipe: Recipe[DPOStageConfig]) -> None:
        super().check(recipe)
        trainer = recipe.stage.trainer
        if trainer.get("loss_type", "kto") == "apo_zero_unpaired":
            return  # the one loss without a KL term: any sampler and batch size
        batch = recipe.hardware.per_device_batch_size or trainer.get("per_device_train_batch_size", 8)
        if isinstance(batch, int) and batch <= 1:
            raise ZephyrError(f"KTO estimates its KL term from the other rows of a batch, and the batch per device is "
                              f"{batch}", "set stage.trainer.per_device_train_batch_size to 2 or more (8 is usual)")
        sampling = trainer.get("train_sampling_strategy", "sequential")
        if sampling != "sequential":
            raise ZephyrError(f"stage.trainer.train_sampling_strategy={sampling!r}: KTO pairs each row with its "
                              "neighbours in a fixed-order batch for its KL term",
                              "remove it (sequential is KTO's default); the rows are already shuffled on load")

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        from trl import KTOTrainer

        ref_model, peft_config, facts = self.reference(recipe, args, load_other)
        trainer = KTOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                             eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
        labels = train["label"]
        facts["desirable_rows"], facts["undesirable_rows"] = sum(labels), len(labels) - sum(labels)
        return trainer, facts


STAGE = KTO()
