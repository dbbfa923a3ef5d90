"""The baseline: the tiny SFT recipe written as a plain TRL script, with no runner around it.

    python bench/plain_trl_sft.py --model DIR --data DIR --split train_sft --template FILE --args ARGS.json --out DIR

``--args`` is the JSON of the resolved recipe's ``stage.trainer`` section (the benchmark writes it from
``zephyr-recipes show``), so SFTConfig gets exactly the runner's arguments. What a user would write by hand:
load tokenizer, data and model, build SFTConfig and SFTTrainer, train, save.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="train_sft")
    p.add_argument("--template", required=True)
    p.add_argument("--args", required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    with open(a.template) as fh:
        tokenizer.chat_template = fh.read()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train = load_dataset(a.data, split=a.split).select_columns(["messages"])
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    with open(a.args) as fh:
        trainer_args = json.load(fh)
    args = SFTConfig(output_dir=a.out, use_cpu=True, seed=a.seed, **trainer_args)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(a.out)
    tokenizer.save_pretrained(a.out)
    print(json.dumps({"train_rows": len(train)}))


if __name__ == "__main__":
    main()
