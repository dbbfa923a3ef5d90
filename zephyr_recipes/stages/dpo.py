"""dDPO: direct preference optimisation of the dSFT model on prompt / chosen / rejected pairs.

The reference model is the policy's starting point (the dSFT model) unless ``stage.ref_model`` names
another; TRL then keeps a frozen copy of it.
"""

from __future__ import annotations

import logging

from ..modeling import resolve_source

CONFIG_CLASS = "DPOConfig"
log = logging.getLogger("zephyr_recipes")


def build_trainer(cfg: dict, model, tokenizer, train, eval_dataset, args, placement, load_model):
    from trl import DPOTrainer

    ref_name = cfg["stage"]["ref_model"]
    ref_model = load_model(ref_name) if ref_name else None
    reference = resolve_source(ref_name or cfg["model"]["name_or_path"])
    log.info("DPO reference model: %s", reference)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                         eval_dataset=eval_dataset, processing_class=tokenizer)
    return trainer, {"reference_model": reference}
