"""How a trainer tokenizes one row, with each token marked trained, masked (no loss) or cut (beyond max_length).

Tokenization is the one TRL's trainers use: ``apply_chat_template(..., return_assistant_tokens_mask=...)`` for SFT
(every token is trained unless ``assistant_only_loss``), and for DPO and KTO the prompt rendered with the generation
prompt, the completion starting where prompt and prompt + answer stop sharing tokens
(``trl.data_utils.common_prefix_length``). The row kinds (:mod:`.kinds`) choose which applies; ``preview``
(:mod:`.preview`) shows the result. This module imports nothing of the package, so both can import it.
"""

from __future__ import annotations

TRAINED, MASKED, CUT = "trained", "masked", "cut"


def _ids(enc) -> dict:
    return enc if isinstance(enc, dict) else dict(enc)


def tokenize_sft(tokenizer, messages: list[dict], trainer: dict) -> list[tuple[int, str]]:
    """(token id, trained | masked | cut) for one SFT conversation."""
    assistant_only = bool(trainer.get("assistant_only_loss"))
    enc = _ids(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=assistant_only))
    ids = list(enc["input_ids"])
    mask = list(enc.get("assistant_masks") or [1] * len(ids)) if assistant_only else [1] * len(ids)
    states = [TRAINED if m else MASKED for m in mask]
    return _truncate(list(zip(ids, states)), trainer, packing=bool(trainer.get("packing")))


def tokenize_dpo(tokenizer, row: dict, trainer: dict, answer: str) -> list[tuple[int, str]]:
    """(token id, state) for the prompt followed by the chosen or rejected answer."""
    from trl.data_utils import common_prefix_length

    prompt = _ids(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                                return_dict=True))["input_ids"]
    full = {k: _ids(tokenizer.apply_chat_template(row["prompt"] + row[k], tokenize=True, return_dict=True))["input_ids"]
            for k in ("chosen", "rejected")}
    plen = min(common_prefix_length(prompt, full["chosen"]), common_prefix_length(prompt, full["rejected"]))
    ids = list(full[answer])
    pairs = [(t, MASKED if i < plen else TRAINED) for i, t in enumerate(ids)]
    return _truncate(pairs, trainer, packing=False)


def tokenize_completion(tokenizer, prompt: list[dict], completion: list[dict], trainer: dict) -> list[tuple[int, str]]:
    """(token id, state) for one prompt and its completion, as KTOTrainer splits them."""
    from trl.data_utils import common_prefix_length

    ids = _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                             return_dict=True))["input_ids"]
    full = list(_ids(tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=True,
                                                   return_dict=True))["input_ids"])
    plen = common_prefix_length(ids, full)
    return _truncate([(t, MASKED if i < plen else TRAINED) for i, t in enumerate(full)], trainer, packing=False)


def _truncate(pairs, trainer: dict, packing: bool):
    limit = trainer.get("max_length")
    if not limit or len(pairs) <= limit or packing:
        return pairs
    if trainer.get("truncation_mode", "keep_start") == "keep_end":
        return [(t, CUT) for t, _ in pairs[:-limit]] + pairs[-limit:]
    return pairs[:limit] + [(t, CUT) for t, _ in pairs[limit:]]
