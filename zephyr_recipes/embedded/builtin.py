"""Materialise the embedded model and datasets into a local cache folder.

``builtin://tiny-mistral``      a 2-layer Mistral-architecture model with random weights and a byte-level BPE
                                tokenizer trained here on the embedded task text.
``builtin://tiny-ultrachat``    HuggingFaceH4/ultrachat_200k's schema and splits, generated from the tasks.
``builtin://tiny-ultrafeedback`` HuggingFaceH4/ultrafeedback_binarized's schema and splits.
``builtin://tiny-zephyr-eval``  held-out evaluation prompts that no training set holds: ``question.jsonl``
                                (FastChat's MT-Bench format, two turns each) and ``alpaca_eval.json``
                                (alpaca_eval's format, the teacher's answers as the baseline outputs).

Each is written once into ``$ZEPHYR_RECIPES_HOME/builtin/<name>-v<version>`` (default
``~/.cache/zephyr-recipes``) through a temporary folder renamed into place, so a half-written copy is never
used, and is identical on every machine for a given version.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

from ..core import filemodes
from ..core.errors import ZephyrError
from . import tasks
from .multiple_choice import build_tiny_arc

PREFIX = "builtin://"
VERSION = 3
SYSTEM_PROMPT = "You are a careful assistant. Answer with the result only."
SPECIAL = ["<unk>", "<s>", "</s>"]
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


def cache_home() -> Path:
    return Path(os.environ.get("ZEPHYR_RECIPES_HOME", Path.home() / ".cache" / "zephyr-recipes"))


def is_builtin(name: str | None) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def resolve(name: str) -> str:
    """Return the local folder of a builtin model or dataset, building it if needed; a name with a path after
    the resource (``builtin://tiny-zephyr-eval/question.jsonl``) returns that file inside it."""
    key, _, inner = name[len(PREFIX):].partition("/")
    if key not in BUILDERS:
        raise ZephyrError(f"unknown embedded resource {name!r}",
                          f"use one of: {', '.join(PREFIX + k for k in BUILDERS)}")
    target = cache_home() / "builtin" / f"{key}-v{VERSION}"
    if (target / ".complete").exists():
        return _inside(target, inner, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        BUILDERS[key](tmp)
        filemodes.open_to_umask(tmp)  # mkdtemp makes the folder 0700 and safetensors its weights 0600
        (tmp / ".complete").write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; theirs is identical
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _inside(target, inner, name)


def _inside(target: Path, inner: str, name: str) -> str:
    if not inner:
        return str(target)
    path = target / inner
    if not path.exists():
        held = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
        raise ZephyrError(f"{name}: the embedded resource has no {inner!r}", f"it holds: {', '.join(held)}")
    return str(path)


# --------------------------------------------------------------------------------------------- data
def _prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# The dSFT teacher is imperfect, as ChatGPT was for UltraChat: in some of its answers it ignores the
# answer-only convention of these tasks and opens with a pleasantry. The embedded judge, like GPT-4 rating
# UltraFeedback, marks such answers down (a quarter of the grade: embedded/judge.py); the zephyr pipeline's AIF pool
# has the same teacher, habit included (tasks.chatty_teacher; docs/ablation.md).
CHATTER, CHATTY_SHARE = tasks.CHATTER, tasks.CHATTY_SHARE


def _dialogue(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """A one- or two-turn dialogue; returns (messages, wrong-final-answer messages)."""
    turns = 2 if rng.random() < 0.25 else 1
    messages, wrong = [], []
    for _ in range(turns):
        task = tasks.sample(rng)
        answer = f"{rng.choice(CHATTER)} {task.answer}" if rng.random() < CHATTY_SHARE else task.answer
        messages += [{"content": task.instruction, "role": "user"},
                     {"content": answer, "role": "assistant"}]
        wrong = messages[:-1] + [{"content": task.wrong, "role": "assistant"}]
    return messages, wrong


def _sft_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        messages, _ = _dialogue(rng)
        prompt = messages[0]["content"]
        rows.append({"prompt": prompt, "prompt_id": _prompt_id(prompt), "messages": messages})
    return rows


def _pref_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        task = tasks.sample(rng)
        user = {"content": task.instruction, "role": "user"}
        chosen = [user, {"content": task.answer, "role": "assistant"}]
        rejected = [user, {"content": task.wrong, "role": "assistant"}]
        rows.append({
            "prompt": task.instruction,
            "prompt_id": _prompt_id(task.instruction),
            "chosen": chosen,
            "rejected": rejected,
            "messages": chosen,
            "score_chosen": float(rng.choice([9.0, 9.5, 10.0])),
            "score_rejected": float(rng.choice([2.0, 3.0, 4.5, 6.0])),
        })
    return rows


def _write_splits(folder: Path, splits: dict[str, list[dict]]) -> None:
    import datasets

    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


def _ultrachat_splits() -> dict[str, list[dict]]:
    rng = random.Random(1)
    return {"train_sft": _sft_rows(rng, 2000), "test_sft": _sft_rows(rng, 100),
            "train_gen": _sft_rows(rng, 1000), "test_gen": _sft_rows(rng, 50)}


def _ultrafeedback_splits() -> dict[str, list[dict]]:
    rng = random.Random(2)
    return {"train_prefs": _pref_rows(rng, 1000), "test_prefs": _pref_rows(rng, 100),
            "train_sft": _pref_rows(rng, 200), "test_sft": _pref_rows(rng, 50),
            "train_gen": _pref_rows(rng, 200), "test_gen": _pref_rows(rng, 50)}


def build_tiny_ultrachat(folder: Path) -> None:
    _write_splits(folder, _ultrachat_splits())
    (folder / "README.md").write_text(
        "# tiny-ultrachat\n\nEmbedded stand-in for HuggingFaceH4/ultrachat_200k (same columns and splits), "
        "generated by zephyr_recipes.embedded from checkable instructions.\n")


def build_tiny_ultrafeedback(folder: Path) -> None:
    _write_splits(folder, _ultrafeedback_splits())
    (folder / "README.md").write_text(
        "# tiny-ultrafeedback\n\nEmbedded stand-in for HuggingFaceH4/ultrafeedback_binarized (same columns and "
        "splits): chosen is the correct answer, rejected a typical mistake.\n")


def training_instructions() -> set[str]:
    """Every user turn of every split of the embedded training sets (what held-out prompts must avoid)."""
    seen: set[str] = set()
    for splits in (_ultrachat_splits(), _ultrafeedback_splits()):
        for rows in splits.values():
            for row in rows:
                seen.update(m["content"] for m in row["messages"] if m["role"] == "user")
    return seen


def held_out_tasks(rng: random.Random, n: int, avoid: set[str]) -> list[tasks.Task]:
    """``n`` tasks, kinds in turn, whose instructions are in neither ``avoid`` nor each other."""
    kinds = tuple(tasks.TASKS)
    out: list[tasks.Task] = []
    while len(out) < n:
        task = tasks.TASKS[kinds[len(out) % len(kinds)]](rng)
        if task.instruction not in avoid:
            avoid.add(task.instruction)
            out.append(task)
    return out


# Held-out evaluation size: enough items that a paired bootstrap over them separates the ablation's rows (the
# claims' 95% intervals; zephyr_recipes.evaluation.intervals). 50 questions and 100 instructions left the
# difference between dSFT + dDPO and dSFT-2 inside the noise of one seed.
EVAL_QUESTIONS = 300
EVAL_INSTRUCTIONS = 500


def build_tiny_zephyr_eval(folder: Path) -> None:
    import json

    avoid = training_instructions()
    rng = random.Random(4)
    first, second = held_out_tasks(rng, EVAL_QUESTIONS, avoid), held_out_tasks(rng, EVAL_QUESTIONS, avoid)
    rng.shuffle(second)  # turn 2 asks another kind of task, as MT-Bench's follow-ups change the request
    questions = [{"question_id": 1001 + i, "category": a.kind, "turns": [a.instruction, b.instruction],
                  "reference": [a.answer, b.answer]} for i, (a, b) in enumerate(zip(first, second))]
    (folder / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    alpaca = [{"instruction": t.instruction, "output": t.answer, "generator": "teacher", "dataset": f"tiny-{t.kind}"}
              for t in held_out_tasks(rng, EVAL_INSTRUCTIONS, avoid)]
    (folder / "alpaca_eval.json").write_text(json.dumps(alpaca, indent=1) + "\n")
    (folder / "README.md").write_text(
        "# tiny-zephyr-eval\n\nHeld-out prompts for the embedded tasks; no instruction here appears in "
        f"tiny-ultrachat or tiny-ultrafeedback.\n\n- `question.jsonl`: {EVAL_QUESTIONS} two-turn questions in "
        "FastChat's MT-Bench format (category = the first turn's task kind; `reference` = the teacher's answers).\n"
        f"- `alpaca_eval.json`: {EVAL_INSTRUCTIONS} instructions in alpaca_eval's format, the teacher program's "
        "answers as the baseline outputs.\n")


# -------------------------------------------------------------------------------------------- model
def _corpus(n: int = 3000) -> list[str]:
    rng = random.Random(3)
    lines = [SYSTEM_PROMPT]
    for _ in range(n):
        task = tasks.sample(rng)
        lines += [task.instruction, task.answer, task.wrong]
    lines += [" ".join(tasks.WORDS).upper()] * 50 + [" ".join(str(i) for i in range(200))] * 10 + list(CHATTER) * 50
    return lines


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Every word is split off and given the same leading-space marker wherever it stands, so a word is the same
    # token in the question and at the start of the answer: copying it is then a token-level operation.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIAL + ROLE_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=512)
    fast.save_pretrained(str(folder))
    return fast


def build_tiny_mistral(folder: Path) -> None:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = build_tokenizer(folder)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        sliding_window=None, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )
    torch.manual_seed(0)
    model = MistralForCausalLM(config)
    model.save_pretrained(str(folder))
    (folder / "README.md").write_text(
        "# tiny-mistral\n\nA 2-layer Mistral-architecture model with random weights and a byte-level BPE "
        "tokenizer trained on the embedded task text. It has no chat template of its own, like "
        "Mistral-7B-v0.1; recipes give it the Zephyr template.\n")


BUILDERS = {
    "tiny-mistral": build_tiny_mistral,
    "tiny-ultrachat": build_tiny_ultrachat,
    "tiny-ultrafeedback": build_tiny_ultrafeedback,
    "tiny-arc": build_tiny_arc,
    "tiny-zephyr-eval": build_tiny_zephyr_eval,
}
