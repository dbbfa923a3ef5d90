"""README of an evaluation run folder: one section per benchmark, written by the benchmark."""

from __future__ import annotations

from .. import benchmarks
from ..core.recipe import Recipe
from ..feedback.judge_registry import pipeline_check


def _judge_text(judge: dict) -> str:
    if not judge:
        return "-"
    return f"{judge.get('type')} `{judge.get('module') or judge.get('model') or '-'}`"


def eval_card(recipe: Recipe, prov: dict, scores: dict) -> str:
    ran = [b for b in benchmarks.all_benchmarks() if scores.get(b.name) is not None]
    imported = {b.name: scores[b.name].get("answers_from") for b in ran if isinstance(scores[b.name], dict)
                and scores[b.name].get("answers_from")}
    generated = [b for b in ran if b.name not in imported]
    if generated:
        subject = f"Evaluation of `{recipe.model.name_or_path}` (model id `{scores['model_id']}`)"
        front = f"base_model: {recipe.model.name_or_path}\n"
    else:  # nothing was generated: the answers came from files, not from model.name_or_path
        models = sorted({str(v.get("model") or "?") for v in imported.values()})
        subject = f"Evaluation of answers read from files (model {', '.join(models)}; id `{scores['model_id']}`)"
        front = ""
    lines = [f"---\ntags: [zephyr-recipes, evaluation]\n{front}---\n", f"# {recipe.run.name}\n",
             f"{subject}, recipe `{prov['recipe']}`.\n"]
    judges = {b.name: scores[b.name].get("judge") or {} for b in ran if b.asks}
    if judges:
        kinds = {_judge_text(j) for j in judges.values()}
        text = f"Judge: {kinds.pop()}." if len(kinds) == 1 else \
            "Judges: " + "; ".join(f"{benchmarks.get(n).title}: {_judge_text(j)}" for n, j in judges.items()) + "."
        if any(pipeline_check(j) for j in judges.values()):
            text += (" A function judge is a pipeline check, not a quality measure: its figures are only comparable "
                     "with runs judged by the same function, never with published GPT-4-judged numbers.")
        lines.append(text + "\n")
    for b in ran:
        lines += b.card(benchmarks.typed_section(b, getattr(recipe.stage, b.name)), scores[b.name])
        src = imported.get(b.name)
        if src:
            lines.append(f"Answers read from `{src['file']}` (model {src.get('model') or '?'}; "
                         f"{src.get('missing', 0)} prompt(s) without an answer skipped).\n")
    lines.append(f"Reproduce: `{prov['command']}` (the resolved config is `config.yaml` beside this card). "
                 f"Compare runs: `zephyr-recipes report {recipe.run.output_dir} <other eval runs>`.\n")
    return "\n".join(lines)
