"""Row kinds as the data layer's seam: unpaired rows (prompt, completion, label) read natively and converted from
preference pairs, the prepared-rows cache keyed by the kind and its version, and the KTO stage that reads them
through validate and preview. Real files, the real loader and the tokenizer of the embedded tiny model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from zephyr_recipes import stages
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.data import kinds
from zephyr_recipes.data import load_for_stage as load_rows
from zephyr_recipes.model import modeling
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate
from zephyr_recipes.stages.kto import KTO


def load_for_stage(cfg, tokenizer):
    """The rows of cfg's stage, its row kind handed down as the run does."""
    return load_rows(cfg, tokenizer, stages.get(cfg.stage.name).rows)

TINY = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr", "--no-preflight"]


@pytest.fixture(scope="module")
def tok(home):
    return modeling.load_tokenizer(cfg("sft", {"path": "x"}).model)


def cfg(stage: str, dataset: dict, trainer: dict | None = None):
    raw = {"model": {"name_or_path": "builtin://tiny-mistral", "chat_template": "zephyr"}, "dataset": dataset,
           "hardware": {"device": "cpu"}, "run": {"seed": 0},
           "stage": {"name": stage, "trainer": {"max_length": 128, "per_device_train_batch_size": 4, **(trainer or {})}}}
    return validate(raw, "test/kinds")


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def pairs(n: int, start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + n):
        user = {"role": "user", "content": f"pick a colour {i}"}
        out.append({"prompt": user["content"], "chosen": [user, {"role": "assistant", "content": f"blue {i}"}],
                    "rejected": [user, {"role": "assistant", "content": f"grey {i}"}]})
    return out


def prompt_of(row: dict) -> str:
    return row["prompt"][0]["content"]


def test_each_pair_gives_a_desirable_and_an_undesirable_row_shuffled(tmp_path, tok):
    same = pairs(1, 100)[0]
    same["rejected"] = same["chosen"]
    path = write_jsonl(tmp_path / "prefs.jsonl", pairs(20) + [same])
    train, _, info = load_for_stage(cfg("kto", {"path": path}), tok)
    assert set(train.column_names) == {"prompt", "completion", "label"}
    assert len(train) == 40 and sum(train["label"]) == 20
    assert info["sources"][0]["dropped"] == {"identical_answers": 1}  # counted once per pair, not per answer
    by_prompt: dict = {}
    for row in train:
        by_prompt.setdefault(prompt_of(row), {})[row["label"]] = row["completion"][0]["content"]
    assert len(by_prompt) == 20
    assert all(a[True] == f"blue {p.split()[-1]}" and a[False] == f"grey {p.split()[-1]}" for p, a in by_prompt.items())
    # TRL reads KTO rows in order and takes the KL term from a row's batch neighbours: the two answers of a
    # prompt must not follow each other as they were written
    neighbours = sum(prompt_of(train[i]) == prompt_of(train[i + 1]) for i in range(len(train) - 1))
    assert neighbours < 10
    again, _, _ = load_for_stage(cfg("kto", {"path": path, "cache": False}), tok)
    assert again["completion"] == train["completion"]  # seeded


def test_unpaired_rows_are_read_as_they_are_with_their_checks(tmp_path, tok):
    rows = [{"question": f"say {i}", "answer": f"word {i}", "thumbs": i % 2 == 0} for i in range(8)]
    rows += [{"question": "say x", "answer": "x", "thumbs": "yes"},
             {"question": "say y", "answer": "  ", "thumbs": 1},
             {"question": "say z", "answer": "z", "thumbs": 0}]
    path = write_jsonl(tmp_path / "feedback.jsonl", rows)
    columns = {"prompt": "question", "completion": "answer", "label": "thumbs"}
    train, _, info = load_for_stage(cfg("kto", {"path": path, "columns": columns}), tok)
    assert len(train) == 9 and sum(train["label"]) == 4
    assert info["sources"][0]["dropped"] == {"not_a_label": 1, "empty_content": 1}
    assert train[0]["prompt"][0]["role"] == "user" and train[0]["completion"][0]["role"] == "assistant"
    with pytest.raises(ZephyrError, match="not_a_label") as exc:
        load_for_stage(cfg("kto", {"path": path, "columns": columns, "strict": True}), tok)
    assert "dataset.strict=false" in exc.value.fix


