"""Judges: rate one answer on the UltraFeedback aspects, grade it 1-10 (MT-Bench), compare two, or give an
Arena-Hard verdict on two.

A judge is a Python module of checking functions (for tasks whose answers a program can check), a chat model
behind any backend, prompted and parsed robustly, or a type a stage module registers (a reward model). Every
judge answers one call, ``judge.ask(kind, items, benchmark)``, for :class:`Item` s that carry both what a program
reads (messages, answers, reference) and what a chat model reads (prompt, reply parser); no caller needs to know
which judge it holds. A reply that cannot be parsed is asked again up to ``max_retries`` times, then recorded as a
:class:`JudgeFailure`; it is never silently given a score.

The pieces: :mod:`.judge_base` (the :class:`Judge` interface, :class:`Item`, :class:`Verdict`, :class:`Unparsable`),
:mod:`.replies` (the reply parsers and :class:`JudgeFailure`), :mod:`.judge_prompts` (the single-answer rubric and
prompt building), and the judge types :mod:`.function_judge`, :mod:`.model_judge` and :mod:`.reward_judge`. Every
name stays importable from here.
"""

from __future__ import annotations

from . import judge_registry
from .function_judge import RESULT_SHAPES, FunctionJudge, checked_result
from .judge_base import ASK_ONCE, WHAT, Item, Judge, Unparsable, Verdict
from .judge_prompts import ULTRAFEEDBACK_PROMPT, chat_messages, fill, format_conversation
from .model_judge import TOP_LOGPROBS, ModelJudge, OpenAIModelJudge, TransformersModelJudge, VLLMModelJudge
from .replies import (
    VERDICT_LABELS,
    JudgeFailure,
    label_probability,
    parse_aspect_ratings,
    parse_grade,
    parse_preference,
    parse_ranking,
    parse_verdict,
)
from .reward_judge import RewardModelJudge

__all__ = [
    "ASK_ONCE", "RESULT_SHAPES", "TOP_LOGPROBS", "ULTRAFEEDBACK_PROMPT", "VERDICT_LABELS", "WHAT", "FunctionJudge",
    "Item", "Judge", "JudgeFailure", "ModelJudge", "OpenAIModelJudge", "RewardModelJudge", "TransformersModelJudge",
    "Unparsable", "VLLMModelJudge", "Verdict", "chat_messages", "check_judge", "checked_result", "fill",
    "format_conversation", "judge_types", "label_probability", "make_judge", "parse_aspect_ratings", "parse_grade",
    "parse_preference", "parse_ranking", "parse_verdict", "reads_prompts",
]


# ---------------------------------------------------------------------------------------------- making
# The judge types are registered in .judge_registry (one line each); these are its answers, under their old names.
def judge_types() -> dict:
    """Judge type -> the class its judges are."""
    return {name: judge_registry.judge_class(name) for name in judge_registry.names()}


check_judge = judge_registry.check_judge
reads_prompts = judge_registry.reads_prompts
make_judge = judge_registry.make_judge
