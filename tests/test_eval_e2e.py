"""The eval stage end to end: the tiny model on real MT-Bench questions and AlpacaEval instructions, an offline
function judge, an OpenAI-compatible judge on 127.0.0.1 (with resume), lm-eval on a local task, report and chat."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.benchmark_files import DATA
from tests.eval_helpers import ChatEndpoint

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _questions(tmp: Path) -> Path:
    """One real MT-Bench question per category."""
    seen, keep = set(), []
    for row in _rows(DATA / "mt_bench" / "question.jsonl"):
        if row["category"] not in seen:
            seen.add(row["category"])
            keep.append(row)
    path = tmp / "question.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return path


def _data_overrides(tmp: Path, samples: int = 5) -> list[str]:
    return [f"stage.mt_bench.questions={_questions(tmp)}",
            f"stage.mt_bench.judge_prompts={DATA / 'mt_bench' / 'judge_prompts.jsonl'}",
            f"stage.mt_bench.reference_answers={DATA / 'mt_bench' / 'reference_answer_gpt-4.jsonl'}",
            f"stage.alpaca_eval.instructions={DATA / 'alpaca_eval' / 'alpaca_eval_1_baseline_text_davinci_003.json'}",
            f"stage.alpaca_eval.prompt={DATA / 'alpaca_eval' / 'alpaca_eval_gpt4_judge_prompt.txt'}",
            f"stage.alpaca_eval.max_samples={samples}", "stage.mt_bench.max_new_tokens=6",
            "stage.alpaca_eval.sampling.max_new_tokens=6", "stage.benchmarks=[mt_bench,alpaca_eval]"]


def _run(*args: str) -> int:
    from zephyr_recipes.commands.cli import main

    return main(list(args))


@pytest.fixture(scope="module")
def function_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-fn")
    out = tmp / "run"
    assert _run("tiny/eval", *MODEL, *_data_overrides(tmp), f"run.output_dir={out}", "run.name=tiny-fn") == 0
    return out


@pytest.fixture(scope="module")
def lm_eval_run(tmp_path_factory):
    pytest.importorskip("lm_eval", reason="lm-eval is an optional extra (pip install 'zephyr-recipes[eval]')")
    tmp = tmp_path_factory.mktemp("eval-lm")
    rows = []
    for i in range(10):  # ARC's schema; the right answer is the longest choice
        a, b = i + 2, i + 3
        rows.append({"id": f"q{i}", "question": f"What is {a} plus {b}?",
                     "choices": {"text": [str(a + b), str(a * b + 100), "blue", str(a - b)],
                                 "label": ["A", "B", "C", "D"]}, "answerKey": "A"})
    data = tmp / "arc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    custom = tmp / "tasks" / "tiny_boolq.yaml"  # a task YAML of one's own, on local files too
    custom.parent.mkdir()
    (tmp / "yesno.jsonl").write_text("".join(json.dumps({"q": f"Is {i} even?", "label": i % 2}) + "\n"
                                             for i in range(6)))
    custom.write_text(f"task: tiny_yesno\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                      f"    test: {tmp / 'yesno.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
                      "doc_to_text: \"{{q}} Answer:\"\ndoc_to_choice: [\" yes\", \" no\"]\ndoc_to_target: label\n"
                      "metric_list:\n  - metric: acc\n")
    out = tmp / "run"
    tasks = (f"stage.lm_eval.tasks=[{{name: arc_challenge, num_fewshot: 2, data_files: {{train: {data}, "
             f"validation: {data}, test: {data}}}}}, {{name: tiny_yesno, yaml: {custom}}}]")
    assert _run("tiny/eval", *MODEL, "stage.benchmarks=[lm_eval]", tasks, "stage.lm_eval.batch_size=4",
                f"run.output_dir={out}", "run.name=tiny-lm", "--trust-recipe-code") == 0  # an own task file is code
    return out


# ------------------------------------------------------------------------------------- function judge
def test_tiny_model_on_real_questions_with_the_offline_judge(function_run):
    out = function_run
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    scores = json.loads((out / "scores.json").read_text())
    mt = scores["mt_bench"]
    assert mt["questions"] == 8 and mt["answered"] == 8 and mt["judged"] == 16 and mt["failures"] == 0
    assert set(mt["categories"]) == {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
                                     "humanities"}
    assert all(1 <= v <= 10 for v in mt["categories"].values()) and 1 <= mt["score"] <= 10
    answers = _rows(out / "mt_bench" / "model_answer.jsonl")
    assert len(answers) == 8 and all(set(a) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
                                     for a in answers)
    assert all(a["model_id"] == "tiny-fn" and len(a["choices"][0]["turns"]) == 2 for a in answers)
    ae = scores["alpaca_eval"]
    assert ae["instructions"] == 5 and ae["n_total"] == 5 and ae["failures"] == 0
    assert 0 <= ae["win_rate"] <= 100 and ae["baseline"] == ["text_davinci_003"] and ae["avg_length"] >= 0
    outputs = json.loads((out / "alpaca_eval" / "model_outputs.json").read_text())
    assert len(outputs) == 5 and all(set(o) == {"instruction", "output", "generator", "dataset"} for o in outputs)
    assert len(_rows(out / "alpaca_eval" / "judgments.jsonl")) == 5  # one per pair, in alpaca_eval's seeded order
    assert (out / "radar.png").stat().st_size > 5000
    card = (out / "README.md").read_text()
    assert "pipeline check, not a quality measure" in card and "## MT-Bench" in card and "## AlpacaEval" in card


# ---------------------------------------------------------------------------------- HTTP judge, resume
class FakeJudge(ChatEndpoint):
    """An OpenAI-compatible judge on 127.0.0.1: grades MT-Bench answers, ranks AlpacaEval pairs (always
    preferring output_1), and never gives a grade to a second turn judged against a reference answer."""

    def __init__(self):
        self.asked: Counter = Counter()
        self.systems: set = set()
        self.auth: set = set()
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, body: dict, headers) -> str:
        msgs = body["messages"]
        self.auth.add(headers.get("Authorization"))
        text = msgs[-1]["content"]
        with self.lock:
            self.asked[text] += 1
            n = self.asked[text]
            self.systems |= {m["content"][:40] for m in msgs if m["role"] == "system"}
        del n  # the same request gets the same reply: a resumed run reads what the first one did
        if "model_1" in text:
            return "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
        if "Reference Answer" in text:
            return "Not rated." if "Assistant A's Conversation" in text else "Correctness checked. Rating: [[4]]"
        return "Rating: [[8]]" if "Assistant A's Conversation" in text else "Rating: [[6]]"


@pytest.mark.slow  # a whole evaluation twice (make test-slow)
def test_openai_compatible_judge_and_resume_without_asking_twice(tmp_path, cli, monkeypatch):
    secret = "sk-eval-0123456789abcdefghijkl"
    monkeypatch.setenv("ZR_EVAL_KEY", secret)
    server = FakeJudge()
    out = tmp_path / "run"
    args = ["tiny/eval", *MODEL, *_data_overrides(tmp_path, samples=6), f"run.output_dir={out}",
            "~stage.judge.module", "stage.judge.type=openai",
            "stage.judge={type: openai, base_url: '" + server.url + "', model: gpt-4, api_key_env: ZR_EVAL_KEY, "
            "max_retries: 2, backoff: 0.01, concurrency: 4}", "stage.alpaca_eval.both_orders=true"]
    try:
        code, _, err = cli(*args)
        assert code == 0, err
        first = sum(server.asked.values())
        scores = json.loads((out / "scores.json").read_text())
        mt, ae = scores["mt_bench"], scores["alpaca_eval"]
        # math, reasoning, coding use the reference prompts (graded 4 on turn 1, no grade on turn 2: asked once, as
        # FastChat asks, recorded as a failure and left out); others 6 on turn 1, 8 on turn 2
        assert mt["failures"] == 3 and mt["judged"] == 13
        assert sorted(n for t, n in server.asked.items() if "Reference Answer" in t and "Conversation" in t) == [1] * 3
        assert mt["categories"]["math"] == 4.0 and mt["categories"]["writing"] == 7.0
        assert mt["turn_1"] == pytest.approx((5 * 6 + 3 * 4) / 8) and mt["turn_2"] == 8.0
        judged = {(j["category"], j["turn"]): j["judge_prompt"] for j in _rows(out / "mt_bench" / "judgments.jsonl")}
        assert judged[("math", 2)] == "single-math-v1-multi-turn" and judged[("writing", 1)] == "single-v1"
        assert judged[("coding", 1)] == "single-math-v1" and judged[("stem", 2)] == "single-v1-multi-turn"
        # a judge that always prefers output_1 is cancelled by judging both orders (an option, not the protocol)
        assert ae["win_rate"] == 50.0 and ae["n_draws"] == 6 and ae["output_1_preferred"] == 1.0
        assert ae["order_agreement"] == 0.0 and ae["failures"] == 0
        assert "You are a helpful assistant, that ranks models by the quality of their answers."[:40] in server.systems
        assert "You are a helpful assistant."[:40] in server.systems
        assert server.auth == {f"Bearer {secret}"}

        # Lose the last judgments as a kill would (and tear a line), then run the same command again.
        for name, drop in (("mt_bench/judgments.jsonl", 3), ("alpaca_eval/judgments.jsonl", 2)):
            path = out / name
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines[:-drop]) + lines[-drop][: len(lines[-drop]) // 2])
        answers_before = (out / "mt_bench" / "answers.jsonl").read_text()
        status = json.loads((out / "run.json").read_text())
        status["status"] = "running"
        (out / "run.json").write_text(json.dumps(status))
        before = Counter(server.asked)
        code, _, err = cli(*args)
        assert code == 0, err
    finally:
        server.close()
    again = sum(server.asked.values()) - first
    assert again == 5, again  # the 5 lost judgments, each asked once (a reply without a grade is not asked again)
    assert (out / "mt_bench" / "answers.jsonl").read_text() == answers_before  # no answer generated twice
    from zephyr_recipes.feedback.store import Store

    assert len(Store(out / "mt_bench" / "judgments.jsonl")) == 16  # the torn line is skipped
    assert json.loads((out / "scores.json").read_text())["mt_bench"] == mt
    assert sum(1 for k in server.asked if server.asked[k] > before[k]) == 5
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------------------- lm-eval
def test_lm_eval_on_local_task_files(lm_eval_run):
    scores = json.loads((lm_eval_run / "scores.json").read_text())
    arc = scores["lm_eval"]["arc_challenge"]
    assert arc["metric"] == "acc_norm" and arc["num_fewshot"] == 2 and 0 <= arc["value"] <= 100
    assert scores["lm_eval"]["tiny_yesno"]["metric"] == "acc"
    raw = json.loads((lm_eval_run / "lm_eval" / "results.json").read_text())
    assert raw["2"]["n-samples"]["arc_challenge"]["effective"] == 10
    assert "ARC" in (lm_eval_run / "README.md").read_text()


# ---------------------------------------------------------------------------------- report and chat
def test_report_puts_runs_beside_the_published_figures(function_run, lm_eval_run, cli, tmp_path):
    code, out, err = cli("report", str(function_run), str(lm_eval_run), "--out", str(tmp_path / "report"))
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("| tiny-fn | function |") for line in lines)
    assert any(line.startswith("| tiny-lm |") and "| – |" in line for line in lines)
    assert "| Zephyr-7B-beta (published) | GPT-4 | 7.34 |" in out and "90.60" in out and "57.44" in out
    assert "ablation: dDPO without dSFT (published)" in out and "4.76" in out
    assert "not model quality" in out and "Published figures (for reference)" in out
    assert (tmp_path / "report" / "radar.png").stat().st_size > 5000
    assert (tmp_path / "report" / "report.md").read_text() == out.rstrip("\n") + "\n" or \
        "Published figures" in (tmp_path / "report" / "report.md").read_text()
    code, _, err = cli("report", str(tmp_path))
    assert code == 2 and "not a finished evaluation run" in err


@pytest.mark.slow  # loads the model in several processes (make test-slow)
def test_chat_single_prompt_and_stdin_conversation(cli):
    code, first, err = cli("chat", "builtin://tiny-mistral", "Sort the numbers: 5 3 9", "--chat-template", "zephyr",
                           "--max-new-tokens", "3")
    assert code == 0 and first.strip(), err
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "zephyr_recipes", "chat", "builtin://tiny-mistral",
                           "--chat-template", "zephyr", "--max-new-tokens", "3", "--temperature", "0"],
                          input="Sort the numbers: 5 3 9\n\nReverse the words: red green\n/exit\nnever read\n",
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # the same greedy first reply, then a second one; nothing after /exit
    assert done.stdout.startswith(first) and done.stdout.strip() != first.strip(), done.stdout
    code, _, err = cli("chat", "./runs/no-such-run", "hi")
    assert code == 2 and "does not exist" in err
