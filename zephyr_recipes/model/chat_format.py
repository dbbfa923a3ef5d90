"""Chat templates for training: which one a run uses, and whether it trains what the model will be asked.

Training on assistant turns only (``assistant_only_loss``) needs a template whose assistant content sits inside
``{% generation %}`` markers, and most published templates have none. :func:`choose` decides, from the tokenizer
alone and before any weights load:

1. the recipe's ``model.chat_template`` (a shipped name or a ``.jinja`` file), or else the tokenizer's own;
2. with ``assistant_only_loss`` and no markers: TRL's own training version of that template, where TRL has one;
3. else a shipped template that renders exactly the same text on a set of probe conversations (the marked
   twin of the model's format);
4. else a refusal that names the fixes.

:func:`check_rows` then renders real rows of the recipe's data through the chosen template and checks what
matters for training: every row renders, each assistant turn ends on an end-of-turn token that is trained, every
row has trained tokens, and the generation prompt is exactly the text that starts an assistant turn.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.errors import ZephyrError
from ..core.recipe import section_of
from ..core.schema import ModelConfig

log = logging.getLogger("zephyr_recipes")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Probe conversations for "renders the same text": with and without a system message, several turns, content
# with surrounding white space (templates that trim it differ from those that don't), and generation prompts.
_PROBES: list[tuple[list[dict], bool]] = [
    ([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}], False),
    ([{"role": "user", "content": " Sort: 3 1 2 "}, {"role": "assistant", "content": " 1 2 3\n"},
      {"role": "user", "content": "And reversed?"}, {"role": "assistant", "content": "3 2 1"}], False),
    ([{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello."}], False),
    ([{"role": "user", "content": "Count: a b c"}], True),
    ([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Count: a b"}], True),
    ([{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
      {"role": "user", "content": "Three"}], True),
]


@dataclass
class TemplateChoice:
    """The chat template a run trains with, and how it was chosen (recorded in provenance and the card)."""

    source: str  # recipe | tokenizer | trl | shipped-twin
    name: str  # a shipped name, a file, "the tokenizer's own" ...
    text: str = field(repr=False)
    note: str = ""

    def record(self) -> dict:
        out = asdict(self)
        out.pop("text")
        return out


def shipped_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES.glob("*.jinja"))


def template_text(spec: str) -> str:
    """A shipped template's text by name, or a .jinja file's."""
    shipped = TEMPLATES / f"{spec}.jinja"
    if shipped.is_file():
        return shipped.read_text()
    path = Path(spec).expanduser()
    if path.is_file():
        return path.read_text()
    raise ZephyrError(f"model.chat_template={spec!r} is neither a shipped template nor a file",
                      f"use one of {', '.join(shipped_names())}, a path to a .jinja file, or null for the "
                      "tokenizer's own")


def has_generation_markers(text: str) -> bool:
    return re.search(r"\{%-?\s*generation\s*-?%\}", text or "") is not None


def _own_template(tokenizer) -> str | None:
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):
        own = own.get("default")
    return own or None


def render(tokenizer, template: str, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def _outcome(tokenizer, template: str, messages, gen: bool):
    try:
        return ("text", render(tokenizer, template, messages, gen))
    except Exception as exc:  # a template that refuses a conversation (no system role ...) raises
        return ("refused", type(exc).__name__)


def renders_like(tokenizer, a: str, b: str) -> bool:
    """True when two templates render the same text for every probe (and refuse the same probes)."""
    rendered = 0
    for messages, gen in _PROBES:
        oa, ob = _outcome(tokenizer, a, messages, gen), _outcome(tokenizer, b, messages, gen)
        if oa[0] != ob[0] or (oa[0] == "text" and oa[1] != ob[1]):
            return False
        rendered += oa[0] == "text"
    return rendered >= 3  # at least the plain user/assistant probes rendered


def shipped_twin(tokenizer, text: str) -> str | None:
    """The shipped (marked) template that renders exactly like ``text``, if one does."""
    for name in shipped_names():
        if renders_like(tokenizer, text, template_text(name)):
            return name
    return None


def _trl_training_template(tokenizer, text: str) -> str | None:
    """TRL's training version of ``text`` when TRL knows the template; None when it does not."""
    from trl.chat_template_utils import get_training_chat_template

    saved = tokenizer.chat_template
    tokenizer.chat_template = text
    try:
        return get_training_chat_template(tokenizer)
    except (ValueError, TypeError):
        return None
    finally:
        tokenizer.chat_template = saved


