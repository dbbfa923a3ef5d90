"""The plan's tokens are the trainer's: counted from the tokenized rows as TRL's trainers tokenize them (truncation
and packing included), from --tokens-per-row and the row count where the data is not here; a dry run says the
same as `plan` and keeps it in dry-run.json; a dry run clears launcher files of another profile; saved files get
the umask's modes."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from tests.byo_helpers import build_chatml_llama, write_pref_jsonl, write_sft_jsonl


def _tokens_line(out: str) -> str:
    found = re.search(r"^\s*tokens: .*$", out, re.M)
    assert found, out
    return found.group(0).strip()


def _dry_run(cli, tmp_path, *args):
    """(printed text, dry-run.json) of a dry run of ``args`` into tmp_path."""
    code, out, err = cli("run", *args, f"run.output_dir={tmp_path / 'run'}", "--dry-run")
    assert code == 0, out + err
    return out, json.loads((tmp_path / "run.dry-run" / "dry-run.json").read_text())


# ------------------------------------------------------------------------------------------- the counting rules
def test_row_tokens_follow_the_trainers_truncation_packing_and_dropping():
    from zephyr_recipes.data.preview import CUT, MASKED, TRAINED
    from zephyr_recipes.data.tokencount import row_tokens

    cut = {"": [(1, MASKED)] * 3 + [(2, TRAINED)] * 5 + [(3, CUT)] * 4}
    assert row_tokens(cut, {"max_length": 8}) == 8  # what is past max_length is not in the batch
    prompt_fills = {"chosen": [(1, MASKED)] * 8 + [(2, CUT)] * 3, "rejected": [(1, MASKED)] * 8 + [(2, CUT)]}
    assert row_tokens(prompt_fills, {"max_length": 8}) is None  # nothing left to train on: TRL drops the row
    pair = {"chosen": [(1, MASKED)] * 2 + [(2, TRAINED)] * 3, "rejected": [(1, MASKED)] * 2 + [(2, TRAINED)] * 6}
    assert row_tokens(pair, {"max_length": 16}) == 13  # chosen and rejected both go through the model
    assert row_tokens(cut, {"max_length": 8}, overlong="drop") is None  # the reward trainer filters long rows out
    assert row_tokens(pair, {"max_length": 16}, overlong="drop") == 13
    long = {"": [(1, TRAINED)] * 12}  # a packed row is never cut by _truncate: packing decides
    assert row_tokens(long, {"max_length": 8, "packing": True}, packs=True) == 8  # bfd truncates the overflow
    assert row_tokens(long, {"max_length": 8, "packing": True, "packing_strategy": "bfd_split"}, packs=True) == 12
    assert row_tokens(long, {"max_length": 8, "packing": True, "packing_strategy": "wrapped"}, packs=True) == 12


def test_a_large_dataset_is_counted_on_a_sample_and_says_so():
    import datasets

    from zephyr_recipes.data import kinds, tokencount
    from zephyr_recipes.model import modeling

    tokenizer = modeling.load_tokenizer({"name_or_path": "builtin://tiny-mistral", "tokenizer_name_or_path": None,
                                         "chat_template": "zephyr", "revision": "main", "trust_remote_code": False})
    rows = [{"messages": [{"role": "user", "content": "word " * (1 + i % 17)},
                          {"role": "assistant", "content": "answer " * (1 + i % 5)}]} for i in range(300)]
    train = datasets.Dataset.from_list(rows)
    whole = tokencount.count(train, tokenizer, kinds.CHAT, {"max_length": 1024})
    part = tokencount.count(train, tokenizer, kinds.CHAT, {"max_length": 1024}, sample=100)
    assert not whole.extrapolated and "all 300 rows" in whole.describe()
    assert part.extrapolated and "a sample of 100 of 300 rows and extrapolated" in part.describe()
    assert part.tokens == pytest.approx(whole.tokens, rel=0.1)
    direct = sum(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                 for r in rows)
    assert whole.tokens == direct


# ---------------------------------------------------------------------------------------------- plan and dry run
def test_plan_counts_the_tiny_sft_tokens_not_the_keys_of_the_tokenized_rows(cli, tmp_path):
    """transformers 5's tokenized conversation is a dict: len() of it is 2. The plan counts its input_ids."""
    code, out, err = cli("plan", "tiny/sft", "dataset.max_train_samples=200", "stage.trainer.num_train_epochs=1")
    assert code == 0, err
    line = _tokens_line(out)
    per_row = float(re.search(r"([\d,.]+) tokens per row as the trainer tokenizes them", line).group(1))
    assert per_row > 10, line  # the embedded conversations are 20 to 60 tokens long, not 2
    assert "counted over all 200 rows" in line


