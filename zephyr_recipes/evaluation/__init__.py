"""Evaluation: MT-Bench, AlpacaEval and the Open LLM Leaderboard (v1) tasks, and reports that compare runs.

The stage itself is :mod:`zephyr_recipes.stages.eval`; this package holds the pieces it composes:
:mod:`.sources` (questions and prompts from a path, URL or hub id), :mod:`.mt_bench`, :mod:`.alpaca`,
:mod:`.harness` (lm-evaluation-harness), :mod:`.plots` (radar chart) and :mod:`.compare` (the report command).
"""
