"""Row kinds: what one prepared row of a stage's dataset is, declared once.

A stage says which kind it reads (``Stage.rows``); everything that handles rows asks the kind instead of comparing
names: the loader (which columns to map, which row check, how to convert a source of another kind), the cache key
(the kind's name and version), the chat-template check and ``preview`` (the conversations of a row and how the
trainer tokenizes them), the plan (sequences per row) and ``rehearse`` (a stand-in row).

The kinds:

  chat      ``messages``: one conversation ending on an assistant turn (dSFT)
  pairs     ``prompt`` / ``chosen`` / ``rejected``: two answers to one prompt, the first preferred (dDPO, reward)
  unpaired  ``prompt`` / ``completion`` / ``label``: one answer and whether it is desirable (KTO, binary
            feedback); converted from pairs on load, each pair giving a desirable and an undesirable row
  prompts   a prompt to answer (AI feedback reads these itself; no trainer sees them)

Adding a kind is a :class:`RowKind` subclass here, an instance passed to :func:`register` (an installed
package: the entry-point group ``zephyr_recipes.row_kinds``), and (if it needs one)
a row check in :mod:`.checks`; docs/row-kinds.md walks through it.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from ..core.errors import ZephyrError, did_you_mean
from ..core.recipe import Recipe
from ..core.registry import Registry
from . import checks
from .tokens import tokenize_completion, tokenize_dpo, tokenize_sft

Conversation = list[dict]


class RowKind:
    """One kind of prepared row. Subclasses set the class attributes and the methods a trainer's rows need."""

    name: ClassVar[str]
    # Bumped whenever prepared rows of this kind change shape or meaning: it is part of the prepared-rows cache
    # key, so rows cached by an older version are never read as this one.
    version: ClassVar[int] = 1
    summary: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()  # the columns of a prepared row
    source_keys: ClassVar[tuple[str, ...]] = ()  # the dataset.columns keys that map a source onto this kind
    sequences: ClassVar[int] = 1  # conversations of one row that go through the model together
    packs: ClassVar[bool] = False  # rows may be packed (trainer.packing): the preview measures it
    limits_prompts: ClassVar[bool] = False  # dataset.max_prompt_tokens applies (the check drops long prompts)
    converts_from: ClassVar[tuple[str, ...]] = ()  # kinds whose sources are converted into this one on load
    # The reasons of its row check that checks.REASONS lacks, with what each says of a row ("has a score that is
    # not a number"): added to checks.EXPLAIN when the class is made, for the message of dataset.strict.
    reasons: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for reason, says in cls.reasons.items():
            if checks.EXPLAIN.setdefault(reason, says) != says:
                raise ZephyrError(f"row kind {cls.__name__} explains the reason {reason!r} otherwise than "
                                  f"checks.EXPLAIN ({checks.EXPLAIN[reason]!r})",
                                  "give the kind's reason a name of its own")

    def __repr__(self) -> str:
        return f"<row kind {self.name} v{self.version}>"

    # --- loading -----------------------------------------------------------------------------------------------
    def fits(self, src: dict, column_names: list[str]) -> bool:
        """Whether a source (its dataset.columns mapping and its column names) holds rows of this kind."""
        return True

    def source_columns(self, src: dict, column_names: list[str]) -> dict:
        """Our column -> the source's column; raises ZephyrError naming a missing column and the mapping to set."""
        raise NotImplementedError

    def check(self, recipe: Recipe, tokenizer) -> tuple[Callable, dict]:
        """(row check of :mod:`.checks`, its options besides cols and roles) for this kind's rows."""
        raise NotImplementedError

    def features(self):
        """The datasets features of a checked row of this kind (with _reason and _key)."""
        raise NotImplementedError

    def convert(self, checked, source: "RowKind", seed: int):
        """Checked rows of ``source`` (one of :attr:`converts_from`) as checked rows of this kind."""
        raise ZephyrError(f"rows of kind {source.name} cannot be read as {self.name} rows",
                          f"give the stage a dataset of {self.name} rows ({', '.join(self.columns)})")

    # --- what the model sees -----------------------------------------------------------------------------------
    def conversations(self, row: dict) -> dict[str, Conversation]:
        """The conversations of one prepared row that go through the model, by label ("" when there is one)."""
        raise NotImplementedError

    def conversation(self, row: dict) -> Conversation:
        """The row's first conversation: what the chat-template check renders."""
        return next(iter(self.conversations(row).values()))

    def tokenize(self, tokenizer, row: dict, trainer: dict) -> dict[str, list[tuple[int, str]]]:
        """(token id, trained | masked | cut) per conversation, as the stage's TRL trainer tokenizes the row."""
        raise NotImplementedError

    # --- stand-ins ---------------------------------------------------------------------------------------------
    def example(self, instruction: str, answer: str, wrong: str, index: int) -> dict:
        """A stand-in row in a source's (unmapped) form, for rehearsals: a right and a wrong answer to offer."""
        user = [{"role": "user", "content": instruction}]
        return {"prompt": instruction, "messages": user + [{"role": "assistant", "content": answer}]}


