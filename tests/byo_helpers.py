"""A "bring your own model" stand-in built locally: a tiny Llama-architecture chat model whose tokenizer carries a
published chat template with no generation markers, and small JSONL data in the UltraChat / UltraFeedback
schemas."""

from __future__ import annotations

import json
import random
from pathlib import Path

PUBLISHED = Path(__file__).parent / "data" / "published_templates"
WORDS = ("apple river stone cloud maple seven amber violet copper harbor lemon north quiet swift bright candle "
         "garden marble pepper silver winter yellow ocean forest").split()


def published(name: str) -> str:
    return (PUBLISHED / f"{name}.jinja").read_text()


def _corpus(n: int = 400) -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        words = rng.sample(WORDS, 4)
        lines.append(f"Reverse the words: {' '.join(words)}")
        lines.append(" ".join(reversed(words)))
        lines.append(f"Sort the words: {' '.join(words)} You are a helpful assistant. Sure! Here it is:")
    return lines


def build_tokenizer(special: list[str], eos: str, template: str | None, unk: str | None = None,
                    extra_special: list[str] | None = None, bos: str | None = None):
    """A byte-level BPE tokenizer trained on a small corpus here; ``template`` becomes its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special + (extra_special or []),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, unk_token=unk, bos_token=bos)
    fast.chat_template = template
    return fast


def build_chatml_llama(folder: Path, template: str | None = None, grow_vocab: int = 0) -> Path:
    """A 2-layer Llama with a ChatML tokenizer (no pad token; template: published plain ChatML by default).

    ``grow_vocab`` adds that many tokens to the tokenizer after the model was sized, so the tokenizer is larger
    than the embedding matrix (as when a user adds tokens to a published tokenizer).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>",
                                published("chatml-hermes") if template is None else template)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    if grow_vocab:
        tokenizer.add_tokens([f"<extra_{i}>" for i in range(grow_vocab)])
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_sft_jsonl(path: Path, n: int = 48, seed: int = 0, system: bool = False) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            words = rng.sample(WORDS, 4)
            q = f"Reverse the words: {' '.join(words)}"
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": " ".join(reversed(words))}]
            if i % 2:
                more = rng.sample(WORDS, 3)
                msgs += [{"role": "user", "content": f"Sort the words: {' '.join(more)}"},
                         {"role": "assistant", "content": " ".join(sorted(more))}]
            if system:
                msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
            fh.write(json.dumps({"prompt": q, "prompt_id": f"p{i}", "messages": msgs}) + "\n")
    return path


def write_pref_jsonl(path: Path, n: int = 32, seed: int = 1) -> Path:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            words = rng.sample(WORDS, 4)
            q = f"Reverse the words: {' '.join(words)}"
            good, bad = " ".join(reversed(words)), f"Sure! Here it is: {' '.join(words)}"
            fh.write(json.dumps({
                "prompt": q, "prompt_id": f"q{i}",
                "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
                "score_chosen": 9.0, "score_rejected": 3.0}) + "\n")
    return path
