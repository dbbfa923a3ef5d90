"""Listwise judging in AI feedback: a judge that rates a prompt's answers together is asked once per group of 4, and
every answer's record says which answers were rated beside it and in what order."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from zephyr_recipes.feedback import listwise

from .test_aif import PROMPTS, _recipe, _rows, _write_prompts


def test_groups_of_four_filled_from_the_same_prompt_and_stable():
    keys = [f"p:g{i}:0" for i in range(5)]
    first = listwise.groups("p", keys, keys, seed=42)
    assert [len(g.keys) for g in first] == [4, 1]
    assert [len(g.shown) for g in first] == [4, 4]
    assert sorted(k for g in first for k in g.keys) == sorted(keys)  # each answer rated once
    last = first[1]
    assert len(last.fillers) == 3 and not set(last.fillers) & set(last.keys)
    assert sorted(last.shown) == sorted(last.keys + last.fillers)
    again = listwise.groups("p", list(reversed(keys)), keys, seed=42)
    assert [(g.keys, g.fillers, g.shown) for g in again] == [(g.keys, g.fillers, g.shown) for g in first]
    other = listwise.groups("p", keys, keys, seed=43)
    assert [g.shown for g in other] != [g.shown for g in first]
    small = listwise.groups("p", keys[:3], keys[:3], seed=42)
    assert len(small) == 1 and len(small[0].shown) == 3 and not small[0].fillers  # nothing to fill with
    # Answers already rated fill the group of a new one (a generator added to a finished run).
    late = listwise.groups("p", keys[4:], keys, seed=42)
    assert late[0].keys == keys[4:] and len(late[0].fillers) == 3


def test_listwise_function_judge_rates_groups_and_records_them(tmp_path, cli, monkeypatch):
    log = tmp_path / "shown.jsonl"
    monkeypatch.setenv("LISTWISE_JUDGE_LOG", str(log))
    data = _write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:6])
    recipe = _recipe(tmp_path, """  generators:
    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}
    - {name: sloppy, type: function, function: "tests.helpers:sloppy", num_completions: 4}
  judge: {type: function, module: tests.listwise_judge}
  self_agreement: 0.0
  test_fraction: 0.0
""")
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}",
                       "--trust-recipe-code")
    assert code == 0, err
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    probe, asked = asked[0], asked[1:]  # the pre-flight's constructed answer and a wrong one, side by side
    assert probe["responses"][1] == "I do not know."
    assert len(asked) == 6 * 2 and all(len(a["responses"]) == 4 for a in asked)  # 5 answers: 4, then 1 + 3 fillers
    ratings = _rows(out, "ratings.jsonl")
    assert len(ratings) == 6 * 5 and all("annotations" in r for r in ratings)
    per_group: dict[str, list] = defaultdict(list)
    for r in ratings:
        group = r["group"]
        assert r["completion"] in group["answers"] and r["completion"] not in group["fillers"]
        assert sorted(group["shown"]["all"]) == sorted(group["answers"] + group["fillers"])
        per_group[json.dumps(group["shown"]["all"])].append(r["completion"])
    assert sorted(Counter(len(v) for v in per_group.values()).elements()) == [1] * 6 + [4] * 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_score_by_generator"]["teacher"] == 5.0 and summary["judge_failures"] == 0
    # Resumed: nothing asked again.
    log.write_text("")
    code, _, err = cli(str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}",
                       "--trust-recipe-code")
    assert code == 0, err
    assert log.read_text() == ""


def test_a_rate_list_of_the_wrong_shape_stops_before_anything_is_recorded(monkeypatch):
    import pytest

    from tests import listwise_judge
    from zephyr_recipes.core.errors import ZephyrError
    from zephyr_recipes.feedback.judges import FunctionJudge, Item, JudgeFailure, Verdict

    judge = FunctionJudge("tests.listwise_judge")
    assert judge.listwise and not FunctionJudge("zephyr_recipes.embedded.judge").listwise
    item = Item([{"role": "user", "content": PROMPTS[0]}], ("1", "2", "3"))
    [(_, verdict)] = list(judge.rate_lists([item]))
    assert isinstance(verdict, Verdict) and len(verdict.value) == 3 and verdict.shown == {"all": [0, 1, 2]}
    monkeypatch.setattr(listwise_judge, "rate_list", lambda messages, responses: [{"helpfulness": 5}])
    with pytest.raises(ZephyrError, match="must return a list of 3 ratings"):
        list(judge.rate_lists([item]))

    def boom(messages, responses):
        raise RuntimeError("no")

    monkeypatch.setattr(listwise_judge, "rate_list", boom)
    [(_, verdict)] = list(judge.rate_lists([item]))
    assert isinstance(verdict, JudgeFailure) and "rate_list failed: no" in str(verdict)
