"""Show rows exactly as the trainer will see them, and how long they are. Tokenizer only, no weights.

Tokenization is the one TRL's trainers use (:mod:`.tokens`); which applies is the row kind's choice
(:mod:`.kinds`). Packing is measured with ``trl.pack_dataset``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.recipe import Recipe, as_recipe
from . import load_for_stage
from .tokens import CUT, MASKED, TRAINED, tokenize_completion, tokenize_dpo, tokenize_sft  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .kinds import RowKind

ANSI = {TRAINED: "\x1b[1;32m", MASKED: "\x1b[2m", CUT: "\x1b[9;31m"}
PLAIN = {TRAINED: ("[[", "]]"), MASKED: ("", ""), CUT: ("<<cut:", ">>")}


def render(tokenizer, pairs, color: bool) -> str:
    out: list[str] = []
    group: list[int] = []
    state: Any = None  # the label of the tokens in group (TRAINED, MASKED or CUT)
    for tok, s in pairs + [(None, None)]:
        if s != state and group:
            text = tokenizer.decode(group)
            if color:
                out.append(f"{ANSI[state]}{text}\x1b[0m")
            else:
                a, b = PLAIN[state]
                out.append(f"{a}{text}{b}")
            group = []
        state = s
        if tok is not None:
            group.append(tok)
    return "".join(out)


def _percentile(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def padding_share(lengths: list[int], batch: int, seed: int) -> float:
    """Share of padding when rows are batched at random and padded to each batch's longest row."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    padded = real = 0
    for i in range(0, len(order), batch):
        chunk = order[i:i + batch]
        padded += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1 - real / padded if padded else 0.0


def packed_lengths(lengths: list[int], max_length: int, strategy: str = "bfd") -> list[int]:
    import datasets
    from trl import pack_dataset

    ds = datasets.Dataset.from_dict({"input_ids": [[0] * n for n in lengths]})
    packed = pack_dataset(ds, seq_length=max_length, strategy=strategy)
    return [len(x) for x in packed["input_ids"]]


def stats(lengths: list[int], trainer: dict, kind, seed: int) -> dict:
    """Length statistics of the sequences of a (:mod:`.kinds`) kind's rows."""
    limit = trainer.get("max_length")
    batch = int(trainer.get("per_device_train_batch_size") or 8)
    capped = [min(n, limit) if limit else n for n in lengths]
    out = {"rows": len(lengths), "p50": _percentile(lengths, 50), "p95": _percentile(lengths, 95),
           "max": max(lengths), "max_length": limit,
           "truncated_share": sum(n > limit for n in lengths) / len(lengths) if limit else 0.0,
           "padding_share": padding_share(capped, kind.sequences * batch, seed)}
    if kind.packs and limit:
        packed = packed_lengths(lengths, limit, trainer.get("packing_strategy") or "bfd")
        out["packed_rows"] = len(packed)
        out["padding_share_packed"] = padding_share(packed, batch, seed)
    return out


def histogram(lengths: list[int], limit: int | None, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.hist(lengths, bins=min(60, max(10, len(set(lengths)))), color="#4477aa")
    if limit:
        ax.axvline(limit, color="#cc3311", linestyle="--", label=f"max_length {limit}")
        ax.legend()
    ax.set_xlabel("tokens per sequence")
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def preview(recipe: Recipe | dict, tokenizer, kind: RowKind, n: int = 3, sample: int = 2000,
            out_dir: str | Path | None = None, color: bool | None = None, stream=None) -> dict:
    """Print ``n`` training rows (of ``kind``, the stage's rows) as the trainer sees them and length statistics
    over ``sample`` rows."""
    stream = stream or sys.stdout
    color = stream.isatty() if color is None else color
    recipe = as_recipe(recipe)
    stage, trainer, seed = recipe.stage.name, recipe.stage.trainer, recipe.run.seed
    train, _, info = load_for_stage(recipe, tokenizer, kind)
    rows = train.shuffle(seed=seed).select(range(min(sample, len(train))))
    w = stream.write
    legend = (f"{ANSI[TRAINED]}trained\x1b[0m {ANSI[MASKED]}masked\x1b[0m {ANSI[CUT]}cut by max_length\x1b[0m"
              if color else "[[trained]] masked <<cut: cut by max_length>>")
    hit = "cache hit" if info["cache"]["hit"] else "prepared"
    w(f"{stage} data of {info['path']}: {len(train)} training rows ({hit})\n")
    w(f"legend: {legend}\n")
    lengths: list[int] = []
    trained: list[int] = []
    labels: list[str] = []
    for i, row in enumerate(rows):
        seqs = kind.tokenize(tokenizer, row, trainer)
        labels.extend(label for label in seqs if label and label not in labels)
        for label, pairs in seqs.items():
            lengths.append(len(pairs))
            trained.append(sum(s == TRAINED for _, s in pairs))
            if i < n:
                head = f"--- example {i + 1}{' ' + label if label else ''} ({len(pairs)} tokens, " \
                       f"{sum(s == TRAINED for _, s in pairs)} trained) ---"
                w(f"\n{head}\n{render(tokenizer, pairs, color)}\n")
    result = stats(lengths, trainer, kind, seed)
    result["trained_token_share"] = sum(trained) / max(1, sum(min(n_, result["max_length"] or n_) for n_ in lengths))
    result["sampled_rows"], result["train_rows"] = len(rows), len(train)
    w(f"\ntoken lengths over {len(rows)} of {len(train)} rows"
      f"{' (' + ' and '.join(labels) + ' sequences)' if labels else ''}:\n")
    w(f"  p50 {result['p50']}  p95 {result['p95']}  max {result['max']}  max_length {result['max_length']}\n")
    w(f"  truncated at max_length: {result['truncated_share']:.1%}\n")
    w(f"  padding without packing: {result['padding_share']:.1%}\n")
    if "padding_share_packed" in result:
        w(f"  padding with packing:    {result['padding_share_packed']:.1%} "
          f"({len(lengths)} rows into {result['packed_rows']} packed rows)\n")
    w(f"  trained tokens: {result['trained_token_share']:.1%}\n")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        histogram(lengths, result["max_length"], f"{recipe.run.name}: {stage} token lengths", out / "lengths.png")
        (out / "preview.json").write_text(json.dumps({"stats": result, "data": info}, indent=2, default=str) + "\n")
        result["histogram"] = str(out / "lengths.png")
        w(f"  histogram: {out / 'lengths.png'}\n")
    return result
