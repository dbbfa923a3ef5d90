"""Evaluation: MT-Bench, AlpacaEval and the Open LLM Leaderboard (v1) tasks, and reports that compare runs.

The stage itself is :mod:`zephyr_recipes.stages.eval`; this package holds the pieces it composes:
:mod:`.sources` (questions and prompts from a path, URL or hub id), :mod:`.mt_bench`, :mod:`.alpaca`,
:mod:`.harness` (lm-evaluation-harness) and :mod:`.plots` (radar chart); the report command that compares runs
is :mod:`zephyr_recipes.reports.report`.
"""
