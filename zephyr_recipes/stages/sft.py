"""dSFT: supervised fine-tuning on teacher-written dialogues (the ``messages`` column).

Step 1 of the Zephyr method: the student learns to answer like the teacher by next-token prediction on
UltraChat-style conversations, with TRL's ``SFTTrainer``.
"""

from __future__ import annotations

from ..core.schema import TrainerStageConfig
from ..data import kinds
from ..model.modeling import lora_config
from .base import TrainerStage


class SFT(TrainerStage):
    """Distilled supervised fine-tuning on dialogues (TRL SFTTrainer)."""

    name = "sft"
    schema = TrainerStageConfig
    rows = kinds.CHAT
    trl_config = "SFTConfig"

    def build_trainer(self, recipe, model, tokenizer, train, eval_dataset, args, load_other):
        from trl import SFTTrainer

        peft_config = lora_config(recipe.hardware)  # None: all weights train
        return SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                          processing_class=tokenizer, peft_config=peft_config), {}


STAGE = SFT()
