"""dSFT: supervised fine-tuning on teacher-written dialogues (the ``messages`` column)."""

from __future__ import annotations

CONFIG_CLASS = "SFTConfig"


def build_trainer(cfg: dict, model, tokenizer, train, eval_dataset, args, placement, load_model):
    from trl import SFTTrainer

    from ..modeling import lora_config

    peft_config = lora_config(cfg["hardware"])  # None: all weights train
    return SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                      processing_class=tokenizer, peft_config=peft_config), {}
