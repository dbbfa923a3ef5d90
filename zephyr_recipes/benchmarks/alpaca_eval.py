"""AlpacaEval 1: the model's answers to the 805 AlpacaEval instructions against text-davinci-003's, judged by
alpaca_eval's ``alpaca_eval_gpt4`` annotator (its ranking prompt; GPT-4, temperature 0, 100 tokens).

Published protocol by default: one judgment per pair, in alpaca_eval's seeded order, against the baseline answers
the AlpacaEval 1 leaderboard was judged against (``output_1`` of its ``alpaca_eval_gpt4`` annotations)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ..core.schema import option
from ..embedded import builtin
from ..evaluation import alpaca, alpaca_lc, precomputed
from ..evaluation.precomputed import ALPACA_FORMAT, read_alpaca
from ..evaluation.sources import read_text
from ..feedback.judges import Unparsable
from ..feedback.specs import JudgeSpec
from ..feedback.store import Store
from .base import Benchmark, Context, Metric, Reference, Standins, first_failure, release

log = logging.getLogger("zephyr_recipes")

ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"
ALPACA_EVAL_CONFIGS = f"{ALPACA_EVAL}/src/alpaca_eval/evaluators_configs"
LEADERBOARD_BASELINE = f"{ALPACA_EVAL}/results/zephyr-7b-beta/alpaca_eval_gpt4/annotations.json"
JUDGE_HELP = "This benchmark's own judge (same keys as stage.judge); null: stage.judge."
ANSWERS_HELP = "Answers another tool produced, in the benchmark's own format ({}): judged, nothing generated."
BOTH_ORDERS_HELP = ("Judge every pair in both orders and average them. NOT the published protocol (alpaca_eval judges "
                    "once, in its seeded order): the figure is then labelled so.")


@dataclass
class AlpacaEvalConfig:
    instructions: str = option(LEADERBOARD_BASELINE,
                               "The 805 instructions with the baseline's outputs: alpaca_eval's model_outputs "
                               "format, or its annotations (the baseline is output_1). Default: the text-davinci-003 "
                               "answers the AlpacaEval 1 leaderboard was judged against.")
    prompt: str = option(f"{ALPACA_EVAL_CONFIGS}/alpaca_eval_gpt4/alpaca_eval.txt",
                         "The judge's ranking prompt (alpaca_eval:<path> reads the installed package's copy).")
    max_samples: Optional[int] = option(None, "A seeded sample of N instructions; null for all.")
    seed: int = option(0, "Seed of the sample.")
    order_seed: int = option(0, "alpaca_eval's annotator seed: each pair's order is drawn from it and the "
                                "instruction, as alpaca_eval draws it (0, its default).")
    both_orders: bool = option(False, BOTH_ORDERS_HELP)
    sampling: dict = option({"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 2048},
                            "Sampling of the model under test.", merge=True)
    judge_max_new_tokens: int = option(100, "Tokens of the judge's reply (alpaca_eval_gpt4's max_tokens).")
    judge_temperature: float = option(0.0, "The judge's temperature (alpaca_eval_gpt4's: 0).")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("alpaca_eval model_outputs.json"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


LEADERBOARD = "alpaca_eval leaderboard (tatsu-lab/alpaca_eval@cd543a1, src/alpaca_eval/leaderboards/data_AlpacaEval/" \
              "alpaca_eval_gpt4_leaderboard.csv)"


class AlpacaEval(Benchmark):
    name = "alpaca_eval"
    title = "AlpacaEval"
    size = 805  # the published set's prompts
    items = "instructions"
    default = True
    schema = AlpacaEvalConfig
    help = "AlpacaEval 1: win rate against text-davinci-003."
    asks = "compare"
    # alpaca_eval's annotators ask once; a completion its parser cannot read leaves the pair without a preference,
    # and the leaderboard's win rate leaves it out. Two identical outputs are a draw without asking (_preprocess).
    unparsable = Unparsable(rule="asked once (alpaca_eval); no preference: left out of the win rate")
    metrics = (Metric("alpaca_eval", "AlpacaEval win %", ("win_rate",), ("standard_error",), "se",
                      ablation_label="AlpacaEval-style win %", ablation_digits=1),
               Metric("alpaca_eval_avg_length", "AlpacaEval avg length", ("avg_length",), digits=0,
                      higher_is_better=False, headline=False))
    references = (
        Reference("Zephyr-7B-beta", {"alpaca_eval": (90.60, 1.03)},
                  "alpaca_eval_gpt4 (GPT-4), one judgment per pair in alpaca_eval's seeded order, 805 instructions, "
                  "text-davinci-003 leaderboard baseline (803 judged)",
                  "Zephyr paper (arXiv 2310.16944); " + LEADERBOARD + ": 90.5978 ± 1.0287"),
    )
    answer_format = ALPACA_FORMAT

    def read_answers(self, path: str):
        return read_alpaca(path)

    def standin_files(self, standins: Standins) -> dict:
        """The embedded held-out instructions with the teacher's outputs (alpaca_eval's model_outputs format) and a
        judge prompt with alpaca_eval's placeholders."""
        instructions = "builtin://tiny-zephyr-eval/alpaca_eval.json"
        builtin.resolve(instructions)
        return {"instructions": instructions,
                "prompt": standins.write("alpaca_judge.txt",
                                         "Which output is better for {instruction}? m: {output_1} M: {output_2}\n")}

    def load(self, sec: AlpacaEvalConfig) -> list[dict]:
        return alpaca.load_instructions(sec.instructions, sec.max_samples, sec.seed)

    def answers(self, ctx: Context, sec: AlpacaEvalConfig, rows: list[dict], outputs) -> Optional[dict]:
        """The answers file's outputs, or the model's (generated); returns where imported ones came from."""
        if sec.answers:
            return precomputed.alpaca_outputs(sec.answers, rows, outputs, self.answer_format)
        alpaca.generate(ctx.backend(), rows, outputs, sec.sampling)
        return None

    def run(self, ctx: Context) -> dict:
        sec: AlpacaEvalConfig = ctx.section(self)
        rows = self.load(sec)
        prompt = read_text(alpaca_lc.package_file(sec.prompt), "AlpacaEval judge prompt") \
            if ctx.reads_prompts(self) else None
        log.info("AlpacaEval: %d instructions from %s", len(rows), sec.instructions)
        out = ctx.folder / self.name
        outputs, judgments = Store(out / "outputs.jsonl"), Store(out / "judgments.jsonl")
        try:
            imported = self.answers(ctx, sec, rows, outputs)
            produced = alpaca.model_outputs(rows, outputs, ctx.model_id)
            alpaca.write_outputs(out / "model_outputs.json", produced)
            judge = ctx.make_judge(self, sec.judge_max_new_tokens, sec.judge_temperature)
            alpaca.judge_all(judge, rows, outputs, judgments, prompt, sec.both_orders, order_seed=sec.order_seed)
            release(judge)
        finally:
            outputs.close()
            judgments.close()
        wanted = {alpaca.instruction_id(r["instruction"]) for r in rows}
        mine = [j for j in judgments.records.values() if j["instruction_id"] in wanted]
        result = alpaca.scores(rows, produced, mine)
        result.update(orders="both" if sec.both_orders else "one", first_failure=first_failure(mine))
        if imported:
            result["answers_from"] = imported
        log.info("AlpacaEval: win rate %s ± %s (avg length %s; %d judge failures)", result["win_rate"],
                 result["standard_error"], result["avg_length"], result["failures"])
        return result

    def browse(self, runs):
        from ..evaluation import browse  # lazy: the report page's, not an eval run's

        return browse.alpaca(runs, self)

    def protocol(self, sec: AlpacaEvalConfig, result: dict) -> str:
        orders = "both orders averaged (NOT the published protocol)" if result.get("orders") == "both" else \
            f"one judgment per pair in alpaca_eval's seeded order (seed {sec.order_seed})"
        return f"{orders}, {result.get('n_total')} of {result.get('instructions')} instructions, baseline " \
               f"{', '.join(result.get('baseline') or []) or '?'}"

    def card(self, sec: AlpacaEvalConfig, result: dict) -> list[str]:
        r = result
        orders = "both orders judged and averaged, not the published protocol" if r.get("orders") == "both" else \
            "one judgment per pair in alpaca_eval's seeded order"
        return [f"## {self.title}\n",
                f"- win rate **{r['win_rate']} ± {r['standard_error']}** against {', '.join(r['baseline'])} over "
                f"{r['n_total']} of {r['instructions']} instructions (wins {r['n_wins']}, draws {r['n_draws']}"
                f"{' of which ' + str(r['identical']) + ' identical outputs, not asked' if r.get('identical') else ''}, "
                f"losses {r['n_losses']}; {orders}; judge failures: {r['failures']})",
                f"- average output length {r['avg_length']} characters (baseline {r['baseline_avg_length']})",
                f"- outputs in alpaca_eval's format: `{self.name}/model_outputs.json` "
                f"(`alpaca_eval --model_outputs {self.name}/model_outputs.json` reads them)\n"]

    def notes(self, result: dict) -> list[str]:
        out = super().notes(result)
        if result.get("orders") == "both":
            out.append(f"{self.title}: both orders judged and averaged, not alpaca_eval's protocol (one order)")
        return out


BENCHMARK = AlpacaEval()