def test_a_dataset_of_neither_kind_names_the_missing_column(tmp_path, tok):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(ZephyrError, match="no column 'prompt'") as exc:
        load_for_stage(cfg("kto", {"path": path}), tok)
    assert "dataset.columns.prompt=<column>" in exc.value.fix


def test_the_cache_never_reads_rows_of_another_kind(tmp_path, tok, cli, monkeypatch):
    """A stage whose rows change keeps its name: before the kind was in the cache key, `validate` then read the
    pairs cached under the old kind and failed with KeyError: 'completion'."""
    path = write_jsonl(tmp_path / "prefs.jsonl", pairs(12))
    overrides = [f"dataset.path={path}", "dataset.test_split=null", *TINY[:2]]
    recipe = validate(compose("tiny/kto", overrides)[0], "tiny/kto")
    with monkeypatch.context() as m:
        m.setattr(KTO, "rows", kinds.PAIRS)  # the stage as it read pairs
        # --recheck: the patch is a change of code that validate's memory cannot see (it digests the files)
        code, out, err = cli("validate", "tiny/kto", *overrides, "--no-preflight", "--recheck")
        assert code == 0, out + err
        stale, _, info = load_for_stage(recipe, tok)
        assert info["cache"]["hit"] and "chosen" in stale.column_names  # what validate prepared and cached
    code, out, err = cli("validate", "tiny/kto", *overrides, "--no-preflight", "--recheck")  # unpaired rows now
    assert code == 0, out + err
    assert "first row as the trainer sees it" in out
    train, _, info = load_for_stage(recipe, tok)
    assert info["cache"]["hit"] and "completion" in train.column_names and len(train) == 24
    # a new version of the kind (its rows changed shape) prepares them again
    monkeypatch.setattr(type(kinds.UNPAIRED), "version", kinds.UNPAIRED.version + 1)
    _, _, bumped = load_for_stage(recipe, tok)
    assert not bumped["cache"]["hit"] and bumped["cache"]["key"] != info["cache"]["key"]


def test_kto_validate_and_preview_show_desirable_and_undesirable_rows(tmp_path, cli):
    path = write_jsonl(tmp_path / "prefs.jsonl", pairs(12))
    code, out, err = cli("preview", "tiny/kto", f"dataset.path={path}", "dataset.test_split=null", "-n", "2",
                         *TINY[:2])
    assert code == 0, out + err
    assert "24 training rows" in out and "desirable" in out
    assert "(desirable and undesirable sequences)" in out or "(undesirable and desirable sequences)" in out
    assert "[[" in out  # trained tokens: the completion


@pytest.mark.parametrize("override, needle", [
    ("stage.trainer.per_device_train_batch_size=1", "batch per device is 1"),
    ("stage.trainer.train_sampling_strategy=random", "fixed-order batch"),
    ("stage.trainer.beta=0", "KTO's beta must be positive"),
])
def test_kto_refuses_what_breaks_its_kl_term(override, needle, cli, tmp_path):
    code, _, err = cli("validate", "tiny/kto", override, *TINY)
    assert code == 2 and needle in err and "\n  fix: " in err


def test_row_kinds_are_registered_and_named():
    assert {"chat", "pairs", "unpaired", "prompts"} <= set(kinds.KINDS)
    assert kinds.get("unpaired") is kinds.UNPAIRED and kinds.get(kinds.PAIRS) is kinds.PAIRS
    assert kinds.UNPAIRED.converts_from == ("pairs",)
    with pytest.raises(ZephyrError, match="is not a row kind") as exc:
        kinds.get("unpared")
    assert "did you mean unpaired" in exc.value.fix
    with pytest.raises(ZephyrError, match="registered twice"):
        kinds.register(type(kinds.CHAT)())
    counts = Counter(k.name for k in kinds.KINDS.values())
    assert max(counts.values()) == 1