def _column(src: dict, column_names: list[str], wanted: str, *fallbacks: str) -> str:
    """The source's column for our ``wanted`` one: the mapping's, else ``wanted`` or a fallback that is there."""
    cols = src.get("columns") or {}
    col = cols.get(wanted)
    if col is None:
        col = next((c for c in (wanted, *fallbacks) if c in column_names), wanted)
    if col not in column_names:
        raise ZephyrError(f"dataset {src['path']} has no column {col!r} (it has: {', '.join(column_names)})",
                          f"map the stage's `{wanted}` onto one of its columns: "
                          f"{src.get('where', 'dataset')}.columns.{wanted}=<column>")
    return col


def _has(src: dict, column_names: list[str], wanted: str) -> bool:
    return (src.get("columns") or {}).get(wanted, wanted) in column_names


def _prompt_limits(recipe: Recipe, tokenizer) -> dict:
    """The options of a check that drops prompts too long for dataset.max_prompt_tokens or the trainer's
    max_length (not under keep_end truncation: TRL keeps the answer's end then, so a long prompt still trains)."""
    trainer = recipe.stage.trainer
    limit, max_length = recipe.dataset.max_prompt_tokens, trainer.get("max_length")
    if trainer.get("truncation_mode", "keep_start") == "keep_end":
        max_length = None
    return {"max_prompt_tokens": limit, "max_length": max_length,
            "tokenizer": tokenizer if (limit or max_length) else None}


class Chat(RowKind):
    name = "chat"
    summary = "one conversation ending on an assistant turn (dSFT)"
    columns = ("messages",)
    source_keys = ("messages", "prompt", "completion")
    packs = True

    def source_columns(self, src, column_names):
        if "completion" in (src.get("columns") or {}):  # prompt / completion text pairs
            return {"prompt": _column(src, column_names, "prompt"),
                    "completion": _column(src, column_names, "completion")}
        return {"messages": _column(src, column_names, "messages", "conversations")}

    def check(self, recipe, tokenizer):
        return checks.sft_row, {}

    def features(self):
        return checks.features({"messages": checks.message_list()})

    def conversations(self, row):
        return {"": row["messages"]}

    def tokenize(self, tokenizer, row, trainer):
        return {"": tokenize_sft(tokenizer, row["messages"], trainer)}


class Pairs(RowKind):
    name = "pairs"
    summary = "two answers to one prompt, the first preferred (dDPO, reward modelling)"
    columns = ("prompt", "chosen", "rejected")
    source_keys = ("prompt", "chosen", "rejected")
    sequences = 2
    limits_prompts = True

    def fits(self, src, column_names):
        return _has(src, column_names, "chosen") and _has(src, column_names, "rejected")

    def source_columns(self, src, column_names):
        out = {"chosen": _column(src, column_names, "chosen"), "rejected": _column(src, column_names, "rejected")}
        if "prompt" in (src.get("columns") or {}) or "prompt" in column_names:
            # ultrafeedback_binarized's text `prompt` sits next to whole chosen/rejected conversations; there the
            # conversations are the truth and the row check splits the prompt off them.
            out["prompt"] = _column(src, column_names, "prompt")
        return out

    def check(self, recipe, tokenizer):
        return checks.dpo_row, _prompt_limits(recipe, tokenizer)

    def features(self):
        m = checks.message_list()
        return checks.features({"prompt": m, "chosen": m, "rejected": m})

    def conversations(self, row):
        return {k: list(row["prompt"]) + list(row[k]) for k in ("chosen", "rejected")}

    def tokenize(self, tokenizer, row, trainer):
        return {k: tokenize_dpo(tokenizer, row, trainer, k) for k in ("chosen", "rejected")}

    def example(self, instruction, answer, wrong, index):
        user = [{"role": "user", "content": instruction}]
        return {"prompt": user, "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": wrong}],
                "messages": user + [{"role": "assistant", "content": answer}],
                "score_chosen": 8.0, "score_rejected": 3.0}


