"""ORPO: odds-ratio preference optimisation, supervised fine-tuning and preference learning in one step.

An alternative to dSFT followed by dDPO, with TRL's ``ORPOTrainer`` (kept in ``trl.experimental.orpo`` in TRL 1.x):
the loss is the NLL of the chosen answer plus ``beta`` times the log odds ratio of chosen over rejected, so it reads
the same preference pairs as dDPO and needs no reference model (nothing frozen beside the policy). ``beta`` is the
paper's lambda (Hong et al. 2024, arXiv 2403.07691; 0.1 in TRL and the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import TrainerStageConfig
from ..model.modeling import lora_config
from .base import PreferenceStage


@dataclass
class ORPOStageConfig(TrainerStageConfig):
    pass


class ORPO(PreferenceStage):
    """Odds-ratio preference optimisation on preference pairs, no reference model (TRL ORPOTrainer)."""

    name = "orpo"
    schema = ORPOStageConfig
    trl_config = "ORPOConfig"
    trl_module = "trl.experimental.orpo"
    curves = ("loss", "nll_loss", "log_odds_ratio", "rewards/accuracies")

    def check(self, recipe: Recipe) -> None:
        beta = recipe.stage.trainer.get("beta", 0.1)
        if isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta < 0:
            raise ZephyrError(f"stage.trainer.beta={beta}: ORPO's beta (the odds-ratio term's weight) is not negative",
                              "the ORPO paper and TRL use 0.1: stage.trainer.beta=0.1")

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        from trl.experimental.orpo import ORPOTrainer

        trainer = ORPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                              processing_class=tokenizer, peft_config=lora_config(recipe.hardware))
        return trainer, {"reference_model": None}


STAGE = ORPO()
