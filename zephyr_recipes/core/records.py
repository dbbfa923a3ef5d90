"""What a finished run folder holds besides weights: provenance, metrics, a model card (the curves: ``curves``)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from . import greedy
from .recipe import Recipe
from .schema import TrainerStageConfig

PACKAGES = ("zephyr-recipes", "torch", "transformers", "trl", "datasets", "accelerate", "hydra-core",
            "omegaconf", "tokenizers", "flash-attn", "peft", "deepspeed")
# KEY=VALUE whose key (its last dotted part) names a secret: token, hf_token, api_key, secret, password ... but not
# a count of tokens (max_new_tokens) or a vocabulary entry (pad_token); values that look like keys; passwords in URLs.
SECRET_ARG = re.compile(r"((?:^|(?<=[\s.+~]))(?:[\w-]*_)?(?:token|api_?key|secret|password|credentials?)=)\S+", re.I)
VOCABULARY = re.compile(r"(?:^|(?<=[\s.+~]))(?:pad|eos|bos|unk|sep|cls|mask)_token=", re.I)
SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,})\b")
URL_USER = re.compile(r"(\w+://)[^/\s@]+@")


def redact(text: str) -> str:
    """Mask secrets only (keys, tokens, credentials, a URL's user and password), never numbers or names: a redacted
    command still runs once the secrets are put back from the environment."""
    def arg(m: re.Match) -> str:
        return m.group(0) if VOCABULARY.match(text, m.start()) else m.group(1) + "***"

    text = SECRET_ARG.sub(arg, text)
    return URL_USER.sub(r"\1***@", SECRET_VALUE.sub("***", text))


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> dict | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip() != ""
        return {"commit": rev, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(argv: list[str], recipe: str, placement, data_info: dict, extra: dict) -> dict:
    return {
        "command": redact(" ".join(argv)),
        "recipe": recipe,
        "versions": versions(),
        "git": git_revision(),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "python": sys.executable},
        "placement": None if placement is None else {
            "device": placement.device, "attn_implementation": placement.attn_implementation,
            "precision": placement.precision, "weights": getattr(placement, "weights", placement.precision),
            "load_in_4bit": getattr(placement, "load_in_4bit", False)},
        "data": data_info,
        **extra,
    }


def _tracking_line(prov: dict) -> str:
    t = prov.get("tracking")
    if not t:
        return ""
    return (f"- Tracking: trackio project `{t['project']}`, run `{t['run']}`, local store `{t['store']}`; "
            f"dashboard: `{t['dashboard']}`\n")


def model_card(recipe: Recipe[TrainerStageConfig], prov: dict, metrics: dict, curves: list[str], usage: str,
               config_class: str) -> str:
    """README of a trained run folder: what was trained on what, how to use it, its trainer arguments and figures."""
    stage, model, ds = recipe.stage, recipe.model, recipe.dataset
    trainer = yaml.safe_dump(stage.trainer, sort_keys=True).strip()
    final = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in metrics.items())
    ref = f"\nReference model: `{prov['reference_model']}`\n" if prov.get("reference_model") else ""
    return f"""---
library_name: transformers
tags: [zephyr-recipes, {stage.name}, trl]
base_model: {model.name_or_path}
datasets: [{ds.path}]
---

# {recipe.run.name}

{stage.name.upper()} of `{model.name_or_path}` on `{ds.path}` (split `{ds.train_split}`), trained with
[zephyr-recipes](https://pypi.org/project/zephyr-recipes/) recipe `{prov['recipe']}` on TRL {prov['versions'].get('trl', '?')}.
{recipe.recipe.description or ''}
{ref}
## Use

{usage}
## Training

- Device: {prov['placement']['device']}, precision {prov['placement']['precision']}, attention {prov['placement']['attn_implementation']}
{_distributed_line(prov)}{_tokenizer_lines(prov)}- Training rows: {prov['data'].get('train', {}).get('rows', '?')}
- Reproduce: `{prov['command']}` (the resolved config is `config.yaml` beside this card)
{_tracking_line(prov)}
Trainer arguments (trl.{config_class}):

```yaml
{trainer}
```

## Results

| metric | value |
| --- | --- |
{final}

{'![training curves](training_curves.png)' if curves else ''}
"""


def _tokenizer_lines(prov: dict) -> str:
    """Chat template, pad token and any embedding resize: what a user of the weights must know."""
    tok = prov.get("tokenizer") or {}
    lines = []
    if tok.get("chat_template"):
        t = tok["chat_template"]
        how = {"recipe": "set by the recipe (model.chat_template)", "tokenizer": "the tokenizer's own",
               "trl": "TRL's training version of the tokenizer's own (same text, assistant turns marked)",
               "shipped-twin": "the shipped twin of the tokenizer's own template (renders the same text, "
                               "assistant turns marked)"}.get(t.get("source"), t.get("source"))
        lines.append(f"- Chat template: `{t.get('name')}`, {how}; saved with the tokenizer\n")
    if tok.get("pad_token") and tok["pad_token"].get("how") != "the tokenizer's own":
        lines.append(f"- Pad token: `{tok['pad_token']['pad_token']}`, {tok['pad_token']['how']}\n")
    if tok.get("resized_embeddings"):
        r = tok["resized_embeddings"]
        lines.append(f"- Embedding matrix resized from {r['from']} to {r['to']} rows to fit the tokenizer\n")
    return "".join(lines)


def _distributed_line(prov: dict) -> str:
    d = prov.get("distributed")
    if not d:
        return ""
    return (f"- Processes: {d['world_size']} on {d['nodes']} node(s), strategy {d['strategy']}, launcher {d['launcher']}; "
            f"global batch {d['global_batch_size']}\n")


def final_metrics(log_history: list[dict]) -> dict:
    out = {}
    for h in log_history:
        for k, v in h.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)):
                out[k] = v
    losses = [h["loss"] for h in log_history if "loss" in h]
    if losses:
        out["first_loss"] = losses[0]
        out["last_loss"] = losses[-1]
    return out


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _critique_line(summary: dict) -> str:
    c = summary.get("critique")
    if not c:
        return ""
    return (f"\n- Critiques (overall_score, UltraFeedback's annotate_critique.py): {c['critiques']}, "
            f"{c['critique_failures']} failures; overall_score fix (fix_overall_score_issue.py) on the scores of 10: "
            f"{c['overall_score_fix']}")


def dataset_card(recipe: Recipe, prov: dict, summary: dict) -> str:
    """README of an AI feedback run folder: what answered, what judged, what came out.

    ``recipe.stage`` is the AI-feedback stage's section (its generators and judge, each of the variant its type picks:
    a function generator has a ``function`` where the others have a ``model``)."""
    stage = recipe.stage
    gens = "\n".join(f"| {g.name} | {g.type} | {getattr(g, 'model', None) or getattr(g, 'function', None)} | "
                     f"{summary['mean_score_by_generator'].get(g.name, float('nan')):.2f} |"
                     for g in stage.generators)
    judge = stage.judge
    judged = getattr(judge, "module", None) or getattr(judge, "model", None)
    warned = "".join(f"- Warning: {w}\n" for w in greedy.warnings(recipe.config))
    return f"""---
tags: [zephyr-recipes, aif, preference]
---

# {recipe.run.name}

AI feedback on {summary['prompts']} prompts from `{recipe.dataset.path}` (split `{recipe.dataset.train_split}`):
{summary['completions']} completions, rated by a {judge.type} judge (`{judged}`),
binarized into {summary['pairs']['train_prefs']} training and {summary['pairs']['test_prefs']} test pairs
(rejected: {summary['binarize']['rejected']}, score: {summary['binarize']['score']}).

| generator | type | model | mean rating (1-5) |
| --- | --- | --- | --- |
{gens}

- `data/`: pairs in the ultrafeedback_binarized schema (splits train_prefs, test_prefs); train on them with
  `zephyr-recipes tiny/dpo dataset.path={recipe.run.output_dir}`
- `raw/`: rated completions in the openbmb/UltraFeedback schema
- `completions.jsonl`, `ratings.jsonl`: every answer and rating as it arrived; `summary.json`: the figures
- Judge protocol: {(summary.get('judge_protocol') or {}).get('text', 'not recorded')}{_critique_line(summary)}
- Judge failures: {summary['judge_failures']}; generation failures: {summary['generation_failures'] or 0};
  self-agreement: {summary['self_agreement'] or 'not measured'}
- Reproduce: `{prov['command']}`
{warned}"""