def test_tokens_per_row_and_max_train_samples_plan_data_that_is_not_here(cli):
    base = ["tiny/sft", "dataset.path=some-org/not-on-this-machine", "stage.trainer.num_train_epochs=2"]
    code, out, _ = cli("plan", *base, "dataset.max_train_samples=5000", "--tokens-per-row", "300")
    assert code == 0
    line = _tokens_line(out)
    assert "unknown" not in line, line
    assert "5,000 rows (dataset.max_train_samples), given 300 tokens per row (cut to 256 by max_length)" in line
    assert line.startswith("tokens: 2.6M")  # 5,000 rows x 256 tokens x 2 epochs
    code, out, _ = cli("plan", *base, "dataset.max_train_samples=5000")
    assert "give --tokens-per-row" in _tokens_line(out) and "max_train_samples" not in _tokens_line(out)
    code, out, _ = cli("plan", *base, "--tokens-per-row", "300")
    assert "give the row count through dataset.max_train_samples" in _tokens_line(out)


def test_a_dry_run_plans_what_plan_plans_and_keeps_it_in_dry_run_json(cli, tmp_path):
    args = ["tiny/sft", "dataset.max_train_samples=300"]
    code, planned, err = cli("plan", *args, f"run.output_dir={tmp_path / 'run'}")
    assert code == 0, err
    printed, summary = _dry_run(cli, tmp_path, *args)
    assert "is not on this machine" not in printed
    assert _tokens_line(printed) == _tokens_line(planned)
    assert summary["plan"] in printed and summary["plan"].strip() == planned.strip()
    memory = summary["memory"]
    assert memory["verdict"] == "unknown"  # the cpu profile names no device memory, as the plan says
    assert memory["per_device_gb"] > 0 and "AdamW states (2 x fp32)" in memory["parts"]
    assert f"{memory['parts']['logits and loss']:.2f} GB" in printed
    assert summary["tokens"] > 300 * 10  # rows x epochs x tens of tokens


def test_a_cpu_dry_run_after_a_zero3_dry_run_lists_no_launcher_file_of_zero3(cli, tmp_path):
    out, summary = _dry_run(cli, tmp_path, "tiny/sft", "hardware=8gpu-zero3")
    assert any(c.startswith("accelerate.yaml") for c in summary["checked"])
    assert any(c.startswith("deepspeed.json") for c in summary["checked"])
    out, summary = _dry_run(cli, tmp_path, "tiny/sft")
    assert not any(c.startswith(("accelerate.yaml", "deepspeed.json")) for c in summary["checked"]), summary
    assert "accelerate.yaml" not in out and "deepspeed.json" not in out
    left = sorted(p.name for p in (tmp_path / "run.dry-run").iterdir())
    assert left == ["config.yaml", "dry-run.json", "plan.txt"]


# ------------------------------------------------------------------------------------------------- file modes
def test_saved_weights_and_embedded_models_get_the_umasks_modes(tiny_sft_run):
    from zephyr_recipes.core.filemodes import umask
    from zephyr_recipes.embedded import builtin

    mask = umask()
    weights = tiny_sft_run / "model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~mask  # safetensors alone writes 0600
    model = builtin.resolve("builtin://tiny-mistral")
    assert stat.S_IMODE(os.stat(model).st_mode) == 0o777 & ~mask  # not mkdtemp's 0700
    assert stat.S_IMODE(os.stat(f"{model}/model.safetensors").st_mode) == 0o666 & ~mask


def test_open_to_umask_loosens_only_to_the_umask(tmp_path):
    from zephyr_recipes.core.filemodes import open_to_umask

    private = tmp_path / "w.safetensors"
    private.write_bytes(b"x")
    private.chmod(0o600)
    script = tmp_path / "run.sh"
    script.write_text("true\n")
    script.chmod(0o700)
    old = os.umask(0o027)
    try:
        open_to_umask(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.stat().st_mode) == 0o640
    assert stat.S_IMODE(script.stat().st_mode) == 0o740  # its x bit kept


