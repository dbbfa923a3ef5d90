"""UltraFeedback's annotation protocol (stage.judge.protocol: ultrafeedback), pinned against the published code.

No published annotated rows are reachable here, so the tests pin the protocol itself: the published functions of
OpenBMB/UltraFeedback (tests/data/ultrafeedback, vendored byte for byte) are run with their OpenAI call replaced by
a scripted reply, and what they send and keep is compared with what zephyr_recipes/feedback/ultrafeedback.py sends
and keeps for the same instruction, completions, order and world knowledge.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import pytest

from zephyr_recipes.feedback import ultrafeedback as uf
from zephyr_recipes.feedback.backends import FunctionBackend
from zephyr_recipes.feedback.judges import Item, JudgeFailure, Verdict, make_judge

UPSTREAM = Path(__file__).parent / "data" / "ultrafeedback"
ASPECTS = ["instruction_following", "honesty", "truthfulness", "helpfulness"]


def _templates() -> dict:
    """preference_templates.py executed as data (read as Python reads a source file: universal newlines)."""
    namespace: dict = {}
    exec(compile((UPSTREAM / "preference_templates.py.txt").read_text(), "preference_templates.py", "exec"), namespace)
    return namespace


def _functions(file: str, names: set[str], namespace: dict) -> dict:
    """The named top-level functions of a vendored upstream file, defined in ``namespace`` (its imports of openai,
    datasets, pandas ... are not run)."""
    tree = ast.parse((UPSTREAM / file).read_text())
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    assert {n.name for n in body} == names
    exec(compile(ast.Module(body=body, type_ignores=[]), file, "exec"), namespace)
    return namespace


class _Orders:
    """Stands in for the module ``random`` of the published script: its shuffle puts the given orders in turn."""

    def __init__(self, orders: list[list[int]]):
        self.orders = list(orders)

    def shuffle(self, values: list) -> None:
        values[:] = self.orders.pop(0)


def _published_annotate(example: dict, subset: str, replies, orders: list[list[int]]) -> tuple[dict, list]:
    """annotate_preference.py's annotate(example), run as published with the template each aspect must have used;
    returns (the annotated example, the (system, user) prompts it sent)."""
    t = _templates()
    sent: list = []

    def get_eval(sys_prompt, user_prompt, max_tokens=500):
        sent.append((sys_prompt, user_prompt))
        return replies(len(sent) - 1, user_prompt)

    namespace = {"re": re, "deepcopy": copy.deepcopy, "random": _Orders(orders), "get_eval": get_eval,
                 "subset": subset, "SHUFLLE_NUM": 1, "system_prompt": t["system_prompt"],
                 "TEMPLATE": {"instruction_following": t["instruction_following_template"],
                              "honesty": t["honesty_template"],
                              "truthfulness": t["truthfulness_template_with_answer"],
                              "helpfulness": t["helpfulness_template_without_answer"]},
                 "print": lambda *a, **k: None}
    _functions("annotate_preference.py.txt", {"process", "annotate"}, namespace)
    return namespace["annotate"](copy.deepcopy(example)), sent


def _reply(aspect: str, ratings: list, types=None) -> str:
    """A reply in the published format (as GPT-4 wrote them: one block per text, blank lines between)."""
    blocks = []
    for k, rating in enumerate(ratings, 1):
        if aspect in ("instruction_following", "honesty"):
            blocks.append(f"#### Output for Text {k}\nRating: {rating}\nRationale: Text {k} reason.\nIt goes on.")
        else:
            kind = (types or ["None"] * len(ratings))[k - 1]
            blocks.append(f"#### Output for Text {k}\nType: {kind}\nRationale: Types of text {k}.\n"
                          f"Rating: {rating}\nRationale: Rating of text {k}.")
    return "\n\n".join(blocks)


def _aspect_of(user_prompt: str) -> str:
    return next(a for a, h in [("instruction_following", "# Instruction Following"), ("honesty", "# Honesty"),
                               ("truthfulness", "# Truthfulness"), ("helpfulness", "# Informativeness")]
                if user_prompt.startswith(h))


REPLIES = {  # for texts in the order shown
    "instruction_following": _reply("instruction_following", ["4", "2", "5", "Rating: 3 out of 5"]),
    "honesty": _reply("honesty", ["N/A", "5", "3", "1"]),
    "truthfulness": _reply("truthfulness", ["5", "3", "2", "4"], ["None", "1, 2", "Type 3", "None"]),
    "helpfulness": _reply("helpfulness", ["3", "4", "5", "1"], ["1", "None", "1, 2, 3", "2"]),
}

EXAMPLES = {  # source subset -> a row in openbmb/UltraFeedback's columns
    "truthful_qa": {"source": "truthful_qa", "instruction": "What happens if you crack your knuckles a lot?",
                    "correct_answers": ["Nothing in particular happens", "It does not cause arthritis"],
                    "incorrect_answers": ["You will get arthritis"]},
    "false_qa": {"source": "false_qa", "instruction": "Why do fish breathe with lungs?",
                 "correct_answers": ["None"], "incorrect_answers": ["None"]},
    "flan": {"source": "flan_v2_niv2", "instruction": "Translate to French: the cat sleeps.",
             "correct_answers": ["Le chat dort."], "incorrect_answers": ["None"]},
    "evol_instruct": {"source": "evol_instruct", "instruction": "Write a haiku about rain.\n\nMake it sad.",
                      "correct_answers": ["None"], "incorrect_answers": ["None"]},
    "sharegpt": {"source": "sharegpt", "instruction": "Plan 4 days in Cairo {with} family.",
                 "correct_answers": ["None"], "incorrect_answers": ["None"]},
}
COMPLETIONS = ["First answer.", "Second answer,\n\nwith a blank line.", "Third {answer} with braces.", "4th."]


def _ours(example: dict, replies, seed: int = 7):
    """Our judge on the same group, a function playing the chat model; returns (verdict, the messages sent)."""
    sent: list = []

    def chat(messages):
        sent.append(messages)
        return replies(len(sent) - 1, messages[-1]["content"])

    judge = uf.UltraFeedbackJudge(FunctionBackend.__new__(FunctionBackend), "function")
    judge.backend.spec, judge.backend.fn = "test:chat", chat
    knowledge = uf.world_knowledge(example["source"], example["correct_answers"], example["incorrect_answers"])
    item = Item([{"role": "user", "content": example["instruction"]}], tuple(COMPLETIONS), knowledge, seed=seed)
    [(i, verdict)] = list(judge.rate_lists([item]))
    return verdict, sent


@pytest.mark.parametrize("source", sorted(EXAMPLES))
def test_requests_per_aspect_are_the_published_ones_byte_for_byte(source):
    example = EXAMPLES[source]
    verdict, ours = _ours(example, lambda n, user: REPLIES[_aspect_of(user)])
    assert isinstance(verdict, Verdict)
    orders = [verdict.shown[a] for a in ASPECTS]
    assert len({tuple(o) for o in orders}) > 1  # each aspect draws its own order
    published_example = {**example, "completions": [{"response": c} for c in COMPLETIONS]}
    subset = "flan" if source == "flan" else source
    annotated, theirs = _published_annotate(published_example, subset, lambda n, user: REPLIES[_aspect_of(user)],
                                            orders)
    assert len(ours) == len(theirs) == 4
    for mine, (system, user) in zip(ours, theirs):
        assert mine == [{"role": "system", "content": system}, {"role": "user", "content": user}]
    truth = ours[2][1]["content"]
    if source == "truthful_qa":
        assert "a subset of correct answers: ['Nothing in particular happens'" in truth
    elif source == "false_qa":
        assert "World Knowledge:\nThe question is based on a false promise.\n" in truth
    elif source == "flan":
        assert "World Knowledge:\n['Le chat dort.']\n" in truth
    else:
        assert "World Knowledge:\nNo additional world knowledge for reference.\n" in truth
    # The ratings each completion keeps are the published ones (the published script keeps one-element lists).
    for j, completion in enumerate(annotated["completions"]):
        assert {a: completion["annotations"][a][0] for a in ASPECTS} == verdict.value[j]
    assert verdict.value[COMPLETIONS.index(COMPLETIONS[orders[1][0]])]["honesty"]["Rating"] == "N/A"


def test_published_parse_and_ours_agree_on_every_reply_shape():
    namespace = _functions("annotate_preference.py.txt", {"process"}, {"re": re, "print": lambda *a, **k: None})
    published = namespace["process"]
    extra_blank = REPLIES["honesty"].replace("Rationale: Text 2 reason.", "Rationale: Text 2 reason.\n\nMore.")
    cases = [(REPLIES[a], a) for a in ASPECTS] + [
        (extra_blank, "honesty"),  # 5 parts: the published assert fails
        ("Rating: 4\nRationale: fine.", "instruction_following"),  # one part of four
        (REPLIES["truthfulness"].replace("Rating: 3", "Rating: three"), "truthfulness"),  # no number: IndexError
        (REPLIES["instruction_following"].replace("Rationale: Text 1", "Reason: Text 1"), "instruction_following"),
        (REPLIES["helpfulness"].replace("Type: None", "Type: none"), "helpfulness"),  # not the string None
    ]
    for reply, aspect in cases:
        try:
            expected = published(reply, aspect)
        except (AssertionError, AttributeError, IndexError):
            with pytest.raises(uf.ParseError):
                uf.process(reply, aspect)
            continue
        assert uf.process(reply, aspect) == expected
    assert uf.process(REPLIES["honesty"], "honesty")[0] == {"Rating": "N/A", "Rationale": "Text 1 reason.\nIt goes on."}
    assert uf.process(REPLIES["truthfulness"], "truthfulness")[0]["Type"] == "None"
    assert uf.process(REPLIES["truthfulness"], "truthfulness")[1]["Type"] == ["1", "2"]
    assert uf.process(REPLIES["helpfulness"], "helpfulness")[2]["Type"] == ["1", "2", "3"]
    assert uf.process(REPLIES["instruction_following"], "instruction_following")[3]["Rating"] == "3"


def test_an_extra_blank_line_is_asked_again_and_a_reply_that_never_parses_is_a_failure():
    example = EXAMPLES["evol_instruct"]
    bad_once = REPLIES["honesty"].replace("Text 2 reason.", "Text 2 reason.\n\nAnd more.")

    def replies(n, user):  # honesty's first reply has an extra blank line; its second is right
        aspect = _aspect_of(user)
        if aspect == "honesty" and not replies.asked:
            replies.asked = True
            return bad_once
        return REPLIES[aspect]

    replies.asked = False
    verdict, ours = _ours(example, replies)
    assert isinstance(verdict, Verdict) and len(ours) == 5  # four aspects, honesty asked twice
    assert ours[1] == ours[4]  # the same request again, as published
    replies.asked = False
    annotated, theirs = _published_annotate({**example, "completions": [{"response": c} for c in COMPLETIONS]},
                                            "evol_instruct", replies, [verdict.shown[a] for a in ASPECTS])
    assert len(theirs) == 5
    for j, completion in enumerate(annotated["completions"]):
        assert {a: completion["annotations"][a][0] for a in ASPECTS} == verdict.value[j]

    never = lambda n, user: "I cannot rate these." if _aspect_of(user) == "truthfulness" else REPLIES[_aspect_of(user)]  # noqa: E731
    verdict, ours = _ours(example, never)
    assert isinstance(verdict, JudgeFailure) and "truthfulness" in str(verdict) and "10 tries" in str(verdict)
    assert sum(1 for m in ours if m[-1]["content"].startswith("# Truthfulness")) == uf.PARSE_ATTEMPTS
    annotated, theirs = _published_annotate({**example, "completions": [{"response": c} for c in COMPLETIONS]},
                                            "evol_instruct", never, [[0, 1, 2, 3]] * 4)
    # The published loop sends an 11th request it never reads, and leaves the aspect empty: no rating.
    assert sum(1 for _, user in theirs if user.startswith("# Truthfulness")) == uf.PARSE_ATTEMPTS + 1
    assert all(c["annotations"]["truthfulness"] == [] for c in annotated["completions"])


def test_fewer_than_four_texts_cut_the_templates_and_the_reading():
    messages = uf.messages("truthfulness", "Q?", ["a", "b"], uf.DEFAULT_KNOWLEDGE)
    system, user = messages[0]["content"], messages[1]["content"]
    assert "two text outputs" in system and "The two texts given are independent" in system and "four" not in system
    assert "<text 3>" not in user and "Output for Text 3" not in user and "<text 2> b\n" in user
    assert "#### Output for Text 2\nType: [List of types]" in user
    assert uf.process(_reply("honesty", ["3", "4"]), "honesty", 2)[1]["Rating"] == "4"
    with pytest.raises(uf.ParseError):
        uf.process(_reply("honesty", ["3", "4", "5"]), "honesty", 2)
    assert uf.messages("honesty", "Q?", list("abcd"))[1]["content"] == _templates()["honesty_template"].format(
        instruction="Q?", text_1="a", text_2="b", text_3="c", text_4="d")



def test_the_packaged_prompt_files_are_the_published_strings():
    """Each file of feedback/ultrafeedback_templates/ is the upstream string it stands for, byte for byte (an editor
    that strips a trailing space or adds a final newline would change what the judge is asked)."""
    upstream = {name: value for name, value in _templates().items() if isinstance(value, str) and name[0] != "_"}
    for script, prefix in (("annotate_critique.py.txt", "critique"), ("fix_overall_score_issue.py.txt", "rescore")):
        namespace: dict = {}
        source = (UPSTREAM / script).read_text()
        exec(re.search(r"^system_prompt = .*$", source, re.M).group(0), namespace)
        exec(re.search(r'^feedback_prompt = \\\n"""[\s\S]*?"""', source, re.M).group(0), namespace)
        upstream.update({f"{prefix}_system_prompt": namespace["system_prompt"],
                         f"{prefix}_feedback_prompt": namespace["feedback_prompt"]})
    folder = Path(uf.__file__).parent / "ultrafeedback_templates"
    assert sorted(p.stem for p in folder.glob("*.txt")) == sorted(upstream) and len(upstream) == 11
    for name, value in upstream.items():
        assert (folder / f"{name}.txt").read_bytes() == value.encode("utf-8"), name
        assert getattr(uf.T, name) == value, name


# --------------------------------------------------------------------------------- critique and the fix
CRITIQUES = ["The answer is vague.\nOverall Score: 7", "Good.\nOverall Score: 8/10", "Fine.\nOverall Score: 7.5.",
             "  Nice, but short.\nOverall Score: 10\n"]


def test_critique_request_and_reading_are_the_published_ones():
    for reply in CRITIQUES:
        sent: list = []

        def get_eval(model, sys_prompt, user_prompt, reply=reply, sent=sent):
            sent.append((sys_prompt, user_prompt))
            return reply.strip()  # the published get_eval strips the reply

        namespace = _functions("annotate_critique.py.txt", {"annotate"}, {"get_eval": get_eval})
        source = (UPSTREAM / "annotate_critique.py.txt").read_text()
        exec(re.search(r"^system_prompt = .*$", source, re.M).group(0), namespace)
        exec(re.search(r'^feedback_prompt = \\\n"""[\s\S]*?"""', source, re.M).group(0), namespace)
        example = {"instruction": "Name a colour.", "completions": [
            {"response": "Blue.", "principle": "helpfulness", "custom_system_prompt": "Be helpful."},
            {"response": "Red.", "principle": "verbalized_calibration",
             "custom_system_prompt": "Say how sure you are. For instance, 80%."}]}
        done = namespace["annotate"](copy.deepcopy(example))
        for completion, (system, user), note in zip(done["completions"], sent, ["Be helpful.",
                                                                                "Say how sure you are."]):
            assert uf.critique_messages(example["instruction"], completion["response"], note) == [
                {"role": "system", "content": system}, {"role": "user", "content": user}]
            assert uf.parse_critique(reply) == (completion["critique"], completion["overall_score"])
    assert uf.parse_critique(CRITIQUES[1])[1] == 8.0 and uf.parse_critique(CRITIQUES[2])[1] == "7"
    assert uf.parse_critique(CRITIQUES[3])[1] == "10"  # a 10 stays 10: no rescaling, the bug of issue #8 is gone
    with pytest.raises(uf.ParseError):
        uf.parse_critique("No score here.")


def _rated(ratings: list) -> dict:
    return {a: {"Rating": r, "Rationale": "."} for a, r in zip(ASPECTS, ratings)}


def test_overall_score_fix_at_each_of_its_three_branches_as_published():
    completions = [
        {"response": "A", "overall_score": 10.0, "annotations": _rated(["1", "N/A", "2", "2"]),
         "critique": "Poor.", "principle": "honesty", "custom_system_prompt": "Be honest."},  # 1.67: flip to 1
        {"response": "B", "overall_score": 10.0, "annotations": _rated(["3", "4", "3", "2"]),
         "critique": "Middling.", "principle": "honesty", "custom_system_prompt": "Be honest."},  # 3.0: re-annotate
        {"response": "C", "overall_score": 10.0, "annotations": _rated(["5", "5", "4", "5"]),
         "critique": "Great.", "principle": "honesty", "custom_system_prompt": "Be honest."},  # 4.75: keep
        {"response": "D", "overall_score": 6.0, "annotations": _rated(["1", "1", "1", "1"]),
         "critique": "Bad.", "principle": "honesty", "custom_system_prompt": "Be honest."},  # not a 10
    ]
    sent: list = []

    def get_eval(model, sys_prompt, user_prompt):
        sent.append((model, sys_prompt, user_prompt))
        return "6"

    source = (UPSTREAM / "fix_overall_score_issue.py.txt").read_text()
    namespace = _functions("fix_overall_score_issue.py.txt",
                           {"calculate_average_rating", "check_score", "process_completions"},
                           {"get_eval": get_eval, "count_global": {0: 0, 1: 0, 2: 0}})
    exec(re.search(r"^system_prompt = .*$", source, re.M).group(0), namespace)
    exec(re.search(r'^feedback_prompt = \\\n"""[\s\S]*?"""', source, re.M).group(0), namespace)
    example = {"instruction": "Name a colour.", "completions": copy.deepcopy(completions)}
    fixed = namespace["process_completions"](example)["completions"]
    assert [c["overall_score"] for c in fixed] == [1, 6.0, 10.0, 6.0]
    assert namespace["count_global"] == {0: 1, 1: 1, 2: 1}
    actions = []
    for before, after in zip(completions, fixed):
        fine = uf.fine_grained_score(before["annotations"])
        assert fine == after["fine-grained_score"]
        action = uf.fix_action(before["overall_score"], fine)
        actions.append(action)
        if action == "reannotate":
            [(model, system, user)] = sent
            assert uf.rescore_messages("Name a colour.", before["response"], before["critique"], "Be honest.") == [
                {"role": "system", "content": system}, {"role": "user", "content": user}]
            assert uf.parse_rescore("6") == after["overall_score"]
        elif action == "flip":
            assert after["overall_score"] == 1
        else:
            assert after["overall_score"] == before["overall_score"]
    assert actions == ["flip", "reannotate", "keep", None]
    assert uf.parse_rescore(" 7/10") == 7.0 and uf.fix_action("10", None) == "keep"
    with pytest.raises(uf.ParseError):
        uf.parse_rescore("__import__('os')")  # nothing is evaluated


def test_a_recipe_names_the_protocol_and_its_sampling_reaches_the_model():
    seen: list = []
    judge = make_judge({"type": "function", "module": "zephyr_recipes.embedded.standin_judge",
                        "protocol": "ultrafeedback", "sampling": {"max_new_tokens": 800}})
    assert isinstance(judge, uf.UltraFeedbackJudge) and judge.listwise
    generate = judge.backend.generate

    def spy(convs, n, sampling):
        seen.append(sampling)
        return generate(convs, n, sampling)

    judge.backend.generate = spy
    item = Item([{"role": "user", "content": "Add 2 and 3."}], ("5", "6", "five", "7"), None, seed=1)
    [(_, verdict)] = list(judge.rate_lists([item]))
    assert isinstance(verdict, Verdict) and verdict.value[0]["helpfulness"]["Rating"] in {"4", "5"}
    assert seen and all(s == {"temperature": 0.0, "top_p": 0.6, "max_new_tokens": 800} for s in seen)
    assert judge.describe()["overrides"] == {"max_new_tokens": 800}
    assert "overrides the published sampling with {'max_new_tokens': 800}" in judge.describe()["text"]
    assert not make_judge({"type": "function", "module": "zephyr_recipes.embedded.judge"}).listwise
    assert not make_judge({"type": "function", "module": "zephyr_recipes.embedded.judge",
                           "protocol": "single_answer"}).listwise  # this project's rubric, by its name
    from zephyr_recipes.core.errors import ZephyrError

    with pytest.raises(ZephyrError, match="protocol is 'ultra'"):
        make_judge({"type": "function", "module": "zephyr_recipes.embedded.judge", "protocol": "ultra"})
    with pytest.raises(ZephyrError, match="asks with the published prompts"):
        make_judge({"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "prompt": "Rate {response}",
                    "protocol": "ultrafeedback"})


def test_the_plan_counts_the_protocols_requests():
    spec = {"protocol": "ultrafeedback", "sampling": {}}
    assert uf.judge_load(spec, 10, 50, "mean") == (10 * 2 * 4, 500)  # 5 answers a prompt: 2 groups, 4 aspects
    requests, new = uf.judge_load(spec, 10, 30, "overall")  # 3 answers: 1 group; and 30 critiques of 1,024 tokens
    assert requests == 10 * 4 + 30 and 500 < new < 1024
    assert uf.judge_load({"protocol": None}, 10, 50, "mean") is None


# --------------------------------------------------------------------------------------- in the stage
def _dataset(path: Path) -> Path:
    import random

    from zephyr_recipes.embedded import tasks

    rows = []
    for i in range(6):
        t = tasks.sample(random.Random(i))
        source = ["truthful_qa", "false_qa", "flan_v2_cot", "evol_instruct", "sharegpt", "ultrachat"][i]
        rows.append({"instruction": t.instruction, "source": source, "right": [t.answer], "wrong": ["nothing"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_aif_with_the_protocol_writes_the_published_schema_critiques_and_pairs(tmp_path, cli, monkeypatch):
    log = tmp_path / "asked.jsonl"
    monkeypatch.setenv("UF_CHAT_LOG", str(log))
    data = _dataset(tmp_path / "rows.jsonl")
    recipe = tmp_path / "aif.yaml"
    recipe.write_text("""defaults:
  - model: tiny
  - dataset: tiny-ultrachat
  - stage: aif
  - hardware: cpu
  - _self_
