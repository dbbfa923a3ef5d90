"""How a local generator turns a conversation into a prompt and its new tokens into an answer.

The AI-feedback and evaluation backends (feedback/backends.py) generate with these, and the token-parity check
(runtime/parity.py) compares their tokens with what training sees, so both use the same code without the parity
check importing the feedback package.
"""

from __future__ import annotations

from ..core.schema import HardwareConfig
from . import modeling

ENCODE = {"add_special_tokens": False}  # the rendered template already holds its special tokens (BOS ...)
DECODE = {"skip_special_tokens": True}


def generator_tokenizer(model: str, model_cfg: dict | None = None, hardware: HardwareConfig | dict | None = None,
                        where: str = "model"):
    """(tokenizer with the chat template generation uses, placement) of a local generator; no weights."""
    cfg, placement = modeling.standalone(model, model_cfg, hardware, "generation")
    return modeling.load_tokenizer(cfg, where=where), placement, cfg


def prompt_texts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """The prompts a local generator feeds the model: the chat template with the generation prompt."""
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


def answer_text(tokenizer, ids) -> str:
    """A generated answer's text from its new tokens (special tokens dropped, white space trimmed)."""
    return tokenizer.decode(ids, **DECODE).strip()
