"""Tokens as the trainer counts them: what TRL's ``num_tokens`` will say after training, before it starts.

TRL's trainers add up the attention mask of every training batch (``num_tokens`` in the logs): the tokens of each
row as the trainer tokenized it, after its truncation or packing, once per epoch. This module counts the same from
the prepared rows, with the same tokenization (the row kind's :meth:`~.kinds.RowKind.tokenize`, which mirrors TRL's
``apply_chat_template`` calls) and the trainer's rules for long rows:

- truncation (``max_length``, ``truncation_mode``): the tokens past the limit are not in the batch; a row left with
  no trained token is dropped (SFT's fully masked rows, DPO's and KTO's prompts that fill ``max_length``);
- packing (SFT, ``packing: true``): ``bfd`` cuts each row at ``max_length``, ``bfd_split`` and ``wrapped`` keep
  every token; nothing is dropped;
- ``overlong: drop`` (the reward trainer): a row with a sequence longer than ``max_length`` is dropped whole.

A large dataset is counted from a seeded sample of its rows and extrapolated; the result says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .tokens import CUT, TRAINED

SAMPLE = 2000  # rows tokenized at most; more are extrapolated from these


@dataclass
class TokenCount:
    """Tokens per epoch as the trainer's batches hold them, and how they were counted."""

    rows: int  # prepared training rows
    sampled: int  # rows tokenized
    kept_share: float  # share of the sampled rows the trainer keeps (the rest it drops)
    tokens_per_row: float  # mean tokens of a kept row (all its sequences: chosen + rejected for pairs)
    tokens_per_batch_row: float = 0.0  # mean tokens of one row of a batch: a packed row when packing, else a row

    @property
    def kept_rows(self) -> float:
        return self.rows * self.kept_share

    @property
    def tokens(self) -> float:
        """Tokens of one epoch."""
        return self.kept_rows * self.tokens_per_row

    @property
    def extrapolated(self) -> bool:
        return self.sampled < self.rows

    def describe(self) -> str:
        how = (f"counted on a sample of {self.sampled:,} of {self.rows:,} rows and extrapolated" if self.extrapolated
               else f"counted over all {self.rows:,} rows")
        dropped = f"; the trainer drops {1 - self.kept_share:.1%} of them as too long" if self.kept_share < 1 else ""
        packed = (f", packed {self.tokens_per_batch_row:,.0f} tokens per row of a batch"
                  if self.tokens_per_batch_row and round(self.tokens_per_batch_row) != round(self.tokens_per_row) else "")
        return f"{how}, {self.tokens_per_row:,.0f} tokens per row as the trainer tokenizes them{packed}{dropped}"


def row_tokens(seqs: dict[str, list[tuple[int, str]]], trainer: dict, packs: bool = False,
               overlong: str = "truncate") -> int | None:
    """Tokens of one row in the trainer's batches, from the row kind's tokenization ((token, state) per sequence),
    or None when the trainer drops the row."""
    limit = trainer.get("max_length")
    if packs and trainer.get("packing"):
        strategy = trainer.get("packing_strategy") or "bfd"
        return sum(min(len(s), limit) if limit and strategy == "bfd" else len(s) for s in seqs.values())
    if overlong == "drop":
        if any(state == CUT for s in seqs.values() for _, state in s):
            return None
        return sum(len(s) for s in seqs.values())
    total = 0
    for s in seqs.values():
        kept = [state for _, state in s if state != CUT]
        if TRAINED not in kept:
            return None
        total += len(kept)
    return total


def count(train, tokenizer, kind, trainer: dict, seed: int = 0, overlong: str = "truncate",
          sample: int = SAMPLE) -> TokenCount:
    """Count the tokens of ``train`` (prepared rows of ``kind``) as the stage's TRL trainer will see them."""
    n = len(train)
    picked = range(n) if n <= sample else sorted(random.Random(seed).sample(range(n), sample))
    rows = train.select(picked) if n > sample else train
    lengths = []
    for row in rows:
        got = row_tokens(kind.tokenize(tokenizer, row, trainer), trainer, kind.packs, overlong)
        if got is not None:
            lengths.append(got)
    sampled, kept = len(rows), len(lengths)
    per_row = sum(lengths) / kept if kept else 0.0
    per_batch_row = per_row
    if kind.packs and trainer.get("packing") and trainer.get("max_length") and lengths:
        from .preview import (
            packed_lengths,  # lazy: start-up; TRL's own pack_dataset: the rows of the trainer's batches
        )

        packed = packed_lengths(lengths, int(trainer["max_length"]), trainer.get("packing_strategy") or "bfd")
        per_batch_row = sum(packed) / len(packed)
    return TokenCount(rows=n, sampled=sampled, kept_share=kept / sampled if sampled else 0.0,
                      tokens_per_row=per_row, tokens_per_batch_row=per_batch_row)
