"""The data layer on files written here in the real schemas: mappings, binarization, mixtures, row checks,
cache invalidation, decontamination and the preview command. Offline, tokenizer of the embedded tiny model."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests.benchmark_files import ALPACA_INSTRUCTIONS, DATA  # noqa: E402
from zephyr_recipes import stages  # noqa: E402
from zephyr_recipes.commands import cli  # noqa: E402
from zephyr_recipes.core.errors import ZephyrError  # noqa: E402
from zephyr_recipes.data import load_for_stage  # noqa: E402
from zephyr_recipes.data.binarize import SCHEMA, Tally, binarize, binarize_dataset  # noqa: E402
from zephyr_recipes.model import modeling  # noqa: E402
from zephyr_recipes.runtime.validate import validate  # noqa: E402

TINY_MODEL = {"name_or_path": "builtin://tiny-mistral", "chat_template": "zephyr"}


@pytest.fixture(scope="module")
def tok(home):
    return modeling.load_tokenizer(validate(_raw("sft", {"path": "x"})).model)


def _raw(stage: str, dataset: dict, trainer: dict | None = None, seed: int = 0, model: dict | None = None) -> dict:
    return {"model": {**TINY_MODEL, **(model or {})}, "dataset": dataset, "hardware": {"device": "cpu"},
            "run": {"seed": seed}, "stage": {"name": stage, "trainer": {"max_length": 128, **(trainer or {})}}}


def cfg(stage: str, dataset: dict, **kw):
    return validate(_raw(stage, dataset, **kw), "test/data")


def load(stage, dataset, tok, **kw):
    return load_for_stage(cfg(stage, dataset, **kw), tok, stages.get(stage).rows)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def chat(i: int, turns: int = 1) -> list[dict]:
    out = []
    for t in range(turns):
        out += [{"role": "user", "content": f"question {i} part {t}"}, {"role": "assistant", "content": f"answer {i}.{t}"}]
    return out


def ultrachat_rows(n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        m = chat(i, 1 + i % 3)
        rows.append({"prompt": m[0]["content"], "prompt_id": f"id{i}", "messages": m})
    return rows


def ufb_rows(n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        user = {"role": "user", "content": f"pick a colour {i}"}
        chosen = [user, {"role": "assistant", "content": f"blue {i}"}]
        rejected = [user, {"role": "assistant", "content": f"grey {i}"}]
        rows.append({"prompt": user["content"], "prompt_id": f"p{i}", "chosen": chosen, "rejected": rejected,
                     "messages": chosen, "score_chosen": 8.0, "score_rejected": 3.0})
    return rows


def completion(text: str, ratings, overall=None, model="m") -> dict:
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    return {"model": model, "response": text, "critique": "c", "fine-grained_score": 0.0, "overall_score": overall,
            "annotations": {a: {"Rating": str(r), "Rationale": "r"} for a, r in zip(aspects, ratings)}}


def raw_uf_row(i: int) -> dict:
    return {"source": "evol_instruct", "instruction": f"Explain thing {i}", "models": ["a", "b", "c", "d"],
            "completions": [completion(f"best {i}", [5, 5, 5, 4], 9), completion(f"mid {i}", [4, 4, 3, 3], 7),
                            completion(f"low {i}", [1, 2, 1, 1], 3), completion(f"meh {i}", [3, 3, 3, 3], 8)]}


def save_splits(folder: Path, splits: dict[str, list[dict]]) -> str:
    """A hub-style folder: data/<split>-00000-of-00001.parquet, as the hub datasets are laid out."""
    import datasets

    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return str(folder)


# ------------------------------------------------------------------------------------------- mappings
def test_ultrachat_schema_maps_to_messages(tmp_path, tok):
    path = save_splits(tmp_path / "uc", {"train_sft": ultrachat_rows(20), "test_sft": ultrachat_rows(5, 100),
                                         "train_gen": ultrachat_rows(3), "test_gen": ultrachat_rows(3)})
    train, ev, info = load("sft", {"path": path, "train_split": "train_sft", "test_split": "test_sft"}, tok)
    assert train.column_names == ["messages"] and len(train) == 20 and len(ev) == 5
    assert train[0]["messages"][-1]["role"] == "assistant"
    assert info["sources"][0]["source_rows"] == 20 and info["eval"]["rows"] == 5


def test_ultrafeedback_binarized_for_dpo_and_its_sft_splits(tmp_path, tok):
    path = save_splits(tmp_path / "ufb", {"train_prefs": ufb_rows(12), "test_prefs": ufb_rows(4, 50),
                                          "train_sft": ufb_rows(10), "test_sft": ufb_rows(2, 60)})
    train, ev, _ = load("dpo", {"path": path, "train_split": "train_prefs", "test_split": "test_prefs"}, tok)
    assert sorted(train.column_names) == ["chosen", "prompt", "rejected"] and len(train) == 12 and len(ev) == 4
    row = train[0]
    assert [m["role"] for m in row["prompt"]] == ["user"]
    assert row["chosen"][0]["role"] == "assistant" and row["chosen"][0]["content"].startswith("blue")
    train, _, _ = load("sft", {"path": path, "train_split": "train_sft", "test_split": "test_sft"}, tok)
    assert train.column_names == ["messages"] and len(train) == 10


def test_local_formats_with_column_mapping(tmp_path, tok):
    import datasets

    rows = [{"dialog": chat(i)} for i in range(6)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "a.parquet"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "disk"))
    for path in ("a.json", "a.parquet", "disk"):
        train, _, _ = load("sft", {"path": str(tmp_path / path), "columns": {"messages": "dialog"}}, tok)
        assert len(train) == 6 and train[2]["messages"] == chat(2), path
    (tmp_path / "qa.csv").write_text("question,answer\nWhat is 2+2?,4\nName a colour,red\n")
    train, _, _ = load("sft", {"path": str(tmp_path / "qa.csv"),
                               "columns": {"prompt": "question", "completion": "answer"}}, tok)
    assert train[0]["messages"] == [{"content": "What is 2+2?", "role": "user"}, {"content": "4", "role": "assistant"}]
    # plain-text preference pairs become one user turn and one assistant answer each
    write_jsonl(tmp_path / "pairs.jsonl", [{"q": f"q{i}", "good": f"g{i}", "bad": f"b{i}"} for i in range(4)])
    train, _, _ = load("dpo", {"path": str(tmp_path / "pairs.jsonl"),
                               "columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}, tok)
    assert train[1] == {"prompt": [{"content": "q1", "role": "user"}], "chosen": [{"content": "g1", "role": "assistant"}],
                        "rejected": [{"content": "b1", "role": "assistant"}]}


def test_sharegpt_conversations(tmp_path, tok):
    rows = [{"id": str(i), "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": f"hi {i}"},
                                             {"from": "gpt", "value": f"hello {i}"}]} for i in range(5)]
    rows.append({"id": "x", "conversations": [{"from": "bot", "value": "?"}, {"from": "gpt", "value": "!"}]})
    path = write_jsonl(tmp_path / "sg.jsonl", rows)
    train, _, info = load("sft", {"path": path}, tok)  # conversations found without a mapping
    assert len(train) == 5 and [m["role"] for m in train[0]["messages"]] == ["system", "user", "assistant"]
    assert info["sources"][0]["dropped"] == {"unknown_role": 1}
    train, _, _ = load("sft", {"path": path, "roles": {"bot": "user"}, "columns": {"messages": "conversations"}}, tok)
    assert len(train) == 6


# ------------------------------------------------------------------------------------------- binarization
def test_binarize_picks_best_mean_and_seeded_random_rejected():
    row = raw_uf_row(1)
    out = binarize(row["instruction"], row["completions"], seed=3)
    assert set(out) == set(SCHEMA) and out["messages"] == out["chosen"]
    assert out["chosen"][1]["content"] == "best 1" and out["score_chosen"] == 4.75
    assert out["prompt_id"] == binarize(row["instruction"], row["completions"], seed=99)["prompt_id"]
    picks = {binarize(row["instruction"], row["completions"], seed=s)["rejected"][1]["content"] for s in range(40)}
    assert picks == {"mid 1", "low 1", "meh 1"}  # each of the other three can be drawn
    again = [binarize(row["instruction"], row["completions"], seed=s)["rejected"][1]["content"] for s in range(10)]
    assert again == [binarize(row["instruction"], row["completions"], seed=s)["rejected"][1]["content"] for s in range(10)]
    low = binarize(row["instruction"], row["completions"], rejected="lowest")
    assert low["rejected"][1]["content"] == "low 1" and low["score_rejected"] == 1.25
    overall = binarize(row["instruction"], row["completions"], score="overall", rejected="lowest")
    assert overall["chosen"][1]["content"] == "best 1" and overall["score_chosen"] == 9.0
    assert overall["rejected"][1]["content"] == "low 1"
    crit = [completion("a", [5, 5, 5, 5], 6), completion("b", [1, 1, 1, 1], 9)]
    assert binarize("p", crit, score="overall")["chosen"][1]["content"] == "b"


def test_binarize_ties_and_missing_ratings():
    t = Tally()
    tied_best = [completion("first", [5, 5, 5, 5]), completion("second", [5, 5, 5, 5]), completion("low", [2, 2, 2, 2])]
    for seed in range(5):
        out = binarize("p", tied_best, seed=seed, tally=t)
        assert out["chosen"][1]["content"] == "first" and out["rejected"][1]["content"] == "low"  # drop: never a tie
    assert t.counts["tied_best"] == 5
    all_tied = [completion("a", [3, 3, 3, 3]), completion("b", [3, 3, 3, 3])]
    t = Tally()
    assert binarize("p", all_tied, tally=t) is None and t.counts["all_tied"] == 1
    assert binarize("p", all_tied, ties="keep")["rejected"][1]["content"] == "b"
    t = Tally()
    missing = [completion("a", ["N/A", 4, 4, 4]), completion("b", ["N/A", "N/A", "N/A", "N/A"]),
               completion("c", [2, 2, 2]), completion("", [5, 5, 5, 5])]
    out = binarize("p", missing, tally=t)
    assert out["chosen"][1]["content"] == "a" and out["score_chosen"] == 4.0 and out["score_rejected"] == 2.0
    assert t.counts["missing_ratings"] == 1 + 4 + 1 and t.counts["unrated_completions"] == 1
    assert t.counts["empty_responses"] == 1
    t = Tally()
    assert binarize("p", [completion("only", [5, 5, 5, 5])], tally=t) is None and t.counts["too_few_completions"] == 1


def test_raw_ultrafeedback_dataset_binarized_on_load(tmp_path, tok):
    import datasets

    rows = [raw_uf_row(i) for i in range(30)]
    rows[0]["completions"] = [completion("x", [3, 3, 3, 3]), completion("y", [3, 3, 3, 3])]  # all tied -> skipped
    ds = datasets.Dataset.from_list(rows)
    out, tally = binarize_dataset(ds, seed=5)
    assert out.column_names == list(SCHEMA) and len(out) == 29 and tally["all_tied"] == 1
    assert out[0]["chosen"][0] == {"content": "Explain thing 1", "role": "user"}
    path = write_jsonl(tmp_path / "uf.jsonl", rows)
    train, ev, info = load("dpo", {"path": path, "format": "ultrafeedback", "test_fraction": 0.2,
                                   "binarize": {"rejected": "lowest"}}, tok)
    assert len(train) + len(ev) == 29 and len(ev) == 6
    assert all(r["rejected"][0]["content"].startswith("low") for r in train)
    assert info["sources"][0]["binarization"]["all_tied"] == 1
    # auto-detected from the completions column; SFT trains on the chosen conversation
    train, _, _ = load("sft", {"path": path}, tok)
    assert len(train) == 29 and train[0]["messages"][1]["content"].startswith("best")


# ------------------------------------------------------------------------------------------- mixtures
def test_mixture_weights_are_seeded_and_shuffled(tmp_path, tok):
    a = write_jsonl(tmp_path / "a.jsonl", ultrachat_rows(40))
    b = write_jsonl(tmp_path / "b.jsonl", ultrachat_rows(10, 1000))
    mix = {"mixture": [{"path": a, "weight": 0.5}, {"path": b, "weight": 2.5}]}
    train, ev, info = load("sft", mix, tok)
    assert ev is None and len(train) == 20 + 25
    assert [s["train_rows"] for s in info["sources"]] == [20, 25]
    firsts = Counter(int(r["messages"][0]["content"].split()[1]) for r in train)
    from_a = {k for k in firsts if k < 1000}
    assert len(from_a) == 20 and from_a != set(range(20))  # a seeded sample, not the first 20
    assert all(firsts[k] in (2, 3) for k in firsts if k >= 1000) and sum(firsts[k] for k in firsts if k >= 1000) == 25
    again, _, _ = load("sft", mix, tok)
    assert again["messages"] == train["messages"]
    other, _, _ = load("sft", mix, tok, seed=1)
    assert other["messages"] != train["messages"]


def test_test_splits_never_overlap_train(tmp_path, tok):
    rows = ultrachat_rows(50)
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    train, ev, info = load("sft", {"mixture": [{"path": path, "weight": 2.0}], "test_fraction": 0.1}, tok)
    tr = {r["messages"][0]["content"] for r in train}
    te = {r["messages"][0]["content"] for r in ev}
    assert len(ev) == 5 and len(train) == 90 and not tr & te
    # a named test split that shares prompts with train: those training rows are dropped and counted
    folder = save_splits(tmp_path / "uc", {"train": rows, "test": rows[:3] + ultrachat_rows(2, 500)})
    train, ev, info = load("sft", {"path": folder, "test_split": "test"}, tok)
    assert len(ev) == 5 and len(train) == 47 and info["sources"][0]["dropped"] == {"overlaps_test": 3}


# ------------------------------------------------------------------------------------------- row checks
BAD_SFT = {
    "not_a_conversation": "just a string",
    "unknown_role": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}],
    "empty_content": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "y"}],
    "not_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"}],
    "no_final_assistant": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "user", "content": "c"}],
}


def test_sft_row_checks_count_each_reason(tmp_path, tok):
    rows = [{"messages": chat(i)} for i in range(8)] + [{"messages": m} for m in BAD_SFT.values()]
    rows.append({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]})
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    train, _, info = load("sft", {"path": path}, tok)
    assert len(train) == 8
    assert info["sources"][0]["dropped"] == {**{r: 1 for r in BAD_SFT}, "empty_content": 2}
    with pytest.raises(ZephyrError) as exc:
        load("sft", {"path": path, "strict": True}, tok)
    assert "row 8 of" in exc.value.problem and "not_a_conversation" in exc.value.problem


def test_preference_row_checks(tmp_path, tok):
    good = ufb_rows(6)
    mismatch = ufb_rows(1, 100)[0]
    mismatch["rejected"][0] = {"role": "user", "content": "another question"}
    same = ufb_rows(1, 200)[0]
    same["rejected"] = same["chosen"]
    long = ufb_rows(1, 300)[0]
    long_text = " ".join(f"word{i}" for i in range(20))  # 96 tokens with the template
    for k in ("chosen", "rejected"):
        long[k] = [{"role": "user", "content": long_text}, long[k][1]]
    user_last = ufb_rows(1, 400)[0]
    user_last["chosen"] = user_last["chosen"][:1]
    path = write_jsonl(tmp_path / "prefs.jsonl", good + [mismatch, same, long, user_last])
    train, _, info = load("dpo", {"path": path, "max_prompt_tokens": 40}, tok)
    assert len(train) == 6
    assert info["sources"][0]["dropped"] == {"prompt_mismatch": 1, "identical_answers": 1, "prompt_too_long": 1,
                                             "not_a_conversation": 1}
    # without max_prompt_tokens the long prompt passes; the stage's max_length still bounds it
    _, _, info = load("dpo", {"path": path}, tok)
    assert "prompt_too_long" not in info["sources"][0]["dropped"]
    _, _, info = load("dpo", {"path": path}, tok, trainer={"max_length": 30})
    assert info["sources"][0]["dropped"]["prompt_too_long"] == 1
    with pytest.raises(ZephyrError, match="prompt_mismatch"):
        load("dpo", {"path": path, "strict": True}, tok)


def test_malformed_jsonl_line_is_reported_with_file_and_line(tmp_path, tok, capsys):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"messages": chat(0)}) + "\n\n" + '{"messages": [1, 2\n')
    with pytest.raises(ZephyrError) as exc:
        load("sft", {"path": str(path)}, tok)
    assert f"{path}, line 3" in exc.value.problem
    recipe = tmp_path / "r.yaml"
    recipe.write_text("defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: sft\n  - hardware: cpu\n"
                      f"  - _self_\ndataset:\n  path: {path}\n  test_split: null\n")
    assert cli.main(["preview", str(recipe), "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("dataset, needle", [
    ({"mixture": [{"path": "a", "wieght": 2}]}, "did you mean weight"),
    ({"mixture": [{"path": "a", "weight": 0}]}, "weight"),
    ({"mixture": ["a"]}, "must be a mapping"),
    ({"path": "a", "format": "sharegtp"}, "format"),
    ({"path": "a", "test_fraction": 1.5}, "between 0 and 1"),
    ({"path": "a", "binarize": {"rejected": "worst"}}, "must be one of 'random', 'lowest'"),
    ({"path": "a", "binarize": {"scores": "mean"}}, "did you mean score"),
    ({"path": "a", "roles": {"human": "person"}}, "system, user, assistant"),
    ({"path": "a", "columns": {"mesages": "m"}}, "did you mean messages"),
    ({}, "dataset.path` must be set"),
])
def test_dataset_config_errors(dataset, needle):
    with pytest.raises(ZephyrError) as exc:
        cfg("sft", dataset)
    assert needle in str(exc.value) and exc.value.fix


@pytest.mark.parametrize("recipe, overrides", [
    ("tiny/sft", []), ("tiny/dpo", []), ("zephyr-7b-beta/sft", []), ("zephyr-7b-beta/dpo", []),
    ("tiny/sft", ["dataset=ultrafeedback_binarized_sft"]), ("tiny/sft", ["dataset=ultrachat-ultrafeedback-mix"]),
    ("tiny/dpo", ["dataset=ultrafeedback_raw"]),
    ("tiny/sft", ["dataset=sharegpt", "dataset.path=./chats.jsonl", "--no-preflight"]),
])
def test_recipes_and_dataset_options_validate(recipe, overrides, capsys, home, tmp_path, monkeypatch):
    # The tiny recipes read ./runs/tiny-sft and ./runs/tiny-aif: from the checkout, validate would check whatever
    # `make sft`, `make aif` or a run beside the tests has left there (or is writing there at that moment), so the
    # outcome depended on the checkout's state. An empty folder of its own, and the module's cache home, whatever
    # the order the tests run in.
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", recipe, *overrides]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith(f"ok: {recipe}")


# ------------------------------------------------------------------------------------------- cache
def test_cache_hit_and_invalidation(tmp_path, tok, home):
    path = write_jsonl(tmp_path / "prefs.jsonl", ufb_rows(10))
    base = {"path": path, "max_prompt_tokens": 64}
    _, _, first = load("dpo", base, tok)
    _, _, second = load("dpo", base, tok)
    assert not first["cache"]["hit"] and second["cache"]["hit"] and first["cache"]["key"] == second["cache"]["key"]
    _, _, opt = load("dpo", {**base, "max_prompt_tokens": 32}, tok)
    assert not opt["cache"]["hit"] and opt["cache"]["key"] != first["cache"]["key"]
    template = tmp_path / "t.jinja"
    template.write_text(modeling.template_text("zephyr").replace("<|user|>", "<|human|>"))
    model = {"chat_template": str(template)}
    tok2 = modeling.load_tokenizer(cfg("dpo", base, model=model).model)
    _, _, tmpl = load("dpo", base, tok2, model=model)
    assert not tmpl["cache"]["hit"] and tmpl["cache"]["key"] != first["cache"]["key"]
    # the data changes: a new row invalidates
    write_jsonl(tmp_path / "prefs.jsonl", ufb_rows(11))
    _, _, data = load("dpo", base, tok)
    assert not data["cache"]["hit"] and data["train"]["rows"] == 11


def test_trl_tokenization_is_cached_next_to_the_prepared_rows(tmp_path, tok):
    from trl import SFTConfig, SFTTrainer

    from zephyr_recipes.model.modeling import load_model, resolve_placement

    path = write_jsonl(tmp_path / "uc.jsonl", ultrachat_rows(30))
    c = cfg("sft", {"path": path})
    placement = resolve_placement(c.hardware)
    model = load_model(c.model.name_or_path, c.model, placement)
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_length=128, report_to="none", use_cpu=True)

    def trl_cache_files(tokenizer):
        train, _, info = load_for_stage(c, tokenizer, stages.get("sft").rows)
        folder = Path(train.cache_files[0]["filename"]).parent
        before = set(folder.glob("cache-*.arrow"))
        SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        return info["cache"]["hit"], set(folder.glob("cache-*.arrow")) - before

    hit, new = trl_cache_files(tok)
    assert not hit and new  # first run: rows prepared, TRL tokenizes and writes its cache files
    hit, new = trl_cache_files(tok)
    assert hit and not new  # second run: both our rows and TRL's tokenization come from the cache


# ------------------------------------------------------------------------------------------- decontamination
def test_decontamination_drops_rows_overlapping_eval_prompts(tmp_path, tok):
    questions = [json.loads(line) for line in (DATA / "mt_bench" / "question.jsonl").read_text().splitlines()]
    alpaca = json.loads((DATA / "alpaca_eval" / "text_davinci_003_outputs.json").read_text())
    leaked = [{"messages": [{"role": "user", "content": "Please help. " + questions[0]["turns"][0]},
                            {"role": "assistant", "content": "Sure."}]},
              {"messages": [{"role": "user", "content": alpaca[10]["instruction"]},
                            {"role": "assistant", "content": "ok"}]}]
    rows = [{"messages": chat(i)} for i in range(10)] + leaked
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    files = [str(DATA / "mt_bench" / "question.jsonl"), str(DATA / "alpaca_eval" / "text_davinci_003_outputs.json")]
    train, _, info = load("sft", {"path": path, "decontaminate": files}, tok)
    assert len(train) == 10
    d = info["decontamination"]
    assert d["dropped"] == 2 and d["eval_prompts"] == 160 + ALPACA_INSTRUCTIONS
    assert {e["file"] for e in d["examples"]} == set(files)
    assert info["sources"][0]["dropped"] == {"contaminated": 2}


# ------------------------------------------------------------------------------------------- preview
def test_preview_shows_trained_tokens_and_length_stats(tmp_path, capsys, home):
    path = write_jsonl(tmp_path / "uc.jsonl", ultrachat_rows(40))
    out = tmp_path / "pv"
    args = ["preview", "tiny/sft", f"dataset.path={path}", "dataset.test_split=null", "-n", "2", "--out", str(out),
            "--color", "never"]
    assert cli.main(args + ["stage.trainer.max_length=40", "stage.trainer.assistant_only_loss=false"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\[\[<\|user\|>\s+question", text)  # every token trained without assistant_only_loss
    assert "<<cut:" in text and "truncated at max_length" in text and "padding with packing" in text
    stats = json.loads((out / "preview.json").read_text())["stats"]
    assert stats["max"] > 40 and 0 < stats["truncated_share"] < 1 and stats["p50"] <= stats["p95"] <= stats["max"]
    assert stats["padding_share_packed"] < stats["padding_share"]
    assert (out / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(args + ["stage.trainer.assistant_only_loss=true"]) == 0
    text = capsys.readouterr().out
    # user turns masked, answers trained (the tiny tokenizer keeps no newlines: a space stands between tokens)
    assert re.search(r"(?<!\[\[)<\|user\|>\s+question", text) and re.search(r"\[\[\s*answer", text)
