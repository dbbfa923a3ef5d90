"""The benchmark runs (smoke sizes, one repetition) and writes its table and JSON. Times are never asserted."""

from __future__ import annotations

import json

import pytest

from bench import gpu_sft
from bench import run as bench


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import logging

    import datasets
    import transformers

    # The benchmark quiets logging for its own process; the tests that run after this module need it back.
    logger = logging.getLogger("zephyr_recipes")
    level, verbosity = logger.level, transformers.logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    out = tmp_path_factory.mktemp("bench-results")
    try:
        results = bench.run_all(out, reps=1, only=("sft", "loss", "dpo", "aif", "data"), smoke=True)
    finally:
        logger.setLevel(level)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
    return out, results


@pytest.mark.slow
def test_smoke_writes_table_and_json(smoke):
    out, results = smoke
    saved = json.loads((out / "bench.json").read_text())
    assert saved["smoke"] is True and saved["reps"] == 1
    for key in ("cpu", "cores", "torch", "transformers", "trl", "date"):
        assert key in saved["machine"]
    table = (out / "bench.md").read_text()
    assert table.splitlines()[2].startswith("| figure | baseline |")
    for label in ("SFT tokens/s, bfd packing", "SFT tokens/s, padding-free", "per-example loss", "DPO s/step",
                  "AIF completions/s", "data preparation"):
        assert label in table


@pytest.mark.slow
def test_smoke_figures_have_medians_spreads_and_ratios(smoke):
    _, r = smoke
    for method in bench.SFT_METHODS:
        stat = r["sft"]["tokens_per_s"][method]
        assert stat["n"] == 1 and stat["min"] <= stat["median"] <= stat["max"]
    assert set(r["sft"]["ratio_vs_trl_default"]) == set(bench.SFT_METHODS)
    assert r["sft"]["lengths"]["max"] <= r["sft"]["max_length"]
    assert r["dpo"]["reference_model"]["step"]["n"] == 1 and r["dpo"]["faster"] in ("precomputed", "reference_model")
    assert r["aif"]["completions_per_s"]["batched"]["median"] > 0 and r["aif"]["batch_size"] > 1
    assert r["data"]["cache_hits"] == [True] and r["data"]["train_rows"] > 0


@pytest.mark.slow
def test_packed_batch_does_not_leak_across_examples(smoke):
    """Not a time: TRL's padding-free row gives each example the loss it has alone; the leaky controls do not."""
    loss = smoke[1]["loss"]
    assert loss["max_abs_diff_packed_vs_alone"] < 1e-4
    assert loss["max_abs_diff_padded_vs_alone"] < 1e-4
    assert loss["max_abs_diff_leaky_vs_alone"] > 1e-3


@pytest.mark.slow
def test_overhead_smoke(tmp_path):
    r = bench.bench_overhead(reps=1, max_steps=1, warmup=False, work=tmp_path)
    for kind in ("runner", "plain_trl"):
        assert r[kind]["first_step_s"]["n"] == 1
        assert r[kind]["first_step_s"]["median"] <= r[kind]["total_s"]["median"]
    assert "overhead_total" in r and "overhead_first_step" in r


@pytest.mark.slow
def test_tracking_smoke_pairs_runs_and_counts_cpu(tmp_path):
    r = bench.bench_tracking(reps=1, max_steps=2, work=tmp_path)
    assert r["wall_ratio"]["n"] == 1 and r["cpu_ratio"]["n"] == 1 and r["load"]["n"] == 2
    assert r["trackio_cpu_s"]["median"] > 0 and r["none_cpu_s"]["median"] > 0
    assert r["overhead"] == r["wall_ratio"]["median"] - 1
    assert any((tmp_path / "trackio").rglob("*.db"))  # the tracked run wrote its store; the other did not ask for one
    text = bench.markdown({"machine": bench.machine(), "reps": 1, "tracking": r})
    assert "CPU seconds, tiny/sft, 2 steps" in text and "paired" in text


def test_summary_spread():
    s = bench.summary([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4) and len(s["iqr"]) == 2


def test_ultrachat_like_rows_schema_and_long_tail():
    rows = bench.ultrachat_like_rows(400, seed=0)
    assert set(rows[0]) == {"prompt", "prompt_id", "messages"}
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    words = sorted(sum(len(m["content"].split()) for m in r["messages"]) for r in rows)
    assert words[-1] > 2.5 * words[len(words) // 2]  # long tail: the longest far above the median


def test_gpu_script_refuses_without_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_sft.main(["--steps", "1"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_gpu_script_flops_arithmetic():
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    cfg = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=100, tie_word_embeddings=False)
    with torch.device("meta"):
        model = MistralForCausalLM(MistralConfig(**cfg))
    counted = gpu_sft.param_count(cfg)
    assert counted["total"] == sum(p.numel() for p in model.parameters())
    # 6 x (layer matmuls + LM head) + 12 x layers x hidden x seq
    expected = 6 * (counted["layers"] + 100 * 64) + 12 * 2 * 64 * 128
    assert gpu_sft.flops_per_token(cfg, 128) == expected
    assert gpu_sft.mfu(1000.0, expected, expected * 2000.0) == pytest.approx(0.5)
    big = gpu_sft.param_count(gpu_sft.MODEL_1B)["total"]
    assert 0.9e9 < big < 1.4e9


def test_gpu_check_refuses_without_gpu_and_writes_nothing(tmp_path):
    """`make gpu-check` on this machine (no CUDA GPU): exit code 2, a sentence, no results folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), CUDA_VISIBLE_DEVICES="")
    # -o: the environment is the one running this test; make does not reinstall it first
    proc = subprocess.run(["make", "-s", "-C", str(root), "-o", ".venv/.installed", "gpu-check",
                           f"GPU_CHECK_ARGS=--out {tmp_path / 'gc'}",
                           f"PY={sys.executable}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs a CUDA GPU" in proc.stderr and "nothing was run or written" in proc.stderr
    assert not (tmp_path / "gc").exists()


def test_gpu_check_counts_attention_on_the_packed_documents():
    from bench import gpu_check

    cfg = dict(gpu_sft.MODEL_1B)
    one_row = gpu_check.attention_flops(cfg, [2048])
    packed = gpu_check.attention_flops(cfg, [1024, 512, 512])  # the same 2048 tokens as three documents
    assert packed == one_row * (1024**2 + 2 * 512**2) / 2048**2 < one_row
    assert gpu_check.attention_flops(cfg, [2048]) == 12 * 22 * 2048 * 2048**2
    assert gpu_check.datasheet_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_check.datasheet_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.datasheet_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.datasheet_peak("Some Future Card") is None


@pytest.mark.slow
def test_audit_smoke_times_both_and_scores_the_flags(tmp_path):
    r = bench.bench_audit(reps=1, prompts=40, work=tmp_path)
    assert r["audit_off_s"]["n"] == 1 and r["audit_on_s"]["n"] == 1 and r["ratio"] > 0
    assert set(r["levels"]) == set(bench.NOISE_LEVELS)
    for got in r["levels"].values():  # the embedded truth is measured for both noise levels
        assert got["mislabelled"]["n"] > 0 and got["flag_recall"]["n"] == got["mislabelled"]["count"]
    text = bench.markdown({"machine": bench.machine(), "reps": 1, "audit": r})
    assert "audit on (retest + a second judge)" in text and "flag precision" in text
