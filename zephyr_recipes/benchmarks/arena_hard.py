"""Arena-Hard-Auto: the model's answers to hard prompts against a baseline's, every prompt judged in both orders
with verdicts [[A>>B]] ... [[B>>A]]; each version scored as its leaderboard was (see
:data:`zephyr_recipes.evaluation.arena_hard.PROTOCOLS`): v0.1 a Bradley-Terry win rate with a 95% interval and
2024's verdict rule, v2.0 per-category scores with 90% intervals."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, cast

from ..core.errors import ZephyrError
from ..core.schema import option
from ..embedded import tasks
from ..evaluation import arena_hard, precomputed
from ..evaluation.arena_hard import ANSWER_FORMAT, VERSIONS, parse_answers
from ..feedback.judges import Unparsable
from ..feedback.specs import JudgeSpec
from .base import Benchmark, Context, Metric, Standins, first_failure, release, stores

log = logging.getLogger("zephyr_recipes")

# gen_judgment.py of 2024 (arena-hard-auto 4ce0f00): a reply without a label is answered, in the same conversation
# and at the same temperature, with this message, once (number_of_judgment_attempts: 2); the replies are read together.
CONTINUE_2024 = Unparsable(
    asks=2, follow_up="continue your judgment and finish by outputting a final verdict label", joined=True,
    rule="no label: the same conversation continued once, at the same temperature, asking for the final verdict "
         "(arena-hard v0.1's gen_judgment.py); two different labels: dropped")
ASK_ONCE_2025 = Unparsable(rule="asked once; no label: the prompt's games are dropped (arena-hard v2.0)")
JUDGE_HELP = "This benchmark's own judge (same keys as stage.judge); null: stage.judge."
ANSWERS_HELP = "Answers another tool produced, in the benchmark's own format ({}): judged, nothing generated."


@dataclass
class ArenaHardConfig:
    version: str = option("v0.1", "v0.1 or v2.0: the null keys below take that version's public files, and the "
                                  "figures are scored the way that version's leaderboard was.")
    questions: Optional[str] = option(None, "The prompts (question.jsonl).")
    baselines: Any = option(None, "{category: model_answer file} (or one file for every category).")
    system_prompts: Any = option(None, "{category: text, file, or judge_utils.py#NAME} (or one for every category).")
    judge_settings: Optional[str] = option(None, "config/arena-hard-v*.yaml: prompt template, verdict regexes, "
                                                 "judge temperature.")
    max_questions: Optional[int] = option(None, "A seeded sample of N questions; null for all.")
    seed: int = option(0, "Seed of the sample and the bootstrap.")
    sampling: dict = option({"temperature": 0.0, "max_new_tokens": 4096}, "Sampling of the model under test.",
                            merge=True)
    judge_max_new_tokens: Optional[int] = option(None, "Tokens of the judge's reply; null: the settings' max_tokens.")
    strong_weight: int = option(3, "Weight of a strong verdict (A>>B) in the battles, as the benchmark counts it.")
    bootstrap_rounds: int = option(100, "Bootstrap rounds of the interval (95% for v0.1, 90% for v2.0).")
    answers: Optional[str] = option(None, ANSWERS_HELP.format("Arena-Hard model_answer jsonl"))
    judge: Optional[JudgeSpec] = option(None, JUDGE_HELP)


class ArenaHard(Benchmark):
    name = "arena_hard"
    title = "Arena-Hard"
    sizes = {"v0.1": 500, "v2.0": 750}  # the published sets' prompts

    def prompt_count(self, sec: ArenaHardConfig) -> int:
        return self.sizes.get(str(sec.version), 500)

    def on_unparsable(self, sec: ArenaHardConfig) -> Unparsable:
        return CONTINUE_2024 if str(sec.version) == "v0.1" else ASK_ONCE_2025

    def workload(self, sec: ArenaHardConfig) -> tuple[int, int, int, int]:
        answers, new, judged, budget = super().workload(sec)
        return answers, new, judged * 2, budget  # every prompt is judged in both orders (two games)
    schema = ArenaHardConfig
    help = "Arena-Hard-Auto: win rate against a baseline (v0.1 Bradley-Terry, v2.0 per category)."
    asks = "verdict"
    optional = True
    metrics = (Metric("arena_hard", "Arena-Hard %", ("score",), ("ci",), "ci", digits=1),)
    references = ()  # Zephyr-7B-beta has no published Arena-Hard figure
    answer_format = ANSWER_FORMAT

    def read_answers(self, path: str):
        return parse_answers(path)

    def check(self, sec: dict, stage: dict) -> None:
        """The version's public files fill what the recipe leaves null (v0.1 or v2.0), in the config's mapping (what
        config.yaml holds and :meth:`run` reads typed)."""
        version = str(sec["version"])
        if version not in VERSIONS:
            raise ZephyrError(f"stage.arena_hard.version={sec['version']!r}", f"choose from: {', '.join(VERSIONS)}")
        sec["version"] = version
        for key, value in VERSIONS[version].items():
            if sec.get(key) is None:
                sec[key] = dict(value) if isinstance(value, dict) else value
        for key in ("baselines", "system_prompts"):
            if isinstance(sec[key], str):  # one file for every category
                sec[key] = {"*": sec[key]}
            if not isinstance(sec[key], dict) or not sec[key]:
                raise ZephyrError(f"stage.arena_hard.{key} must map a category to a file",
                                  f"write {key}: {{arena-hard-v0.1: path/or/URL}} (or one path for every category)")
        weight, rounds = sec["strong_weight"], sec["bootstrap_rounds"]
        if not isinstance(weight, int) or weight < 1 or not isinstance(rounds, int) or rounds < 1:
            raise ZephyrError(f"stage.arena_hard.strong_weight={weight!r}, bootstrap_rounds={rounds!r}",
                              "give positive whole numbers (the benchmark's: 3 and 100)")

    def standin_files(self, standins: Standins) -> dict:
        """A dozen embedded tasks as question.jsonl, the teacher's answers as the baseline's model_answer file, a
        one-line judge system prompt, and judge settings in the config/arena-hard-v*.yaml format."""
        import yaml

        rows = tasks.in_turn(12, seed=21)
        questions = "".join(json.dumps({"uid": f"rehearsal-{i}", "category": "arena-hard-v0.1",
                                        "prompt": t.instruction}) + "\n" for i, t in enumerate(rows))
        baseline = "".join(json.dumps({"uid": f"rehearsal-{i}", "model": "teacher", "messages": [
            {"role": "user", "content": t.instruction}, {"role": "assistant", "content": {"answer": t.answer}}]})
            + "\n" for i, t in enumerate(rows))
        settings = yaml.safe_dump({
            "judge_model": "stand-in", "bench_name": "arena-hard-v0.1", "temperature": 0.0,
            "max_tokens": standins.new_tokens, "regex_patterns": [r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"],
            "prompt_template": "<|User Prompt|>\n{QUESTION}\n\n<|A|>\n{ANSWER_A}\n\n<|B|>\n{ANSWER_B}"})
        return {"questions": standins.write("question.jsonl", questions),
                "baselines": {"*": standins.write("baseline.jsonl", baseline)},
                "system_prompts": {"*": "You are a judge. Compare the two answers."},
                "judge_settings": standins.write("settings.yaml", settings)}

    def run(self, ctx: Context) -> dict:
        sec: ArenaHardConfig = ctx.section(self)
        protocol = arena_hard.PROTOCOLS[sec.version]
        # check filled what the recipe left null from the version's public files
        questions = arena_hard.load_questions(cast(str, sec.questions), sec.max_questions, sec.seed)
        settings = arena_hard.load_settings(cast(str, sec.judge_settings))
        categories = sorted({q["category"] for q in questions})

        def for_category(mapping: dict, category: str, what: str):
            if category in mapping:
                return mapping[category]
            if "*" in mapping:
                return mapping["*"]
            if len(mapping) == 1:
                return next(iter(mapping.values()))
            raise ZephyrError(f"stage.arena_hard.{what} has no entry for the category {category!r}",
                              f"add {category}: <file> (categories of these questions: {', '.join(categories)})")

        files: dict[str, tuple] = {}
        baselines, missing = {}, []
        for q in questions:
            spec = for_category(sec.baselines, q["category"], "baselines")
            if spec not in files:
                files[spec] = arena_hard.parse_answers(spec)
            name, answers = files[spec]
            if q["uid"] in answers:
                baselines[q["uid"]] = {"answer": answers[q["uid"]], "model": name or Path(spec).stem}
            else:
                missing.append(q["uid"])
        if missing:
            log.warning("Arena-Hard: the baseline has no answer to %d of %d prompts (%s%s); they are skipped "
                        "(all listed in arena_hard/missing_baseline.txt)", len(missing), len(questions),
                        ", ".join(missing[:5]), " ..." if len(missing) > 5 else "")
        system_prompts = {}
        if ctx.reads_prompts(self):
            system_prompts = {c: arena_hard.read_prompt(for_category(sec.system_prompts, c, "system_prompts"),
                                                        "Arena-Hard judge system prompt") for c in categories}
        log.info("Arena-Hard %s: %d prompts from %s", sec.version, len(questions), sec.questions)
        out = ctx.folder / self.name
        if missing:
            out.mkdir(parents=True, exist_ok=True)
            (out / "missing_baseline.txt").write_text("".join(f"{uid}\n" for uid in missing))
        imported = None
        with stores(out) as (answers, judgments):
            if sec.answers:
                imported = precomputed.arena_hard_answers(sec.answers, questions, answers, self.answer_format)
            else:
                arena_hard.generate(ctx.backend(), [q for q in questions if q["uid"] in baselines], answers,
                                    sec.sampling)
            rows = arena_hard.answer_records(questions, answers, ctx.model_id)
            (out / "model_answer").mkdir(parents=True, exist_ok=True)
            (out / "model_answer" / f"{ctx.model_id.replace('/', '_')}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            temperature = settings.get("temperature")  # the benchmark's judge temperature, unless the spec sets one
            judge = ctx.make_judge(self, sec.judge_max_new_tokens or int(settings.get("max_tokens") or 4096),
                                   0.0 if temperature is None else float(temperature))
            arena_hard.judge_all(judge, questions, answers, baselines, judgments, settings, system_prompts,
                                 protocol["verdict_rule"])
            release(judge)
        ids = {q["uid"] for q in questions}
        mine = [j for j in judgments.records.values() if j["uid"] in ids]
        result = arena_hard.scores(questions, mine, missing, sec.strong_weight, sec.bootstrap_rounds,
                                   sec.seed, sec.version)
        result.update(version=sec.version, answered=len(rows), first_failure=first_failure(mine))
        if imported:
            result["answers_from"] = imported
        log.info("Arena-Hard: %s (%s%% CI %s; %d battles, %d judge failures, %d prompts without a baseline answer)",
                 result["score"], result["interval"], result["ci"], result["battles"], result["failures"],
                 result["missing_baseline"])
        return result

    def browse(self, runs):
        from ..evaluation import browse  # lazy: the report page's, not an eval run's

        return browse.arena_hard(runs, self)

    def protocol(self, sec: ArenaHardConfig, result: dict) -> str:
        if result.get("version") == "v2.0":
            how = f"per category, mean battle outcome, {result.get('interval')}% interval; headline " \
                  f"{result.get('score_category')}"
        else:
            how = f"Bradley-Terry win rate, {result.get('interval')}% interval"
        return f"Arena-Hard {result.get('version')}: both orders, verdict rule {result.get('verdict_rule')}, {how}, " \
               f"{result.get('questions')} prompt(s)"

    def card(self, sec: ArenaHardConfig, result: dict) -> list[str]:
        ah = result
        ci = ah.get("ci") or [None, None]
        lines = [f"## Arena-Hard-Auto {ah.get('version', '')}\n",
                 f"- {'Bradley-Terry ' if ah.get('version') != 'v2.0' else ''}win rate **{ah['score']}** "
                 f"({ah.get('interval')}% interval {ci[0]} to {ci[1]})"
                 + (f" on {ah['score_category']}" if ah.get("score_category") else "") +
                 f" against {', '.join(ah['baselines']) or '-'} over {ah['battles']} battles from {ah['judged']} "
                 f"verdicts (both orders; verdict rule {ah.get('verdict_rule')}; judge failures: {ah['failures']})"]
        for c, v in (ah.get("categories") or {}).items():
            cci = v.get(f"ci_{ah.get('interval')}") or [None, None]
            lines.append(f"- {c}: {v['score']} ({ah.get('interval')}% interval {cci[0]} to {cci[1]}; "
                         f"{v['battles']} battles)")
        lines += [f"- prompts: {ah['questions']}; skipped for want of a baseline answer: {ah['missing_baseline']}",
                  "- answers in Arena-Hard's format: `arena_hard/model_answer/`; judgments: "
                  "`arena_hard/judgments.jsonl`\n"]
        return lines

    def notes(self, result: dict) -> list[str]:
        out = []
        if result.get("missing_baseline"):
            out.append(f"Arena-Hard skipped {result['missing_baseline']} of {result.get('questions')} prompts "
                       "that have no baseline answer")
        out += super().notes(result)
        for c, v in (result.get("categories") or {}).items() if result.get("version") == "v2.0" else ():
            ci = v.get(f"ci_{result.get('interval')}") or [None, None]
            out.append(f"{self.title} v2.0 {c}: {v['score']} ({result.get('interval')}% CI {ci[0]} to {ci[1]})")
        return out


BENCHMARK = ArenaHard()