def choose(tokenizer, model_cfg: ModelConfig | dict, assistant_only: bool, model_name: str | None = None,
           where: str = "model") -> TemplateChoice:
    """Pick the template a run trains with, or refuse with the fix. Needs the tokenizer only. ``where``: the
    recipe's key of ``model_cfg`` (``model``; ``stage.generators.0.model_config`` for a generator), which the
    fix names."""
    if isinstance(model_cfg, dict):  # a mapping that leaves the template out keeps the tokenizer's own
        model_cfg = section_of(ModelConfig, {"name_or_path": "the model", "chat_template": None, **model_cfg})
    model_name = model_name or model_cfg.name_or_path
    spec = model_cfg.chat_template
    if spec:
        text, source, name = template_text(spec), "recipe", str(spec)
    else:
        own = _own_template(tokenizer)
        if not own:
            raise ZephyrError(
                f"the tokenizer of {model_name} has no chat template (a base model's usually has none)",
                f"set {where}.chat_template=zephyr (the Zephyr recipes' format) or another shipped template "
                f"({', '.join(shipped_names())}), or a path to a .jinja file")
        text, source, name = own, "tokenizer", "the tokenizer's own"
    if not assistant_only or has_generation_markers(text):
        return TemplateChoice(source, name, text, f"chat template: {name}")
    patched = _trl_training_template(tokenizer, text)
    if patched:
        return TemplateChoice("trl", f"TRL's training version of {name}", patched,
                              f"chat template: {name} has no generation markers; using TRL's training version of it "
                              "(same text, assistant turns marked)")
    twin = shipped_twin(tokenizer, text)
    if twin:
        return TemplateChoice("shipped-twin", twin, template_text(twin),
                              f"chat template: {name} has no generation markers and renders exactly like the shipped "
                              f"`{twin}` template, which marks assistant turns; training with `{twin}`")
    raise ZephyrError(
        f"stage.trainer.assistant_only_loss is true, and the chat template ({name} of {model_name}) has no "
        "{% generation %} markers; TRL cannot patch it and it renders like none of the shipped templates",
        f"set {where}.chat_template to the shipped template of the model's format ({', '.join(shipped_names())}), "
        "or to a .jinja file whose assistant turns sit inside {% generation %} ... {% endgeneration %}, "
        "or train on every token with stage.trainer.assistant_only_loss=false")


# ------------------------------------------------------------------------------------------- pad token
PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|finetune_right_pad|>", "<|padding|>")


def ensure_pad_token(tokenizer) -> dict:
    """Give a tokenizer without a pad token one: a padding token of its vocabulary, else the EOS; returns what
    was done (recorded in provenance and the card)."""
    if tokenizer.pad_token is not None:
        return {"pad_token": tokenizer.pad_token, "how": "the tokenizer's own"}
    vocab = tokenizer.get_vocab()
    for name in PAD_NAMES:
        if name in vocab and name != tokenizer.eos_token:
            tokenizer.pad_token = name
            return {"pad_token": name, "how": "a padding token of the vocabulary (the tokenizer named none)"}
    # No padding token in the vocabulary: the EOS. The unknown token is not used instead, as it is a real token
    # of some vocabularies, and the EOS is safe with the collators used (below).
    tokenizer.pad_token = tokenizer.eos_token
    return {"pad_token": tokenizer.eos_token,
            "how": "the EOS token, which is safe here: TRL's collators mark padding by position (attention mask "
                   "and -100 labels), not by token id, so EOS tokens inside the text are still trained"}


# ------------------------------------------------------------------------------------------- row checks
@dataclass
class RowCheck:
    rows: int = 0
    example: str = ""
    end_token: str = ""
    generation_prompt: str = ""
    problems: list[str] = field(default_factory=list)


def _turn_enders(tokenizer) -> set[int]:
    """The EOS and the added tokens that close a turn (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|> ...)."""
    ids = {tokenizer.eos_token_id}
    ids |= {i for t, i in tokenizer.get_added_vocab().items() if re.search(r"end|eot|eos", t, re.I)}
    return {i for i in ids if i is not None}


