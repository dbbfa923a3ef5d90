"""README of an evaluation run folder."""

from __future__ import annotations

from .compare import LEADERBOARD_COLUMNS


def eval_card(cfg: dict, prov: dict, scores: dict) -> str:
    stage, judge = cfg["stage"], cfg["stage"]["judge"]
    judge_name = judge.get("module") or judge.get("model") or "-"
    lines = [f"---\ntags: [zephyr-recipes, evaluation]\nbase_model: {cfg['model']['name_or_path']}\n---\n",
             f"# {cfg['run']['name']}\n",
             f"Evaluation of `{cfg['model']['name_or_path']}` (model id `{scores['model_id']}`), "
             f"recipe `{prov['recipe']}`.\n"]
    if judge:
        note = (" A function judge is a pipeline check, not a quality measure: its figures are only comparable "
                "with runs judged by the same function, never with published GPT-4-judged numbers."
                if judge["type"] == "function" else "")
        lines.append(f"Judge: {judge['type']} `{judge_name}`.{note}\n")
    mt = scores.get("mt_bench")
    if mt:
        cats = " | ".join(f"{c}: {v:.2f}" for c, v in mt["categories"].items() if v is not None)
        lines += ["## MT-Bench\n",
                  f"- score **{mt['score']}** (turn 1 {mt['turn_1']}, turn 2 {mt['turn_2']}) over "
                  f"{mt['judged']} judged answers to {mt['questions']} questions; judge failures: {mt['failures']}",
                  f"- by category: {cats}",
                  f"- questions: `{stage['mt_bench']['questions']}`; answers in FastChat's format: "
                  "`mt_bench/model_answer.jsonl`; judgments: `mt_bench/judgments.jsonl`\n",
                  "![MT-Bench by category](radar.png)\n"]
    ae = scores.get("alpaca_eval")
    if ae:
        lines += ["## AlpacaEval\n",
                  f"- win rate **{ae['win_rate']} ± {ae['standard_error']}** against {', '.join(ae['baseline'])} "
                  f"over {ae['n_total']} of {ae['instructions']} instructions (wins {ae['n_wins']}, draws "
                  f"{ae['n_draws']}, losses {ae['n_losses']}; both orders judged; judge failures: {ae['failures']})",
                  f"- average output length {ae['avg_length']} characters (baseline {ae['baseline_avg_length']})",
                  "- outputs in alpaca_eval's format: `alpaca_eval/model_outputs.json` "
                  "(`alpaca_eval --model_outputs alpaca_eval/model_outputs.json` reads them)\n"]
    ae2 = scores.get("alpaca_eval_2")
    if ae2:
        lines += ["## AlpacaEval 2.0\n",
                  f"- length-controlled win rate **{ae2.get('length_controlled_winrate')} ± "
                  f"{ae2.get('lc_standard_error')}**, win rate {ae2.get('win_rate')} ± {ae2.get('standard_error')} "
                  f"against {', '.join(ae2['baseline'])} over {ae2.get('n_total')} of {ae2['instructions']} "
                  f"instructions ({ae2['preferences'] or 'no'} preferences; judge failures: {ae2['failures']})",
                  f"- computed by alpaca_eval's own code (GLM `{ae2['glm']}`) on `alpaca_eval_2/annotations.json`; "
                  f"average output length {ae2['avg_length']} characters (baseline {ae2['baseline_avg_length']})\n"]
    ah = scores.get("arena_hard")
    if ah:
        ci = ah.get("ci_95") or [None, None]
        lines += [f"## Arena-Hard-Auto {ah.get('version', '')}\n",
                  f"- Bradley-Terry win rate **{ah['score']}** (95% interval {ci[0]} to {ci[1]}) against "
                  f"{', '.join(ah['baselines']) or '-'} over {ah['battles']} battles from {ah['judged']} verdicts "
                  f"(both orders; judge failures: {ah['failures']})",
                  f"- prompts: {ah['questions']}; skipped for want of a baseline answer: {ah['missing_baseline']}",
                  "- answers in Arena-Hard's format: `arena_hard/model_answer/`; judgments: "
                  "`arena_hard/judgments.jsonl`\n"]
    lm = scores.get("lm_eval")
    if lm:
        labels = dict(LEADERBOARD_COLUMNS)
        lines += ["## Open LLM Leaderboard tasks (lm-evaluation-harness)\n", "| task | shots | metric | value |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {labels.get(t, t)} | {v['num_fewshot']} | {v['metric']} | {v['value']} |" for t, v in lm.items()]
        lines.append("\nFull results: `lm_eval/results.json`.\n")
    lines.append(f"Reproduce: `{prov['command']}` (the resolved config is `config.yaml` beside this card). "
                 f"Compare runs: `zephyr-recipes report {cfg['run']['output_dir']} <other eval runs>`.\n")
    return "\n".join(lines)