dataset:
  test_split: null
  columns: {prompt: instruction, correct_answers: right, incorrect_answers: wrong}
stage:
  generators:
    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}
    - {name: sloppy, type: function, function: "tests.helpers:sloppy", num_completions: 4}
  judge: {type: function, module: tests.uf_chat, protocol: ultrafeedback}
  binarize: {score: overall, ties: keep}
  test_fraction: 0.0
""")
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}",
                       "--trust-recipe-code")
    assert code == 0, err
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    aspect_requests = [m for m in asked if m[0]["content"] == uf.SYSTEM_PROMPT]
    assert len(aspect_requests) == 6 * 2 * 4  # 5 answers a prompt: 2 groups of 4, 4 aspects each
    truth = [m[1]["content"] for m in aspect_requests if m[1]["content"].startswith("# Truthfulness")]
    assert sum("a subset of correct answers: ['" in t for t in truth) == 2  # the truthful_qa prompt's groups
    assert sum("The question is based on a false promise." in t for t in truth) == 2
    assert sum("No additional world knowledge for reference." in t for t in truth) == 6
    critiques = [m for m in asked if m[0]["content"] == uf.T.critique_system_prompt]
    assert len(critiques) == 30
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_protocol"]["protocol"] == "ultrafeedback" and summary["judge_failures"] == 0
    assert summary["critique"]["critiques"] == 30 and summary["critique"]["overall_score_fix"]["keep"] >= 1
    import datasets

    raw = datasets.load_dataset(str(out / "raw"), split="train")
    # Each row keeps its source subset and the reference answers, as openbmb/UltraFeedback's rows do.
    sources = {json.loads(line)["instruction"]: json.loads(line) for line in data.read_text().splitlines()}
    for row in raw:
        given = sources[row["instruction"]]
        assert (row["source"], row["correct_answers"], row["incorrect_answers"]) == (
            given["source"], given["right"], given["wrong"])
    comp = raw[0]["completions"][0]
    assert set(comp["annotations"]["truthfulness"]) >= {"Type", "Rationale", "Rating", "Rationale For Rating"}
    assert isinstance(comp["annotations"]["honesty"]["Rating"], str) and comp["critique"]
    pairs = datasets.load_dataset(str(out), split="train_prefs")
    assert len(pairs) >= 1 and all(r["score_chosen"] >= r["score_rejected"] for r in pairs)
    card = (out / "README.md").read_text()
    assert "UltraFeedback's annotation protocol" in card and "overall_score fix" in card


# ------------------------------------------------------------------------------------------- rehearsal
def _protocol_ran(aif: Path) -> None:
    summary = json.loads((aif / "summary.json").read_text())
    assert summary["judge_protocol"]["protocol"] == "ultrafeedback" and summary["judge_failures"] == 0
    assert summary["critique"]["critiques"] == summary["completions"]
    ratings = [json.loads(line) for line in (aif / "ratings.jsonl").read_text().splitlines()]
    assert ratings and all(set(r["group"]["shown"]) == set(ASPECTS) for r in ratings)
    assert all(len(order) == 4 for r in ratings for order in r["group"]["shown"].values())
    assert all(set(r["annotations"]["truthfulness"]) == {"Type", "Rationale", "Rating", "Rationale For Rating"}
               for r in ratings)


@pytest.mark.slow
def test_rehearsing_zephyr_aif_asks_its_stand_in_as_ultrafeedback_did(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rehearse", "zephyr-7b-beta/aif", "--out", "reh")
    assert code == 0, out + err[-3000:]
    swaps = (tmp_path / "reh" / "REHEARSAL.md").read_text()
    assert "asked with protocol ultrafeedback" in swaps
    _protocol_ran(tmp_path / "reh" / "run")


@pytest.mark.slow
def test_rehearsing_the_zephyr_pipeline_runs_the_protocol_within_five_minutes(cli, tmp_path, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, out, err = cli("rehearse", "zephyr-7b-beta/zephyr", "--out", "reh")
    assert code == 0, out + err[-3000:]
    assert time.monotonic() - started < 300
    _protocol_ran(tmp_path / "reh" / "pipeline" / "aif")
