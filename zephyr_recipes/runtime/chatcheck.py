"""`chat`'s inputs checked before any weights load: the sampling values, the model folder, the prompt's length."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..core.errors import ZephyrError
from ..model.modeling import check_weight_files
from ..reports import readcheck

log = logging.getLogger("zephyr_recipes")
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
CHARS_PER_TOKEN_MAX = 32  # no tokenizer packs more characters than this into one token of ordinary text


def check_values(max_new_tokens: int, temperature: float) -> None:
    if max_new_tokens < 1:
        raise ZephyrError(f"--max-new-tokens {max_new_tokens} asks for no reply (it must be at least 1)",
                          "e.g. --max-new-tokens 256")
    if not math.isfinite(temperature) or temperature < 0:
        raise ZephyrError(f"--temperature {temperature} is not a temperature (it must be a number of 0 or more)",
                          "--temperature 0 for greedy decoding, or e.g. --temperature 0.7")


def check_place(model: str) -> None:
    """A local path names a folder that holds a model (config.json), not a file or an empty or unfinished folder."""
    path = Path(model).expanduser()
    if path.is_file():
        raise ZephyrError(f"{model} is a file, and chat needs a model: a run folder, a saved model's folder, a hub "
                          "id or builtin://tiny-mistral", "give the folder that holds config.json and the weights")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ZephyrError(f"{model} is a folder without config.json, so it holds no model (an unfinished run?)",
                          "give a finished run folder or a saved model's folder")


def check_model(model: str) -> None:
    """Before transformers is imported: a local path is a model's folder, it holds weights, and they are whole; a
    finished run folder's records are whole."""
    check_place(model)
    path = Path(model).expanduser()
    if not path.is_dir():
        return  # a hub id or builtin://...
    if not any(p for pattern in WEIGHTS for p in path.glob(pattern)):
        raise ZephyrError(f"{model} holds config.json but no weight file (model.safetensors or pytorch_model.bin)",
                          "give a finished run folder or a saved model's folder (copy the weights too)")
    readcheck.check(path)
    check_weight_files(str(path), model)


def context_of(pipe) -> int | None:
    config = getattr(pipe.model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(pipe.tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10**7 else None


def fit_context(pipe, messages: list[dict], max_new_tokens: int) -> tuple[list[dict], int]:
    """(messages, max_new_tokens) that fit the model's context: the oldest turns are dropped with a warning, a
    reply is shortened with a warning, and one message longer than the context is an error."""
    limit = context_of(pipe)
    if limit is None:
        return messages, max_new_tokens
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    if chars > limit * CHARS_PER_TOKEN_MAX:
        raise ZephyrError(f"the conversation is {chars:,} characters, far past the model's context of {limit:,} "
                          "tokens", "shorten the prompt, or /reset to start the conversation over")

    def length(msgs) -> int:
        ids = pipe.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    kept = list(messages)
    n = length(kept)
    while n >= limit:
        turns = [i for i, m in enumerate(kept) if m.get("role") != "system"]
        if len(turns) <= 1:
            raise ZephyrError(f"the prompt is {n:,} tokens, and the model's context holds {limit:,} tokens "
                              "(the prompt and the reply together)",
                              "shorten the prompt, or use a model with a longer context")
        del kept[turns[0]]
        n = length(kept)
    if len(kept) < len(messages):
        log.warning("chat: the conversation no longer fits the model's context (%d tokens): its %d oldest "
                    "message(s) are left out", limit, len(messages) - len(kept))
    room = limit - n
    if max_new_tokens > room:
        log.warning("chat: the reply is cut to %d new tokens, all that is left of the model's context of %d",
                    room, limit)
        max_new_tokens = room
    return kept, max_new_tokens
