"""Map a source's rows onto the stage's columns and check each one, naming the reason a row is bad.

SFT rows become ``{"messages": [...]}``; DPO rows become TRL's conversational form with an explicit prompt,
``{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}``; unpaired rows (KTO, binary feedback)
``{"prompt": [...], "completion": [assistant], "label": bool}``. Which check a stage's rows get is its row kind's
choice (:mod:`.kinds`). Each row gets a ``_reason`` ("" when
it is good) so that bad rows are counted per reason and dropped, or, in strict mode, the first one stops the
run. Reasons:

  not_a_conversation  the column is not a list of messages (or a pair lacks its prompt)
  unknown_role        a role outside system/user/assistant (after dataset.roles renaming)
  empty_content       a message whose content is not a non-empty string
  not_alternating     roles do not go [system], user, assistant, user, ...
  no_final_assistant  an SFT conversation (or a preference answer) that does not end with an assistant turn
  prompt_mismatch     chosen and rejected conversations that differ before their last turn
  identical_answers   chosen and rejected answers that are the same text
  prompt_too_long     a prompt over dataset.max_prompt_tokens, or one that fills DPO's whole max_length
  not_a_label         an unpaired row whose label is not true/false (or 1/0)
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")
# ShareGPT's names, applied after dataset.roles: conversations / from / value with human and gpt.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}
REASONS = ("not_a_conversation", "unknown_role", "empty_content", "not_alternating", "no_final_assistant",
           "prompt_mismatch", "identical_answers", "prompt_too_long", "not_a_label")
EXPLAIN = {
    "not_a_conversation": "is not a list of {role, content} messages",
    "unknown_role": "has a role outside system/user/assistant (rename others with dataset.roles)",
    "empty_content": "has a message whose content is empty or not a string",
    "not_alternating": "does not alternate [system], user, assistant, user, ...",
    "no_final_assistant": "does not end with an assistant turn",
    "prompt_mismatch": "has chosen and rejected conversations that differ before the answer",
    "identical_answers": "has the same text as chosen and rejected answer",
    "prompt_too_long": "has a prompt longer than the stage allows (dataset.max_prompt_tokens / max_length)",
    "not_a_label": "has a label that is not true/false (desirable/undesirable) or 1/0",
    "overlaps_test": "has the prompt of an evaluation row",
    "contaminated": "overlaps an evaluation benchmark prompt (dataset.decontaminate)",
}


class Bad(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def message_list():
    """The datasets feature of a list of {role, content} messages."""
    import datasets

    return datasets.List({"content": datasets.Value("string"), "role": datasets.Value("string")})


def features(columns: dict):
    """The features of checked rows: the kind's own columns plus _reason and _key."""
    import datasets

    return datasets.Features({**columns, "_reason": datasets.Value("string"), "_key": datasets.Value("string")})


def messages_of(value, roles: dict) -> list[dict]:
    """Role/content messages from ChatML or ShareGPT (from/value) messages; raises Bad on structure."""
    if not isinstance(value, list) or not value:
        raise Bad("not_a_conversation")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise Bad("not_a_conversation")
        role: Any = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = roles.get(role, SHAREGPT_ROLES.get(role, role))
        out.append({"content": content, "role": role})
    return out


def check_conversation(msgs: list[dict], end: str | None) -> None:
    """Roles valid, contents non-empty strings, [system] user assistant ... alternating, ending with ``end``."""
    for m in msgs:
        if m["role"] not in ROLES:
            raise Bad("unknown_role")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise Bad("empty_content")
    turns = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if not turns:
        raise Bad("not_alternating")
    for i, m in enumerate(turns):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise Bad("not_alternating")
    if end and turns[-1]["role"] != end:
        raise Bad("no_final_assistant" if end == "assistant" else "not_alternating")


def _key(prompt_msgs: list[dict]) -> str:
    """The text that identifies a prompt: its first user turn (ultrachat's and ultrafeedback's `prompt`)."""
    for m in prompt_msgs:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"].strip()
    return ""