def _spans(mask: list[int]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def check_rows(tokenizer, data, kind, assistant_only: bool, limit: int = 200) -> RowCheck:
    """Render up to ``limit`` rows (of a row kind: :class:`zephyr_recipes.data.kinds.RowKind`, whose
    ``conversation(row)`` gives the messages) through the tokenizer's (already chosen) template and check them."""
    out = RowCheck()
    enders = _turn_enders(tokenizer)
    seen_prompt = False
    for i, row in enumerate(data):
        if i >= limit:
            break
        out.rows += 1
        messages = kind.conversation(row)
        try:
            enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=assistant_only)
        except Exception as exc:
            out.problems.append(f"row {i} does not render: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        ids = list(enc["input_ids"])
        has_answer = any(m.get("role") == "assistant" for m in messages)
        if assistant_only and has_answer:
            mask = list(enc.get("assistant_masks") or [])
            spans = _spans(mask)
            if not spans:
                out.problems.append(f"row {i} has an assistant turn and no trained tokens (the template marks none)")
                continue
            for start, end in spans:
                last = next((ids[j] for j in range(end - 1, start - 1, -1)
                             if tokenizer.decode([ids[j]]).strip()), None)
                if last not in enders:
                    out.problems.append(
                        f"row {i}: an assistant turn's trained tokens end on {tokenizer.decode([last])!r}, not on "
                        f"the EOS ({tokenizer.eos_token!r}) or an end-of-turn token: the model would not learn to stop")
                    break
                out.end_token = out.end_token or tokenizer.decode([last])
        elif has_answer:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            answer = next(m["content"] for m in reversed(messages) if m.get("role") == "assistant").strip()
            at = text.rfind(answer)
            after = text[at + len(answer):].lstrip() if at >= 0 else ""
            enders_text = [tokenizer.decode([t]) for t in enders]
            hit = next((t for t in enders_text if t and after.startswith(t)), None)
            if hit is None:
                out.problems.append(f"row {i}: the last assistant turn is not followed by the EOS "
                                    f"({tokenizer.eos_token!r}) or an end-of-turn token: the model would not "
                                    "learn to stop")
            else:
                out.end_token = out.end_token or hit
        if not seen_prompt and has_answer:
            seen_prompt = True
            problem = _check_generation_prompt(tokenizer, messages, out)
            if problem:
                out.problems.append(f"row {i}: {problem}")
    return out


def _check_generation_prompt(tokenizer, messages: list[dict], out: RowCheck) -> str | None:
    """The text the model is prompted with at inference must be exactly the text that opens an assistant turn."""
    k = next(j for j, m in enumerate(messages) if m.get("role") == "assistant")
    try:
        prompt = tokenizer.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[:k + 1], tokenize=False)
    except Exception as exc:
        return f"the generation prompt does not render: {exc}"
    out.generation_prompt = prompt[len(tokenizer.apply_chat_template(messages[:k], tokenize=False)):] \
        if _safe_prefix(tokenizer, messages[:k]) else ""
    if not full.startswith(prompt):
        return ("the generation prompt (add_generation_prompt=True) is not the text that starts an assistant turn "
                f"in training: the prompt ends {prompt[-40:]!r}, the trained conversation has "
                f"{full[len(prompt) - 40:len(prompt) + 20]!r} there; pipeline() would prompt the model with a text "
                "it never saw")
    answer = messages[k]["content"].strip()
    if answer and not full[len(prompt):].lstrip().startswith(answer[:20]):
        return ("after the generation prompt the trained conversation continues with "
                f"{full[len(prompt):len(prompt) + 40]!r}, not with the answer: the template inserts text the model "
                "would have to produce at inference")
    return None


def _safe_prefix(tokenizer, messages) -> bool:
    try:
        tokenizer.apply_chat_template(messages, tokenize=False)
        return True
    except Exception:
        return False


def explain(check: RowCheck) -> str:
    text = (f"rendered {check.rows} rows through the chat template: all render, each assistant turn ends on "
            f"{check.end_token or '?'!r}, every row has trained tokens" if not check.problems else
            f"rendered {check.rows} rows through the chat template: {len(check.problems)} problem(s)")
    if check.generation_prompt:
        text += (f"; generation prompt {check.generation_prompt!r} (what pipeline() prompts with is what training "
                 "continues from)")
    return text


def refuse(check: RowCheck, template_name: str) -> None:
    if not check.problems:
        return
    more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
    raise ZephyrError(f"the chat template ({template_name}) does not train these rows correctly: "
                      f"{check.problems[0]}{more}",
                      "pick the template of the model's format with model.chat_template (shipped: "
                      f"{', '.join(shipped_names())}) or a .jinja file, or fix the data; "
                      "`zephyr-recipes preview RECIPE` shows rows as the trainer sees them")
