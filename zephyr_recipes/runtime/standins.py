"""What a rehearsal builds in place of the heavy parts: tiny random models of the real model's family and a few rows
of data in the real schema. A benchmark's stand-in files, in its public format, are the benchmark's own
(``Benchmark.standin``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import kinds
from ..embedded import builtin, tasks
from ..model import chat_format

ROWS = 32  # training rows of a stand-in dataset (test splits: 8)
NEW_TOKENS = 16  # generation budget of every answer and judge reply
TEMPLATE_EOS = {"chatml": "<|im_end|>", "smollm2": "<|im_end|>", "llama-3.2": "<|eot_id|>", "llama-3": "<|eot_id|>",
                "gemma": "<end_of_turn>"}


def build_model(folder: Path, real: dict, own_template: str | None, recipe_template: str | None = None) -> None:
    """A 2-layer random model of ``real``'s family with the embedded tokenizer, written atomically."""
    import shutil
    import tempfile

    import torch
    import transformers
    from transformers import AutoConfig, PreTrainedTokenizerFast


    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(builtin.resolve("builtin://tiny-mistral"))
        ender = TEMPLATE_EOS.get(own_template or recipe_template or "")
        if ender:  # the family's end-of-turn token is one special token, as in its real tokenizer
            tokenizer.add_special_tokens({"additional_special_tokens": [ender]})
        if own_template:
            tokenizer.chat_template = chat_format.template_text(own_template)
            if ender:
                tokenizer.eos_token = ender
        tokenizer.model_max_length = int(real.get("max_position_embeddings") or 4096)
        tokenizer.save_pretrained(str(tmp))
        kind = real.get("model_type") or "mistral"
        small = {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                 "max_position_embeddings": int(real.get("max_position_embeddings") or 4096),
                 "tie_word_embeddings": bool(real.get("tie_word_embeddings", False)),
                 "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": None}
        try:
            config = AutoConfig.for_model(kind, **small)
        except ValueError:
            kind, config = "mistral", AutoConfig.for_model("mistral", **small)
        if hasattr(config, "sliding_window"):
            config.sliding_window = None
        torch.manual_seed(0)
        archs = getattr(config, "architectures", None)
        arch: str | None = archs[0] if archs else None
        cls = getattr(transformers, arch) if arch and hasattr(transformers, arch) else transformers.AutoModelForCausalLM
        model: Any = cls.from_config(config) if cls is transformers.AutoModelForCausalLM else cls(config)
        model.save_pretrained(str(tmp))
        (tmp / "README.md").write_text(f"# rehearsal stand-in\n\nA tiny random {kind} model with the embedded "
                                       "tokenizer, standing in for a hub model in `zephyr-recipes rehearse`.\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def write_data(folder: Path, splits: list[str], kind, columns: dict) -> None:
    """Parquet splits in the schema of the rows the stage reads (its row kind's stand-in rows, or prompts), with
    the recipe's column names."""
    import datasets

    kind = kind or kinds.PROMPTS
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(splits):
        rows: list[dict] = []
        for t in tasks.in_turn(ROWS if i == 0 else 8, seed=11 + i):
            wrong = t.answer[::-1] if len(t.answer) > 1 else t.answer + "?"
            row = kind.example(t.instruction, t.answer, wrong, len(rows))
            row["prompt_id"] = f"{i}-{len(rows)}"
            for ours, theirs in columns.items():  # the recipe's own column names (prompt: instruction ...)
                if ours in row and theirs not in row:
                    row[theirs] = row[ours]
            rows.append(row)
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
