"""AlpacaEval 2.0: win rate and length-controlled (LC) win rate against gpt4_turbo (gpt4_1106_preview), judged by
alpaca_eval's ``weighted_alpaca_eval_gpt4_turbo`` annotator (its clf prompt; one token, weighted by the judge's
log-probabilities of ``m`` and ``M``).

Published protocol by default: one judgment per pair in alpaca_eval's seeded order, LC from alpaca_eval's GLM
with its ``df_gamed.csv`` (fetched from the hub on first use and cached; a local path for an offline machine).
Without that file there is no LC figure; with ``glm: length_controlled_minimal`` (zero difficulties) the LC figure
is labelled approximate, not comparable, and has no standard error."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import option
from ..evaluation import alpaca, alpaca_lc
from ..evaluation.alpaca import instruction_id
from ..evaluation.alpaca_lc import GLMS
from ..evaluation.sources import read_text
from ..feedback.store import Store
from .alpaca_eval import ALPACA_EVAL_CONFIGS, AlpacaEval, AlpacaEvalConfig
from .alpaca_eval import BENCHMARK as ALPACA_EVAL_1
from .base import Context, Metric, Reference, Standins, first_failure, release

log = logging.getLogger("zephyr_recipes")


@dataclass
class AlpacaEval2Config(AlpacaEvalConfig):
    """AlpacaEval's keys with 2.0's files, and what its length-controlled win rate needs."""

    instructions: str = option("hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json",
                               "The 805 instructions with the gpt4_turbo baseline's outputs.")
    prompt: str = option(f"{ALPACA_EVAL_CONFIGS}/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt",
                         "The judge's prompt (alpaca_eval_clf.txt; alpaca_eval:<path> reads the installed package's "
                         "copy).")
    judge_max_new_tokens: int = option(1, "Tokens of the judge's reply (one: the preferred output's letter).")
    judge_temperature: float = option(1.0, "The judge's temperature (weighted_alpaca_eval_gpt4_turbo's: 1; the "
                                           "log-probabilities, not the sampled token, make the preference).")
    df_gamed: Optional[str] = option(alpaca_lc.PUBLISHED_DF_GAMED,
                                     "alpaca_eval's df_gamed.csv, which the length-controlled GLM reads: fetched "
                                     "once into the hub cache; a local path on an offline machine (its LC is "
                                     "then labelled with the file's name and sha256, not the published protocol's). "
                                     "Unavailable: no LC figure.")
    glm: str = option("length_controlled_v1", "The GLM: length_controlled_v1 (published) or "
                                              "length_controlled_minimal (approximate, not comparable).")
    logprobs: bool = option(True, "Weighted preferences from an OpenAI-compatible judge's log-probabilities.")


LEADERBOARD = "alpaca_eval leaderboard (tatsu-lab/alpaca_eval@cd543a1, src/alpaca_eval/leaderboards/" \
              "data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv)"
PROTOCOL = "weighted_alpaca_eval_gpt4_turbo (GPT-4 Turbo, log-probability weighted), one judgment per pair in " \
           "alpaca_eval's seeded order, 805 instructions, gpt4_turbo baseline, GLM length_controlled_v1"


class AlpacaEval2(AlpacaEval):
    name = "alpaca_eval_2"
    title = "AlpacaEval 2.0"
    schema = AlpacaEval2Config
    help = "AlpacaEval 2.0 with the length-controlled win rate."
    optional = True
    default = False
    metrics = (Metric("alpaca_eval_2_lc", "AlpacaEval 2.0 LC %", ("length_controlled_winrate",),
                      ("lc_standard_error",), "se", digits=1, caveat=("lc_caveat",)),
               Metric("alpaca_eval_2", "AlpacaEval 2.0 win %", ("win_rate",), ("standard_error",), "se", digits=1))
    references = (Reference("Zephyr-7B-beta", {"alpaca_eval_2_lc": 13.20, "alpaca_eval_2": (10.99, 0.96)}, PROTOCOL,
                            LEADERBOARD + ": LC 13.2032, win rate 10.9929 ± 0.9618"),)

    def check(self, sec: dict, stage: dict) -> None:
        import importlib.util

        if sec["glm"] not in GLMS:
            raise ZephyrError(f"stage.alpaca_eval_2.glm={sec['glm']!r}", f"choose from: {', '.join(GLMS)}")
        if sec["df_gamed"] is None and sec["glm"] != "length_controlled_minimal":
            raise ZephyrError(f"stage.alpaca_eval_2.df_gamed is null, and glm {sec['glm']} needs alpaca_eval's "
                              "df_gamed.csv", "give its path (or hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv), "
                              "or glm: length_controlled_minimal for an instruction set other than AlpacaEval's")
        if importlib.util.find_spec("alpaca_eval") is None:
            raise ZephyrError("stage.benchmarks has alpaca_eval_2, whose LC win rate is computed by the alpaca-eval "
                              "package, which is not installed", "pip install 'zephyr-recipes[eval]'")

    def standin(self, sec: dict, standins: Standins) -> list[str]:
        """AlpacaEval's stand-in files, and no ``df_gamed`` from the hub: the GLM with zero difficulties."""
        swapped = standins.swap(sec, self.standin_files(standins))
        standins.shrink(sec)
        if sec.get("df_gamed") and standins.remote(sec["df_gamed"]):
            sec["df_gamed"], sec["glm"] = None, "length_controlled_minimal"
            swapped.append("df_gamed (none: glm length_controlled_minimal)")
        return standins.swapped(self, swapped)

    def _reuse_alpaca_eval_answers(self, ctx: Context, rows: list[dict], outputs) -> None:
        """The model's AlpacaEval 1 answers serve AlpacaEval 2.0 too (same instructions, same sampling): only the
        baseline and the judge differ, as on alpaca_eval's leaderboards."""

        if not ctx.chosen(AlpacaEval.name):
            return
        first: AlpacaEvalConfig = ctx.section(ALPACA_EVAL_1)
        second: AlpacaEval2Config = ctx.section(self)
        if first.answers or second.answers or first.sampling != second.sampling:
            return
        earlier = Store(ctx.folder / AlpacaEval.name / "outputs.jsonl")  # read only
        for r in rows:
            rec = earlier.get(instruction_id(r["instruction"]))
            if rec and "output" in rec and rec["key"] not in outputs:
                outputs.add({**rec, "source": f"{AlpacaEval.name}/outputs.jsonl"})

    def run(self, ctx: Context) -> dict:
        sec: AlpacaEval2Config = ctx.section(self)
        rows = self.load(sec)
        prompt = read_text(alpaca_lc.package_file(sec.prompt), "AlpacaEval 2.0 judge prompt") \
            if ctx.reads_prompts(self) else None
        out = ctx.folder / self.name
        df_gamed, lc_note = alpaca_lc.resolve_df_gamed(sec.df_gamed, sec.glm, rows, out)
        if df_gamed:
            alpaca_lc._require_package()  # before any answer is generated
        log.info("AlpacaEval 2.0: %d instructions from %s", len(rows), sec.instructions)
        outputs, judgments = Store(out / "outputs.jsonl"), Store(out / "judgments.jsonl")
        try:
            self._reuse_alpaca_eval_answers(ctx, rows, outputs)
            imported = self.answers(ctx, sec, rows, outputs)
            produced = alpaca.model_outputs(rows, outputs, ctx.model_id)
            alpaca.write_outputs(out / "model_outputs.json", produced)
            judge = ctx.make_judge(self, sec.judge_max_new_tokens, sec.judge_temperature)
            alpaca_lc.judge_all(judge, rows, outputs, judgments, prompt, sec.both_orders, sec.logprobs,
                                sec.order_seed)
            release(judge)
        finally:
            outputs.close()
            judgments.close()
        wanted = {alpaca.instruction_id(r["instruction"]) for r in rows}
        by_iid = {alpaca.instruction_id(o["instruction"]): o["output"] for o in produced}
        mine = [j for j in judgments.records.values() if j["instruction_id"] in wanted]
        approximate = sec.glm == "length_controlled_minimal"
        result = alpaca_lc.scores(rows, by_iid, mine, ctx.model_id, sec.glm, df_gamed, out, lc_note, approximate,
                                  None if approximate else alpaca_lc.df_gamed_source(sec.df_gamed, df_gamed))
        result.update(orders="both" if sec.both_orders else "one", first_failure=first_failure(mine))
        if imported:
            result["answers_from"] = imported
        log.info("AlpacaEval 2.0: LC win rate %s ± %s, win rate %s ± %s (%s preferences, GLM %s; %d judge failures)",
                 result.get("length_controlled_winrate"), result.get("lc_standard_error"), result.get("win_rate"),
                 result.get("standard_error"), result["preferences"], result["glm"], result["failures"])
        return result

    def protocol(self, sec: AlpacaEvalConfig, result: dict) -> str:
        lc = result.get("lc_note") or f"GLM {result.get('glm')}"
        return f"{super().protocol(sec, result)}; {result.get('preferences') or 'no'} preferences; LC: {lc}"

    def card(self, sec: AlpacaEvalConfig, result: dict) -> list[str]:
        r = result
        lc = self.metrics[0].format({k: v for k, v in r.items() if k != "lc_caveat"})  # the note follows
        orders = "both orders judged and averaged, not the published protocol" if r.get("orders") == "both" else \
            "one judgment per pair in alpaca_eval's seeded order"
        return [f"## {self.title}\n",
                f"- length-controlled win rate **{lc}**" + (f" ({r['lc_note']})" if r.get("lc_note") else "") +
                f", win rate {self.metrics[1].format(r)} against {', '.join(r['baseline'])} over {r.get('n_total')} "
                f"of {r['instructions']} instructions ({r['preferences'] or 'no'} preferences; {orders}; judge "
                f"failures: {r['failures']})",
                f"- LC by alpaca_eval's own code (GLM `{r['glm']}`) on `{self.name}/annotations.json`; average output "
                f"length {r['avg_length']} characters (baseline {r['baseline_avg_length']})\n"]

    def notes(self, result: dict) -> list[str]:
        out = super().notes(result)
        out.append(f"{self.title}: {result.get('preferences') or 'no'} preferences, GLM {result.get('glm')}, baseline "
                   f"{', '.join(result.get('baseline') or [])}" + (f"; LC {result['lc_note']}"
                                                                   if result.get("lc_note") else ""))
        return out


BENCHMARK = AlpacaEval2()
