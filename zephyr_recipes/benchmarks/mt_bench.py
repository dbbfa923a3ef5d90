"""MT-Bench (FastChat's llm_judge): 80 two-turn questions, each turn graded 1-10 by the judge (single-answer
grading, the ``-math-`` prompts with GPT-4's reference answers for math, reasoning and coding)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Optional

from ..core.schema import option
from ..embedded import builtin
from ..evaluation import mt_bench, precomputed
from ..evaluation.precomputed import FASTCHAT_FORMAT, read_fastchat
from ..feedback.judges import Unparsable
from ..feedback.specs import JudgeSpec
from .base import Benchmark, Context, Metric, Reference, Standins, first_failure, release, stores

log = logging.getLogger("zephyr_recipes")

FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
JUDGE_HELP = "This benchmark's own judge (same keys as stage.judge); null: stage.judge."
ANSWERS_HELP = "Answers another tool produced, in the benchmark's own format ({}): judged, nothing generated."


@dataclass
class MTBenchConfig:
    questions: str = option("HuggingFaceH4/mt_bench_prompts", "The 80 two-turn questions (path, URL or hub id).")
    judge_prompts: str = option(f"{FASTCHAT}/judge_prompts.jsonl", "FastChat's judge prompts.")
    reference_answers: Optional[str] = option(f"{FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
                                              "Reference answers for math, reasoning and coding (FastChat's "
                                              "gpt-4.jsonl); null: none.")
    max_questions: Optional[int] = option(None, "A seeded sample of N questions, spread over the categories "
                                                "(as even as they allow); null for all.")
    seed: int = option(0, "Seed of the max_questions sample.")
    max_new_tokens: int = option(1024, "Tokens per answer of the model under test.")
    temperatures: dict = option({"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1},
                                "Sampling temperature per category (FastChat's); the rest 0.0.", merge=True)
    judge_max_new_tokens: int = option(2048, "Tokens of the judge's reply.")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("FastChat model_answer jsonl"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


PAPER = "Zephyr paper (arXiv 2310.16944) and the Zephyr-7B-beta model card"
PUBLISHED_PROTOCOL = "FastChat llm_judge, GPT-4 single-answer grading 1-10, all 80 questions"


class MTBench(Benchmark):
    name = "mt_bench"
    title = "MT-Bench"
    size = 80  # the published set's prompts
    items = "questions"
    turns = 2
    default = True
    schema = MTBenchConfig
    help = "MT-Bench (FastChat's llm_judge, single-answer grading 1-10)."
    asks = "grade"
    # FastChat's run_judge_single: one request at temperature 0; no [[N]] (nor [N]): rating -1, which show_result
    # leaves out of every mean. A grade outside 1-10 is kept and averaged, as FastChat does.
    unparsable = Unparsable(rule="asked once (FastChat); no [[grade]]: score -1 recorded and left out of the means")
    metrics = (Metric("mt_bench", "MT-Bench", ("score",), ablation_label="MT-Bench-style grade (1-10)"),
               Metric("mt_bench_turn_1", "MT-Bench turn 1", ("turn_1",), headline=False),
               Metric("mt_bench_turn_2", "MT-Bench turn 2", ("turn_2",), headline=False))
    references = (Reference("Zephyr-7B-beta", {"mt_bench": 7.34}, PUBLISHED_PROTOCOL, PAPER),
                  Reference("ablation: dSFT", {"mt_bench": 6.64}, PUBLISHED_PROTOCOL, "Zephyr paper, Table 3"),
                  Reference("ablation: dDPO without dSFT", {"mt_bench": 4.76}, PUBLISHED_PROTOCOL,
                            "Zephyr paper, Table 3"),
                  Reference("ablation: dSFT + dDPO", {"mt_bench": 7.00}, PUBLISHED_PROTOCOL, "Zephyr paper, Table 3"))
    answer_format = FASTCHAT_FORMAT

    def read_answers(self, path: str):
        return read_fastchat(path)

    def run(self, ctx: Context) -> dict:
        sec: MTBenchConfig = ctx.section(self)
        questions = mt_bench.load_questions(sec.questions, sec.max_questions, sec.seed)
        prompts = mt_bench.load_judge_prompts(sec.judge_prompts) if ctx.reads_prompts(self) else None
        references = mt_bench.load_references(sec.reference_answers)
        log.info("MT-Bench: %d questions from %s", len(questions), sec.questions)
        out = ctx.folder / self.name
        imported = None
        with stores(out) as (answers, judgments):
            if sec.answers:
                imported = precomputed.fastchat_answers(sec.answers, questions, answers, self.answer_format)
            else:
                mt_bench.generate(ctx.backend(), questions, answers, sec.max_new_tokens, sec.temperatures)
            rows = mt_bench.answer_records(questions, answers, ctx.model_id)
            (out / "model_answer.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            judge = ctx.make_judge(self, sec.judge_max_new_tokens)
            mt_bench.judge_all(judge, questions, answers, judgments, prompts, references)
            release(judge)
        ids = {str(q.id) for q in questions}
        mine = [j for j in judgments.records.values() if str(j["question_id"]) in ids]
        result = mt_bench.scores(mine)
        result.update(questions=len(questions), answered=len(rows), first_failure=first_failure(mine),
                      sampled=bool(sec.max_questions))
        if imported:
            result["answers_from"] = imported
        log.info("MT-Bench: %s (turn 1 %s, turn 2 %s; %d judge failures)", result["score"], result["turn_1"],
                 result["turn_2"], result["failures"])
        return result

    def standin_files(self, standins: Standins) -> dict:
        """The embedded held-out questions (FastChat's question.jsonl format), no reference answers, and judge prompts
        in FastChat's judge_prompts.jsonl format, one for each prompt it picks."""
        questions = "builtin://tiny-zephyr-eval/question.jsonl"
        builtin.resolve(questions)
        prompt = ("[Instruction]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's "
                  "Answer]\nRate it as [[rating]].")
        judge_prompts = [{"name": n, "type": "single", "system_prompt": "You are a judge.", "prompt_template": prompt,
                          "description": "rehearsal stand-in", "category": "general", "output_format": "[[rating]]"}
                         for n in ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")]
        return {"questions": questions, "reference_answers": None,
                "judge_prompts": standins.write("judge_prompts.jsonl",
                                                "".join(json.dumps(p) + "\n" for p in judge_prompts))}

    def browse(self, runs):
        from ..evaluation import browse  # lazy: the report page's, not an eval run's

        return browse.mt_bench(runs, self)

    def protocol(self, sec: MTBenchConfig, result: dict) -> str:
        n = result.get("questions")
        return f"FastChat llm_judge single-answer grading 1-10, {n} question(s)" + \
            (f" (seeded sample over categories, seed {sec.seed})" if result.get("sampled") else "")

    def card(self, sec: MTBenchConfig, result: dict) -> list[str]:
        cats = " | ".join(f"{c}: {v:.2f}" for c, v in (result.get("categories") or {}).items() if v is not None)
        return ["## MT-Bench\n",
                f"- score **{result['score']}** (turn 1 {result['turn_1']}, turn 2 {result['turn_2']}) over "
                f"{result['judged']} judged answers to {result['questions']} questions; judge failures: "
                f"{result['failures']}",
                f"- by category: {cats or '–'}",
                f"- questions: `{sec.questions}`; answers in FastChat's format: `mt_bench/model_answer.jsonl`; "
                "judgments: `mt_bench/judgments.jsonl`\n",
                "![MT-Bench by category](radar.png)\n"]


BENCHMARK = MTBench()
