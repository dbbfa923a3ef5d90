"""UltraFeedback's published annotation prompts, as data.

Each prompt is one file of this folder, ``<name>.txt``: its text exactly as the upstream code defines it (UTF-8,
LF line ends, trailing spaces kept, and no newline added at the end), read here under the upstream names:

- ``system_prompt`` and the six aspect templates: the string constants of src/data_annotation/preference_templates.py
  of OpenBMB/UltraFeedback at commit bf80fd46a8c6ceecc86e8babb1ae8771f26a3cbb
  (https://github.com/OpenBMB/UltraFeedback);
- ``critique_system_prompt`` and ``critique_feedback_prompt``: ``system_prompt`` and ``feedback_prompt`` of
  src/data_annotation/annotate_critique.py;
- ``rescore_system_prompt`` and ``rescore_feedback_prompt``: ``system_prompt`` and ``feedback_prompt`` of
  src/data_annotation/fix_overall_score_issue.py (the overall_score fix, UltraFeedback issue #8).

Only the names of the last four are changed (each upstream file calls them system_prompt and feedback_prompt).
``SOURCES.md`` lists each file with its sha256, ``LICENSE`` is the upstream licence (MIT, Copyright (c) 2023 THUNLP).
How they are used is in :mod:`zephyr_recipes.feedback.ultrafeedback`.
"""

from __future__ import annotations

from importlib import resources


def _read(name: str) -> str:
    """The prompt ``name``, byte for byte (not through a text reader, which would translate line ends)."""
    return resources.files(__name__).joinpath(f"{name}.txt").read_bytes().decode("utf-8")


# preference_templates.py
system_prompt = _read("system_prompt")
instruction_following_template = _read("instruction_following_template")
honesty_template = _read("honesty_template")
truthfulness_template_with_answer = _read("truthfulness_template_with_answer")
truthfulness_template_without_answer = _read("truthfulness_template_without_answer")
helpfulness_template_with_answer = _read("helpfulness_template_with_answer")
helpfulness_template_without_answer = _read("helpfulness_template_without_answer")

# annotate_critique.py
critique_system_prompt = _read("critique_system_prompt")
critique_feedback_prompt = _read("critique_feedback_prompt")

# fix_overall_score_issue.py
rescore_system_prompt = _read("rescore_system_prompt")
rescore_feedback_prompt = _read("rescore_feedback_prompt")