def _prompt_tokens(tokenizer, prompt_msgs: list[dict]) -> int:
    ids = tokenizer.apply_chat_template(prompt_msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
    return len(ids["input_ids"])


def _user(text) -> list[dict]:
    if not isinstance(text, str):
        raise Bad("not_a_conversation")
    return [{"content": text, "role": "user"}]


def _assistant(text) -> list[dict]:
    if not isinstance(text, str):
        raise Bad("not_a_conversation")
    return [{"content": text, "role": "assistant"}]


def sft_row(row: dict, cols: dict, roles: dict) -> dict:
    msgs: list = []
    try:
        if "completion" in cols:  # prompt / completion text pairs
            prompt = row[cols["prompt"]]
            prompt = messages_of(prompt, roles) if isinstance(prompt, list) else _user(prompt)
            completion = row[cols["completion"]]
            msgs = prompt + (messages_of(completion, roles) if isinstance(completion, list) else _assistant(completion))
        else:
            msgs = messages_of(row[cols["messages"]], roles)
        check_conversation(msgs, end="assistant")
        reason = ""
    except Bad as bad:
        reason = bad.reason
    return {"messages": msgs if not reason else [], "_reason": reason, "_key": _key(msgs) if not reason else ""}


def _prompt_fits(tokenizer, prompt: list[dict], max_prompt_tokens: int | None, max_length: int | None) -> None:
    if max_prompt_tokens or max_length:
        n = _prompt_tokens(tokenizer, prompt)
        if (max_prompt_tokens and n > max_prompt_tokens) or (max_length and n >= max_length):
            raise Bad("prompt_too_long")


def dpo_row(row: dict, cols: dict, roles: dict, tokenizer=None, max_prompt_tokens: int | None = None,
            max_length: int | None = None) -> dict:
    out: dict[str, Any] = {"prompt": [], "chosen": [], "rejected": [], "_reason": "", "_key": ""}
    try:
        chosen, rejected = row[cols["chosen"]], row[cols["rejected"]]
        prompt = row[cols["prompt"]] if "prompt" in cols else None
        if isinstance(chosen, list) and (prompt is None or isinstance(prompt, str)):
            # ultrafeedback_binarized: whole conversations that share every turn but the last.
            chosen, rejected = messages_of(chosen, roles), messages_of(rejected, roles)
            if len(chosen) < 2:
                raise Bad("not_a_conversation")
            if chosen[:-1] != rejected[:-1]:
                raise Bad("prompt_mismatch")
            prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
        elif isinstance(chosen, list):
            prompt, chosen, rejected = (messages_of(prompt, roles), messages_of(chosen, roles),
                                        messages_of(rejected, roles))
        else:  # plain text: the prompt is one user turn, each answer one assistant turn
            if prompt is None:
                raise Bad("not_a_conversation")
            prompt = messages_of(prompt, roles) if isinstance(prompt, list) else _user(prompt)
            chosen, rejected = _assistant(chosen), _assistant(rejected)
        check_conversation(prompt + chosen, end="assistant")
        check_conversation(prompt + rejected, end="assistant")
        if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
            raise Bad("identical_answers")
        _prompt_fits(tokenizer, prompt, max_prompt_tokens, max_length)
        out.update(prompt=prompt, chosen=chosen, rejected=rejected, _key=_key(prompt))
    except Bad as bad:
        out["_reason"] = bad.reason
    return out


def label_of(value) -> bool:
    """True (desirable) or False (undesirable) from a bool or 1/0; raises Bad otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise Bad("not_a_label")


def unpaired_row(row: dict, cols: dict, roles: dict, tokenizer=None, max_prompt_tokens: int | None = None,
                 max_length: int | None = None) -> dict:
    """One answer to a prompt and whether it is desirable: text or conversational prompt and completion."""
    out = {"prompt": [], "completion": [], "label": False, "_reason": "", "_key": ""}
    try:
        prompt, completion = row[cols["prompt"]], row[cols["completion"]]
        prompt = messages_of(prompt, roles) if isinstance(prompt, list) else _user(prompt)
        completion = messages_of(completion, roles) if isinstance(completion, list) else _assistant(completion)
        label = label_of(row[cols["label"]])
        check_conversation(prompt + completion, end="assistant")
        _prompt_fits(tokenizer, prompt, max_prompt_tokens, max_length)
        out.update(prompt=prompt, completion=completion, label=label, _key=_key(prompt))
    except Bad as bad:
        out["_reason"] = bad.reason
    return out


def unpair(batch: dict) -> dict:
    """Checked preference pairs to unpaired rows (batched): each good pair gives its chosen answer labelled
    desirable and its rejected answer labelled undesirable; a bad pair stays one bad row with its reason."""
    out: dict = {"prompt": [], "completion": [], "label": [], "_reason": [], "_key": []}
    for prompt, chosen, rejected, reason, key in zip(batch["prompt"], batch["chosen"], batch["rejected"],
                                                     batch["_reason"], batch["_key"]):
        answers = [([], False)] if reason else [(chosen, True), (rejected, False)]
        for completion, label in answers:
            out["prompt"].append(prompt if not reason else [])
            out["completion"].append(completion)
            out["label"].append(label)
            out["_reason"].append(reason)
            out["_key"].append(key)
    return out
