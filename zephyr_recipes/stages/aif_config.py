"""The AI feedback stage's section (`stage:` of tiny/aif and friends): what it reads, with each key's help.

Its own module so that the stage (:mod:`.aif`) and the steps it runs (:mod:`.aif_answers`) both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.schema import StageSection, option
from ..data.binarize import BinarizeRule
from ..feedback import audit as judge_audit
from ..feedback.specs import GeneratorSpec, JudgeSpec


@dataclass
class AIFStageConfig(StageSection):
    """The AI feedback stage: generators answer the dataset's prompts, a judge rates, pairs are binarized."""

    generators: list[GeneratorSpec] = option([], "Models that answer, each {type: transformers | openai | function, "
                                             "name, ...}; see `zephyr-recipes show` for every key of each type.")
    num_completions: int = option(1, "Completions per prompt from each generator, unless the generator says otherwise.")
    sampling: dict = option({"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256},
                        "Default sampling settings of every generator (temperature, top_p, max_new_tokens); keys "
                        "given here replace these one by one.", merge=True)
    judge: Optional[JudgeSpec] = option(None, "The judge that rates every answer: {type: function, module} | "
                                          "{type: transformers, model} | {type: openai, base_url | serve, model} | "
                                          "{type: reward_model, model}.")
    self_agreement: float = option(0.0, "Share of completions the judge rates a second time to measure its consistency "
                                        "(stage.audit's test-retest measures it with an interval, on its sample).")
    audit: judge_audit.AuditConfig = option(judge_audit.AuditConfig, "The audit of the judge: order consistency, "
                                            "test-retest, second judges, length bias, self-preference, with 95% "
                                            "intervals in audit.json; flagged pairs kept, dropped or flipped; bars "
                                            "that end the stage (docs/audit.md).")
    binarize: BinarizeRule = option(BinarizeRule, "How ratings become pairs (the rule of ultrafeedback_binarized).")
    test_fraction: float = option(0.05, "Share of prompts written to test_prefs instead of train_prefs (by prompt id).")
    prompt_offset: Optional[int] = option(
        None, "Take dataset.max_train_samples distinct prompts starting at this position of the seeded shuffle, "
              "so the rounds of an iterative pipeline answer disjoint slices (null: the usual seeded sample).")