class Unpaired(RowKind):
    name = "unpaired"
    summary = "one answer to a prompt and whether it is desirable (KTO, binary feedback)"
    columns = ("prompt", "completion", "label")
    source_keys = ("prompt", "completion", "label")
    limits_prompts = True
    converts_from = ("pairs",)

    def fits(self, src, column_names):
        return _has(src, column_names, "label")

    def source_columns(self, src, column_names):
        return {k: _column(src, column_names, k) for k in self.columns}

    def check(self, recipe, tokenizer):
        return checks.unpaired_row, _prompt_limits(recipe, tokenizer)

    def features(self):
        import datasets

        m = checks.message_list()
        return checks.features({"prompt": m, "completion": m, "label": datasets.Value("bool")})

    def convert(self, checked, source, seed):
        """Pairs -> unpaired: each pair's chosen answer desirable, its rejected one undesirable, then shuffled
        (seeded). TRL's KTOTrainer reads rows in order and estimates its KL term from each row's neighbours in the
        batch, so the two answers of one prompt must not sit side by side."""
        if not isinstance(source, Pairs):
            return super().convert(checked, source, seed)
        out = checked.map(checks.unpair, batched=True, remove_columns=checked.column_names,
                          features=self.features(), desc="pairs -> unpaired rows")
        return out.shuffle(seed=seed).flatten_indices()

    def conversations(self, row):
        return {"": list(row["prompt"]) + list(row["completion"])}

    def tokenize(self, tokenizer, row, trainer):
        label = "desirable" if row["label"] else "undesirable"
        return {label: tokenize_completion(tokenizer, row["prompt"], row["completion"], trainer)}

    def example(self, instruction, answer, wrong, index):
        good = index % 2 == 0
        return {"prompt": [{"role": "user", "content": instruction}],
                "completion": [{"role": "assistant", "content": answer if good else wrong}], "label": good}


class Prompts(RowKind):
    name = "prompts"
    summary = "a prompt to answer (AI feedback reads these itself)"
    columns = ("prompt",)
    source_keys = ("prompt",)


def _unknown(name, known: list[str]) -> tuple[str, str]:
    return f"{name!r} is not a row kind", did_you_mean(str(name), known) or f"use one of: {', '.join(known)}"


# The row kinds: the ones below, registered as they are made, then those of installed packages (the entry-point
# group zephyr_recipes.row_kinds, each naming a RowKind instance or a module whose KIND is one).
KINDS: Registry[RowKind] = Registry("row kind", "zephyr_recipes.row_kinds", "KIND", None, RowKind, _unknown)


def register(kind: RowKind) -> RowKind:
    """Add a kind to the registry (its name must be new); returns it, so `FOO = register(Foo())` reads well."""
    return KINDS.add(kind.name, kind)


def get(name: Any) -> RowKind:
    """The kind called ``name``, or an error listing the kinds."""
    if isinstance(name, RowKind):
        return name
    return KINDS.get(name)


def source_kind(kind: RowKind, src: dict, column_names: list[str]) -> RowKind:
    """The kind a source's rows are checked as: the stage's own kind, or one it converts from when the source
    holds that instead (a pairs dataset read by an unpaired stage)."""
    if kind.fits(src, column_names):
        return kind
    for name in kind.converts_from:
        other = get(name)
        if other.fits(src, column_names):
            return other
    return kind  # its own column check names what is missing


CHAT = register(Chat())
PAIRS = register(Pairs())
UNPAIRED = register(Unpaired())
PROMPTS = register(Prompts())
