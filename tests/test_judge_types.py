"""One judge seam: a judge type is one class in one module plus one registry line. A type written to tmp_path at
test time is added the two ways a user adds one (an installed package's entry point in the group
``zephyr_recipes.judges``, or the recipe naming ``package.module:Class`` under --trust-recipe-code), and it rates an
AI-feedback stage, judges an evaluation and is costed by ``plan``, through the same code the built-in types use."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest

from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.embedded import tasks
from zephyr_recipes.feedback import judge_registry, judges
from zephyr_recipes.feedback.specs import JudgeSpec

MODULE = '''
"""A judge type of the test's own: it prefers the longer answer (or the shorter one)."""

from dataclasses import dataclass

from zephyr_recipes.core.schema import option
from zephyr_recipes.data.binarize import ASPECTS
from zephyr_recipes.feedback.judges import Judge, Verdict
from zephyr_recipes.feedback.specs import JudgeSpec


@dataclass
class LengthSettings(JudgeSpec):
    prefer: str = option("longer", "Which answer wins: longer or shorter.")


class LengthJudge(Judge):
    type = "by_length"
    Settings = LengthSettings
    KINDS = frozenset({"rate", "compare"})
    PIPELINE_CHECK = True

    def __init__(self, prefer, aspects):
        self.sign = 1 if prefer == "longer" else -1
        self.aspects = aspects or ASPECTS

    @classmethod
    def make(cls, spec, hardware=None, sampling=None, where="stage.judge"):
        return cls(spec["prefer"], spec["aspects"])

    @classmethod
    def load(cls, role, spec, requests, new_tokens):
        return {"role": role, "requests": int(requests), "new_tokens": 0, "spec": spec, "batch": 1,
                "how": "function", "model": "the answer-length rule (" + spec["prefer"] + ")"}

    def rate_many(self, items):
        for i, it in enumerate(items):
            n = len(it.answers[0].split())
            rating = min(5, 1 + n // 4) if self.sign > 0 else max(1, 5 - n // 4)
            why = "%d words" % n
            yield i, Verdict({a: {"Rating": rating, "Rationale": why} for a in self.aspects}, why)

    def compare_many(self, items):
        for i, it in enumerate(items):
            a, b = (self.sign * len(x) for x in it.answers[:2])
            yield i, Verdict(1.0 if a > b else 0.0 if a < b else 0.5, "lengths")
'''

PROMPTS = [tasks.sample(random.Random(i)).instruction for i in range(6)]  # embedded tasks the teacher answers


def _module(tmp_path: Path, name: str, monkeypatch) -> str:
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The type as an installed package declares it: a module and its dist-info with an entry point."""
    name = _module(tmp_path, "zr_length_judge_pkg", monkeypatch)
    info = tmp_path / "zr_length_judge_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zr-length-judge-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{judge_registry.GROUP}]\nby_length = {name}:LengthJudge\n")
    judge_registry.INSTALLED.forget()  # installed after the last look at the entry points
    yield name
    judge_registry.TYPES.pop("by_length", None)
    JudgeSpec.TYPES.pop("by_length", None)
    judge_registry.INSTALLED.forget()


def _aif_recipe(tmp_path: Path, judge: str) -> tuple[Path, Path]:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "prompt_id": str(i)}) + "\n" for i, p in enumerate(PROMPTS)))
    recipe = tmp_path / "aif.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        defaults:
          - model: tiny
          - dataset: tiny-ultrachat
          - stage: aif
          - hardware: cpu
          - _self_
        dataset:
          path: {data}
          train_split: train
          test_split: null
          columns: {{prompt: prompt}}
        stage:
          generators:
            - {{name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}}
            - {{name: chatty, type: function, function: "tests.helpers:sloppy", num_completions: 2}}
          judge: {judge}
          test_fraction: 0.0
        """))
    return recipe, data


def test_the_builtin_types_are_registered_through_register_judge_and_declare_what_they_can_judge():
    types = judges.judge_types()
    assert {"function", "transformers", "openai", "vllm", "reward_model"} <= set(types)
    for name, cls in types.items():
        assert cls.type == name and issubclass(cls.Settings, JudgeSpec) and JudgeSpec.TYPES[name] is cls.Settings
    assert types["reward_model"].can("compare") and not types["reward_model"].can("grade")
    assert types["function"].PIPELINE_CHECK and not types["openai"].PIPELINE_CHECK and types["vllm"].SERVED
    assert all(ref.split(":")[1] in {c.__name__ for c in types.values()} for ref in judge_registry.BUILTIN)


def test_an_installed_judge_type_rates_ai_feedback_judges_an_evaluation_and_is_planned(tmp_path, cli, installed):
    recipe, _ = _aif_recipe(tmp_path, "{type: by_length, prefer: longer}")
    out = tmp_path / "aif"
    # its typed settings: a misspelt key is named against them, before anything runs
    code, _, err = cli("validate", str(recipe), "+stage.judge.prefr=shorter")
    assert code == 2 and "prefr" in err and "prefer" in err
    code, text, err = cli("plan", str(recipe))
    assert code == 0, err
    assert "calls of the answer-length rule (longer)" in text  # its own cost model
    code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code")  # tests.helpers is outside
    assert code == 0, err
    ratings = [json.loads(line) for line in (out / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == len(PROMPTS) * 3 and all(r["raw"].endswith(" words") for r in ratings)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_failures"] == 0 and summary["prompts"] == len(PROMPTS)
    # how it was asked, as its class declares (it reads no rubric): not "this project's single-answer rubric"
    assert summary["judge_protocol"] == {"protocol": "by_length", "text": "a by_length judge (by_length), its own ratings"}

    # the same type judges AlpacaEval; its figures are marked a pipeline check, as its class declares
    instructions = Path(__file__).parent / "data" / "alpaca_eval" / "text_davinci_003_outputs.json"
    rows = json.loads(instructions.read_text())[:8]
    answers = tmp_path / "model_outputs.json"
    answers.write_text(json.dumps([{"instruction": r["instruction"], "output": r["output"] + " and more words",
                                    "generator": "longer"} for r in rows]))
    ev = tmp_path / "eval"
    code, _, err = cli("tiny/eval", "model.name_or_path=./no-such-model", "stage.benchmarks=[alpaca_eval]",
                       f"stage.alpaca_eval.instructions={instructions}", f"stage.alpaca_eval.answers={answers}",
                       "stage.alpaca_eval.max_samples=null", "stage.judge={type: by_length, prefer: longer}",
                       "~stage.judge.module", f"run.output_dir={ev}")
    assert code == 0, err
    scores = json.loads((ev / "scores.json").read_text())
    assert scores["alpaca_eval"]["win_rate"] == 100.0 and scores["alpaca_eval"]["n_total"] == 8
    assert scores["alpaca_eval"]["judge"] == {"type": "by_length", "pipeline_check": True}
    assert "pipeline check, not a quality measure" in (ev / "README.md").read_text()
    # what it cannot do is refused before anything runs, naming the types that can
    code, _, err = cli("validate", "tiny/eval", "stage.benchmarks=[mt_bench]", "~stage.judge.module",
                       "stage.judge={type: by_length}", "--no-preflight")
    assert code == 2 and "cannot grade an answer 1-10, which MT-Bench needs" in err and "by_length" not in \
        err.split("fix:")[1]


def test_a_judge_type_the_recipe_names_as_code_needs_trust(tmp_path, cli, monkeypatch):
    name = _module(tmp_path, "zr_length_judge_recipe", monkeypatch)
    kind = f"{name}:LengthJudge"
    recipe, _ = _aif_recipe(tmp_path, f"{{type: '{kind}', prefer: shorter}}")
    out = tmp_path / "aif"
    try:
        code, _, err = cli(str(recipe), f"run.output_dir={out}")
        assert code == 2 and kind in err and "--trust-recipe-code" in err and not out.exists()
        code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code")
        assert code == 0, err
        ratings = [json.loads(line) for line in (out / "ratings.jsonl").read_text().splitlines()]
        assert len(ratings) == len(PROMPTS) * 3 and all(r["raw"].endswith(" words") for r in ratings)
        from zephyr_recipes.core import trust

        listed = trust.describe({"stage": {"judge": {"type": kind, "prefer": "shorter"}}})
        assert listed == [f"stage.judge.type = {kind}  (outside zephyr_recipes: needs --trust-recipe-code)"]
    finally:
        judge_registry.TYPES.pop(kind, None)
        JudgeSpec.TYPES.pop(kind, None)


def test_the_older_register_call_still_adds_a_type(tmp_path, monkeypatch):
    """register_judge(name, schema, make): the form an earlier module may use, wrapped in a class."""
    from zephyr_recipes.feedback.specs import FunctionJudgeSpec, register_judge

    register_judge("old_style", FunctionJudgeSpec, lambda spec, hardware: judges.FunctionJudge(spec["module"]))
    try:
        judge = judge_registry.make_judge({"type": "old_style", "module": "zephyr_recipes.embedded.lexical_judge"})
        assert isinstance(judge, judges.FunctionJudge)
        judge_registry.check_judge("old_style", "compare", "AlpacaEval")  # a plain maker: assumed able, as before
        assert judge_registry.reads_prompts("old_style")
    finally:
        from zephyr_recipes.feedback.specs import JUDGE_MAKERS

        JudgeSpec.TYPES.pop("old_style", None)
        JUDGE_MAKERS.pop("old_style", None)
    assert "old_style" not in judge_registry.names()


def test_an_ai_feedback_run_types_its_stage_once_and_checks_its_judge_settings_once(tmp_path, cli, installed,
                                                                                     monkeypatch):
    """Validation turns the stage section (its judge with it) into typed settings once, and checks the judge's
    settings once; the plan, the pre-flight probe, the run (the frozen config read back) and make_judge reuse them."""
    import sys

    from zephyr_recipes.core import recipe as typed_recipe
    from zephyr_recipes.core import schema
    from zephyr_recipes.stages import aif

    made = {"aif section typed": 0, "judge settings checked": 0}
    real_typed, real_check = schema.typed, schema.check_section

    def counted_typed(cls, values):
        made["aif section typed"] += cls is aif.AIFStageConfig
        return real_typed(cls, values)

    def counted_check(where, values, kind, *args, **kwargs):
        made["judge settings checked"] += isinstance(kind, type) and issubclass(kind, JudgeSpec)
        return real_check(where, values, kind, *args, **kwargs)

    monkeypatch.setattr(typed_recipe, "typed", counted_typed)
    for name, module in list(sys.modules.items()):  # every module holding check_section, the schema's own too
        if name.startswith("zephyr_recipes") and getattr(module, "check_section", None) is real_check:
            monkeypatch.setattr(module, "check_section", counted_check)
    monkeypatch.setattr(typed_recipe, "_MADE", [])  # nothing typed before this run
    recipe, _ = _aif_recipe(tmp_path, "{type: by_length, prefer: shorter}")
    out = tmp_path / "aif"
    code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code")
    assert code == 0, err
    ratings = [json.loads(line) for line in (out / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == len(PROMPTS) * 3 and all(r["raw"].endswith(" words") for r in ratings)
    assert "stage.judge: rated a constructed answer" in err  # the pre-flight asked it (made it) too
    assert made == {"aif section typed": 1, "judge settings checked": 1}
    # a changed section is typed anew (never a stale one)
    made_stage = next(seen for cls, seen, _ in reversed(typed_recipe._MADE) if cls is aif.AIFStageConfig)
    cfg = {"stage": {**json.loads(json.dumps(made_stage)), "self_agreement": 0.5}}
    assert aif.section(cfg).self_agreement == 0.5 and made["aif section typed"] == 2


def test_a_protocol_is_refused_for_a_type_that_is_not_a_chat_model(tmp_path, cli, installed):
    """What a type declares (CHAT) decides whether it can be asked with UltraFeedback's protocol, not its name."""
    recipe, _ = _aif_recipe(tmp_path, "{type: by_length, prefer: longer, protocol: ultrafeedback}")
    code, _, err = cli("validate", str(recipe), "--no-preflight")
    assert code == 2 and "stage.judge of type by_length is not a chat model and is asked with no protocol" in err
    assert "remove stage.judge.protocol" in err
    code, _, err = cli("validate", "tiny/aif", "stage.judge.protocol=ultrafeedback", "--no-preflight")
    assert code == 0, err  # a function judge's chat(messages) plays the chat model


def test_the_audit_costs_a_second_judge_of_a_registered_type_by_its_own_cost_model(tmp_path, cli, installed):
    recipe, _ = _aif_recipe(tmp_path, "{type: function, module: zephyr_recipes.embedded.judge}")
    code, text, err = cli("plan", str(recipe), "stage.audit.enabled=true",
                          "stage.audit.judges=[{type: by_length, prefer: shorter}]")
    assert code == 0, err
    assert "calls of the answer-length rule (shorter)" in text  # LengthJudge.load, not the generic one


def test_a_judge_type_named_as_code_is_part_of_the_ratings_identity(tmp_path, monkeypatch):
    """Incremental AI feedback reuses a rating only from the same judge: for a type the recipe names as code, the
    same code (its module's source)."""
    from zephyr_recipes.feedback import ledger

    name = _module(tmp_path, "zr_length_judge_identity", monkeypatch)
    spec = {"type": f"{name}:LengthJudge", "prefer": "longer"}
    before = ledger.judge_id(spec)
    assert ledger.judge_id(dict(spec)) == before
    (tmp_path / f"{name}.py").write_text(MODULE.replace("1 + n // 4", "1 + n // 5"))
    assert ledger.judge_id(spec) != before


def test_a_type_that_names_its_benchmarks_is_refused_for_the_others():
    """BENCHMARKS narrows what a type may judge beyond the kinds it can do; the refusal names the types that can."""
    from dataclasses import dataclass

    @dataclass
    class OnlyAlpacaSettings(JudgeSpec):
        pass

    class OnlyAlpaca(judges.FunctionJudge):
        type = "only_alpaca"
        Settings = OnlyAlpacaSettings
        KINDS = frozenset({"compare"})
        BENCHMARKS = frozenset({"AlpacaEval"})

    judge_registry.register_judge(OnlyAlpaca)
    try:
        judge_registry.check_judge("only_alpaca", "compare", "AlpacaEval")
        with pytest.raises(ZephyrError) as refused:
            judge_registry.check_judge("only_alpaca", "compare", "AlpacaEval 2.0")
        assert "cannot" in refused.value.problem and "only_alpaca" not in refused.value.fix
        assert "only_alpaca" in judge_registry.able("compare", "AlpacaEval")
        assert "only_alpaca" not in judge_registry.able("verdict", "Arena-Hard")
    finally:
        judge_registry.TYPES.pop("only_alpaca", None)
        JudgeSpec.TYPES.pop("only_alpaca", None)
