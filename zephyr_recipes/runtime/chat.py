"""`zephyr-recipes chat`: talk to a run folder or hub model through transformers' text-generation pipeline."""

from __future__ import annotations

import sys

from ..core.errors import ZephyrError
from ..model import modeling
from . import chatcheck


def load(model: str, chat_template: str | None = None, device: str | None = None):
    from transformers import pipeline

    source, tokenizer = chat_tokenizer(model, chat_template)
    try:
        return pipeline("text-generation", model=source, tokenizer=tokenizer, device=device)
    except (OSError, ValueError) as exc:
        raise modeling._hub_error(model, exc, "model") from None


def chat_tokenizer(model: str, chat_template: str | None = None):
    """(the model's local source, the tokenizer chat talks through, with its template and pad token); no weights."""
    from transformers import AutoTokenizer

    chatcheck.check_place(model)
    source = modeling.resolve_source(model, "model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise modeling._hub_error(model, exc, "the tokenizer of") from None
    if chat_template:
        tokenizer.chat_template = modeling.template_text(chat_template)
    elif not getattr(tokenizer, "chat_template", None):
        raise ZephyrError(f"{model} has no chat template", "pass --chat-template zephyr (or a .jinja file)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return source, tokenizer


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt tokens chat's text-generation pipeline feeds the model for ``messages`` (its own call:
    ``apply_chat_template`` with the generation prompt, as a dict of ids)."""
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, continue_final_message=False,
                                        return_dict=True)
    return list(enc["input_ids"])


def reply(pipe, messages: list[dict], max_new_tokens: int, temperature: float) -> str:
    messages, max_new_tokens = chatcheck.fit_context(pipe, messages, max_new_tokens)
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
              "pad_token_id": pipe.tokenizer.pad_token_id}
    if temperature > 0:
        kwargs["temperature"] = temperature
    out = pipe(messages, **kwargs)[0]["generated_text"]
    return (out[-1]["content"] if isinstance(out, list) else str(out)).strip() or "(no reply)"


def run(model: str, prompt: str | None, max_new_tokens: int = 256, temperature: float = 0.0,
        system: str | None = None, chat_template: str | None = None, device: str | None = None) -> int:
    chatcheck.check_values(max_new_tokens, temperature)
    chatcheck.check_model(model)
    pipe = load(model, chat_template, device)
    messages = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        messages.append({"role": "user", "content": prompt})
        print(reply(pipe, messages, max_new_tokens, temperature))
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {model}; /reset starts over, /exit (or Ctrl-D) ends", file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            messages = messages[:1] if system else []
            continue
        messages.append({"role": "user", "content": line})
        answer = reply(pipe, messages, max_new_tokens, temperature)
        messages.append({"role": "assistant", "content": answer})
        print(answer, flush=True)
    return 0
