"""dDPO: direct preference optimisation of the dSFT model on prompt / chosen / rejected pairs.

The reference model is the policy's starting point (the dSFT model) unless ``stage.ref_model`` names
another; TRL then keeps a frozen copy of it (under ZeRO-3 sharded like the policy, prepared by TRL). With LoRA
(hardware.lora) there is no copy: the reference is the policy with its adapters disabled. With
``stage.trainer.precompute_ref_log_probs: true`` TRL computes the reference log-probabilities once before
training and keeps no reference model in memory while training.
"""

from __future__ import annotations

import logging

from ..modeling import resolve_source

CONFIG_CLASS = "DPOConfig"
log = logging.getLogger("zephyr_recipes")


def build_trainer(cfg: dict, model, tokenizer, train, eval_dataset, args, placement, load_model):
    from trl import DPOTrainer

    from ..modeling import lora_config

    peft_config = lora_config(cfg["hardware"])
    ref_name = cfg["stage"]["ref_model"]
    ref_model = load_model(ref_name) if ref_name and peft_config is None else None
    reference = resolve_source(ref_name or cfg["model"]["name_or_path"])
    how = ("the policy with LoRA adapters disabled (no copy)" if peft_config is not None else
           "precomputed log-probabilities" if getattr(args, "precompute_ref_log_probs", False) else "a frozen copy")
    log.info("DPO reference model: %s, %s", reference, how)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                         eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
    return trainer, {"reference_model": reference, "reference_mode": how}