# --------------------------------------------------------------------------- against TRL's num_tokens, for real
def _num_tokens(folder) -> float:
    history = json.loads((folder / "log_history.json").read_text())
    return [e for e in history if "num_tokens" in e][-1]["num_tokens"]


def _plan_then_train(cli, tmp_path, *args) -> tuple[float, float]:
    """(tokens the dry run plans, TRL's num_tokens after training) of one recipe."""
    _, summary = _dry_run(cli, tmp_path, *args)
    code, out, err = cli("run", *args, f"run.output_dir={tmp_path / 'run'}")
    assert code == 0, out + err
    trained = _num_tokens(tmp_path / "run")
    print(f"\n{' '.join(args[:1])}: planned {summary['tokens']:,.0f} tokens, TRL num_tokens {trained:,.0f}: "
          f"plan / num_tokens = {summary['tokens'] / trained:.4f}")
    return summary["tokens"], trained


@pytest.mark.slow
@pytest.mark.parametrize("length", [["stage.trainer.num_train_epochs=2"], ["+stage.trainer.max_steps=40"]],
                         ids=["epochs", "max_steps"])
def test_tiny_sft_plan_is_within_5_percent_of_trls_num_tokens(cli, tmp_path, length):
    """tiny/sft as shipped (bfd packing at max_length 256, assistant-only loss), on fewer rows, for two epochs and
    for 40 steps (the plan's max_steps cap counts packed rows of a batch)."""
    planned, trained = _plan_then_train(cli, tmp_path, "tiny/sft", "dataset.max_train_samples=600", *length,
                                        "stage.trainer.logging_steps=1")
    assert planned == pytest.approx(trained, rel=0.05), (planned, trained)


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    """A local model whose byte-level BPE tokenizer carries a ChatML template (not the embedded Zephyr one)."""
    root = tmp_path_factory.mktemp("chatml")
    return {"model": build_chatml_llama(root / "model"), "sft": write_sft_jsonl(root / "chat.jsonl", n=96),
            "prefs": write_pref_jsonl(root / "prefs.jsonl", n=64)}


@pytest.mark.slow
def test_sft_plan_on_a_chatml_tokenizer_with_truncation_is_within_5_percent(cli, tmp_path, chatml):
    planned, trained = _plan_then_train(
        cli, tmp_path, "tiny/sft", f"model.name_or_path={chatml['model']}", "model.chat_template=null",
        f"dataset.path={chatml['sft']}", "dataset.test_split=null", "stage.trainer.packing=false",
        "stage.trainer.assistant_only_loss=false", "stage.trainer.max_length=40", "stage.trainer.num_train_epochs=2",
        "stage.trainer.per_device_train_batch_size=4", "stage.trainer.logging_steps=1")
    assert planned == pytest.approx(trained, rel=0.05), (planned, trained)


@pytest.mark.slow
def test_dpo_plan_on_a_chatml_tokenizer_with_truncation_is_within_5_percent(cli, tmp_path, chatml):
    planned, trained = _plan_then_train(
        cli, tmp_path, "tiny/dpo", f"model.name_or_path={chatml['model']}", "model.chat_template=null",
        f"dataset.path={chatml['prefs']}", "dataset.test_split=null", "dataset.test_fraction=null",
        "stage.trainer.max_length=28", "stage.trainer.num_train_epochs=1",
        "stage.trainer.per_device_train_batch_size=4", "stage.trainer.logging_steps=1")
    assert planned == pytest.approx(trained, rel=0.05), (planned, trained)


def test_a_dry_run_counts_no_tokens_with_the_models_own_code(cli, tmp_path):
    """model.trust_remote_code=true without --trust-recipe-code: the dry run reports the code and never runs it,
    not even to tokenize rows for the plan."""
    import shutil

    from zephyr_recipes.embedded import builtin

    folder = tmp_path / "custom"
    shutil.copytree(builtin.resolve("builtin://tiny-mistral"), folder)
    marker = tmp_path / "ran"
    (folder / "mytok.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from transformers import PreTrainedTokenizerFast as MyTok\n")
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.update(tokenizer_class="MyTok", auto_map={"AutoTokenizer": [None, "mytok.MyTok"]})
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    out, summary = _dry_run(cli, tmp_path, "tiny/sft", f"model.name_or_path={folder}", "model.trust_remote_code=true")
    assert not marker.exists(), "the dry run ran the model's code"
    assert "--trust-recipe-code" in " ".join(summary["notes"])
