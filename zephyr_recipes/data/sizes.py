"""Sizes of data a plan counts without loading it: published row counts of well-known hub datasets and a
typical prompt length. Read by the time plan and by stages that estimate their own work (AI feedback)."""

from __future__ import annotations

PROMPT_TOKENS = 256  # typical prompt length for generation estimates (an assumption, printed)

# Published row counts of well-known hub datasets (their dataset cards), and a typical row length in tokens of a
# Llama/Mistral-style tokenizer (an estimate, printed as one: give --tokens-per-row when you know better).
DATASETS: dict[str, tuple[dict[str, int], int]] = {
    "HuggingFaceH4/ultrachat_200k": ({"train_sft": 207865, "test_sft": 23110, "train_gen": 256032,
                                      "test_gen": 28304}, 1400),
    "HuggingFaceH4/ultrafeedback_binarized": ({"train_prefs": 61135, "test_prefs": 2000, "train_sft": 61135,
                                               "test_sft": 1000, "train_gen": 61135, "test_gen": 1000}, 600),
    "openbmb/UltraFeedback": ({"train": 63967}, 200),
}
