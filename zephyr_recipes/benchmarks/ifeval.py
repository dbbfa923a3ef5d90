"""IFEval (arXiv 2311.07911): 541 prompts whose instructions a program verifies, so no judge. Generated as
lm-evaluation-harness's ``ifeval`` task does (zero-shot, greedy, up to 1280 new tokens) with the model's chat template
applied, and scored by lm-eval's port of the authors' checkers (:mod:`zephyr_recipes.evaluation.ifeval`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import option
from ..evaluation import ifeval
from ..feedback.store import Store, answered
from .base import Benchmark, Context, Metric, Reference

log = logging.getLogger("zephyr_recipes")

ANSWER_FORMAT = "the IFEval authors' response jsonl (one JSON object a line: prompt, response)"
PAPER = "Zhou et al., Instruction-Following Evaluation for Large Language Models (arXiv 2311.07911), results table"


@dataclass
class IFEvalConfig:
    prompts: Optional[str] = option(None, "The prompts (key, prompt, instruction_id_list, kwargs: the authors' "
                                          "input_data.jsonl or google/IFEval); null: the 541 shipped with the package.")
    max_questions: Optional[int] = option(None, "A seeded sample of N prompts; null for all 541.")
    seed: int = option(0, "Seed of the max_questions sample.")
    max_new_tokens: int = option(1280, "Tokens per answer (lm-eval's ifeval task: max_gen_toks 1280), greedy.")
    answers: Optional[str] = option(None, f"Answers another tool produced, in {ANSWER_FORMAT}: scored, nothing "
                                          "generated.")


class IFEval(Benchmark):
    name = "ifeval"
    title = "IFEval"
    size = 541
    schema = IFEvalConfig
    help = "IFEval: instructions a program verifies (no judge); lm-eval's checkers, four metrics with 95% intervals."
    asks = None
    failures_key = None
    optional = True
    answer_format = ANSWER_FORMAT
    metrics = tuple(Metric(f"ifeval_{m}", f"IFEval {label}", (m, "value"), (m, "ci"), "ci95")
                    for m, label in ifeval.METRICS)
    references = (Reference("GPT-4 (2023-11-07)", {"ifeval_prompt_strict": 76.89, "ifeval_inst_strict": 83.57,
                                                   "ifeval_prompt_loose": 79.30, "ifeval_inst_loose": 85.37},
                            "the authors' scorer on their published GPT-4 responses", PAPER),
                  Reference("PaLM 2 S", {"ifeval_prompt_strict": 43.07, "ifeval_inst_strict": 55.76,
                                         "ifeval_prompt_loose": 46.95, "ifeval_inst_loose": 59.11},
                            "the authors' scorer", PAPER))

    def check(self, sec: dict, stage: dict) -> None:
        tokens = sec.get("max_new_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise ZephyrError(f"stage.ifeval.max_new_tokens={tokens!r}", "give a positive number (lm-eval: 1280)")

    def read_answers(self, path: str):
        return None, ifeval.read_responses(path)

    def run(self, ctx: Context) -> dict:
        sec: IFEvalConfig = ctx.section(self)
        prompts = ifeval.load_prompts(sec.prompts, sec.max_questions, sec.seed)
        log.info("IFEval: %d prompts", len(prompts))
        out = ctx.folder / self.name
        store = Store(out / "answers.jsonl")
        imported = None
        try:
            if sec.answers:
                imported = self._import(sec.answers, prompts, store)
            else:
                todo = [p for p in prompts if str(p["key"]) not in store]
                convs = [[{"role": "user", "content": p["prompt"]}] for p in todo]
                sampling = {"temperature": 0.0, "max_new_tokens": sec.max_new_tokens}
                for j, res in (ctx.backend().generate(convs, 1, sampling) if todo else ()):
                    p = todo[j]
                    store.add(answered({"key": str(p["key"]), "tstamp": time.time()}, res, "answer"))
        finally:
            store.close()
        responses = {k: r["answer"] for k, r in store.records.items() if "answer" in r}
        scored = ifeval.score_all(prompts, responses)
        by_key = {str(p["key"]): p for p in prompts}
        (out / "responses.jsonl").write_text("".join(  # the authors' format: their evaluation_main.py reads it
            json.dumps({"prompt": by_key[str(s["key"])]["prompt"], "response": responses[str(s["key"])]}) + "\n"
            for s in scored))
        (out / "scored.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scored))
        result = ifeval.summary(scored)
        result.update(asked=len(prompts), sampled=bool(sec.max_questions), max_new_tokens=sec.max_new_tokens,
                      checkers=ifeval.CHECKERS)
        if imported:
            result["answers_from"] = imported
        for m in self.metrics:
            log.info("%s: %s (%d/%d)", m.label, m.format(result), result[m.path[0]]["passed"], result[m.path[0]]["of"])
        return result

    def _import(self, path: str, prompts: list[dict], store: Store) -> dict:
        _, by_prompt = self.read_answers(path)
        found = 0
        for p in prompts:
            if p["prompt"] in by_prompt:
                found += 1
                store.add({"key": str(p["key"]), "answer": by_prompt[p["prompt"]], "imported_from": str(path)})
        if not found:
            raise ZephyrError(f"the IFEval answers file {path} answers none of the {len(prompts)} prompts",
                              f"give {ANSWER_FORMAT} for the same prompts (responses are matched by prompt text)")
        return {"file": str(path), "missing": len(prompts) - found}

    def browse(self, runs):
        return ifeval.browse(runs, self)

    def protocol(self, sec: IFEvalConfig, result: dict) -> str:
        how = "answers read from a file" if result.get("answers_from") else \
            f"greedy, up to {result.get('max_new_tokens')} new tokens, the model's chat template"
        sample = f" (seeded sample, seed {sec.seed})" if result.get("sampled") else ""
        return f"lm-eval's IFEval checkers; {how}; {result.get('prompts')} of {self.size} prompts{sample}"

    def card(self, sec: IFEvalConfig, result: dict) -> list[str]:
        lines = [f"## {self.title}\n",
                 f"{result.get('prompts')} prompts ({result.get('instructions')} instructions); "
                 + ("answers read from `" + result["answers_from"]["file"] + "`" if result.get("answers_from") else
                    f"answers generated as lm-eval's `ifeval` task does: zero-shot, greedy, up to "
                    f"{result.get('max_new_tokens')} new tokens, with the model's chat template applied (the "
                    "prompt is the user turn; the generation prompt opens the answer)")
                 + f". Scored by {result.get('checkers')}; intervals: {result.get('interval')}.\n"]
        lines += [f"- {m.label}: **{m.format(result)}** ({result[m.path[0]]['passed']}/{result[m.path[0]]['of']})"
                  for m in self.metrics if isinstance(result.get(m.path[0]), dict)]
        by = result.get("by_instruction") or {}
        if by:
            lines += ["", "| instruction | n | strict % | loose % |", "| --- | --- | --- | --- |"]
            lines += [f"| `{k}` | {v['n']} | {v['strict']:.1f} | {v['loose']:.1f} |" for k, v in by.items()]
        lines.append(f"\nAnswers: `{self.name}/answers.jsonl`; in the authors' format: `{self.name}/responses.jsonl`; "
                     f"per prompt, which instructions passed: `{self.name}/scored.jsonl`.\n")
        return lines

    def notes(self, result: dict) -> list[str]:
        out = super().notes(result)
        unanswered = (result.get("asked") or 0) - (result.get("prompts") or 0)
        if unanswered > 0 and not result.get("answers_from"):
            out.append(f"{self.title}: {unanswered} prompt(s) without an answer, not scored")
        return out


BENCHMARK = IFEval()
