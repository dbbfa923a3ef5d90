"""The Open LLM Leaderboard (v1) tasks through lm-evaluation-harness: ARC, HellaSwag, MMLU, TruthfulQA with the
leaderboard's few-shot counts and metrics. No judge: the tasks declare their own metrics."""

from __future__ import annotations

from ..evaluation import harness
from ..evaluation.harness import LmEvalConfig, normalise_tasks
from ..model import modeling
from .base import Benchmark, Context, Metric, Reference, Standins

TASKS = (("arc_challenge", "ARC"), ("hellaswag", "HellaSwag"), ("mmlu", "MMLU"), ("truthfulqa_mc2", "TruthfulQA"))


class LmEval(Benchmark):
    name = "lm_eval"
    title = "Open LLM Leaderboard tasks (lm-evaluation-harness)"
    default = True
    schema = LmEvalConfig
    help = "Open LLM Leaderboard v1 tasks through lm-evaluation-harness."
    asks = None
    failures_key = None
    own_model = True

    def uses_model(self, sec: LmEvalConfig) -> bool:
        return True
    metrics = tuple(Metric(task, label, (task, "value")) for task, label in TASKS)
    references = (Reference("Zephyr-7B-beta", {"arc_challenge": 62.03, "hellaswag": 84.52, "mmlu": 61.44,
                                               "truthfulqa_mc2": 57.44},
                            "Open LLM Leaderboard v1: ARC 25-shot acc_norm, HellaSwag 10-shot acc_norm, MMLU 5-shot "
                            "acc, TruthfulQA 0-shot mc2",
                            "Zephyr paper (arXiv 2310.16944) and the Zephyr-7B-beta model card"),)

    def check(self, sec: dict, stage: dict) -> None:
        normalise_tasks(sec["tasks"])

    def standin(self, sec: dict, standins: Standins) -> list[str]:
        """One task, arc_challenge, on ARC-schema stand-in questions (the harness, its few-shot path and the scoring
        stay real), 8 of them."""
        notes = super().standin(sec, standins)  # the sizes (no files of its own)
        named = [t if isinstance(t, str) else t.get("name") for t in sec["tasks"]]
        sec["tasks"] = [{"name": "arc_challenge", "num_fewshot": 2, "data_files": "builtin://tiny-arc"}]
        sec["limit"], sec["batch_size"] = 8, 8
        return [f"stage.{self.name}.tasks {', '.join(map(str, named))} -> arc_challenge on ARC-schema stand-in "
                "questions (builtin://tiny-arc), 8 of them", *notes]

    def run(self, ctx: Context) -> dict:
        placement = modeling.resolve_placement(ctx.recipe.hardware)
        return harness.run(ctx.section(self), ctx.recipe.model, placement, ctx.folder)

    def headline(self, result: dict) -> dict:
        """Every task's figure (not only the leaderboard's four)."""
        return {task: v.get("value") for task, v in (result or {}).items() if isinstance(v, dict)}

    def protocol(self, sec: LmEvalConfig, result: dict) -> str:
        tasks = ", ".join(f"{t} {v.get('num_fewshot')}-shot {v.get('metric')}" for t, v in (result or {}).items())
        limit = f", {sec.limit} examples per task" if sec.limit else ""
        return f"lm-evaluation-harness: {tasks}{limit}"

    def card(self, sec: LmEvalConfig, result: dict) -> list[str]:
        labels = dict(TASKS)
        lines = [f"## {self.title}\n", "| task | shots | metric | value |", "| --- | --- | --- | --- |"]
        lines += [f"| {labels.get(t, t)} | {v['num_fewshot']} | {v['metric']} | {v['value']} |"
                  for t, v in result.items()]
        lines.append("\nFull results: `lm_eval/results.json`.\n")
        return lines


BENCHMARK = LmEval()
