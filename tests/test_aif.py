"""The AI feedback stage: real generators and judges, an HTTP endpoint on 127.0.0.1, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zephyr_recipes.embedded import judge as embedded_judge
from zephyr_recipes.embedded import tasks
from zephyr_recipes.feedback.judges import JudgeFailure, parse_aspect_ratings, parse_grade, parse_preference

PROMPTS = [tasks.sample(__import__("random").Random(i)).instruction for i in range(12)]


def _write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("\n".join(json.dumps({"prompt": p, "prompt_id": str(i)}) for i, p in enumerate(prompts)) + "\n")
    return path


def _recipe(tmp_path: Path, stage: str, name: str = "aif.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        f"dataset:\n  test_split: null\n  columns: {{prompt: prompt}}\nstage:\n{stage}")
    return path


def _rows(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]


# -------------------------------------------------------------------------------------------- parsing
def test_parsers_read_good_replies_and_refuse_bad_ones():
    ratings = parse_aspect_ratings('Sure. {"helpfulness": {"rating": 4, "rationale": "ok"}, "honesty": 5, '
                                   '"instruction_following": {"Rating": 3}, "truthfulness": {"rating": "2"}}')
    assert {k: v["Rating"] for k, v in ratings.items()} == {
        "helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 2}
    lines = parse_aspect_ratings("Helpfulness: 4\nHonesty - rating: 5\nInstruction following: 3\nTruthfulness: 1")
    assert lines["instruction_following"]["Rating"] == 3
    for bad in ("a fine answer", '{"helpfulness": 9, "honesty": 1, "instruction_following": 1, "truthfulness": 1}',
                "helpfulness: 4, honesty: 4"):
        with pytest.raises(JudgeFailure):
            parse_aspect_ratings(bad)
    assert parse_grade("Rating: [[8]]") == 8.0 and parse_grade("[[6.5]]") == 6.5
    with pytest.raises(JudgeFailure):
        parse_grade("I would give it an 8")
    with pytest.raises(JudgeFailure):
        parse_grade("[[11]]")
    assert parse_preference("Verdict: [[A]]") == 1.0 and parse_preference("[[C]]") == 0.5
    with pytest.raises(JudgeFailure):
        parse_preference("[[A]] or maybe [[B]]")


def test_embedded_judge_ranks_right_above_wrong():
    rng = __import__("random").Random(5)
    for _ in range(50):
        t = tasks.sample(rng)
        msgs = [{"role": "user", "content": t.instruction}]
        right = embedded_judge.rate(msgs, t.answer)
        wrong = embedded_judge.rate(msgs, t.wrong)
        assert all(right[a]["Rating"] == 5 for a in right)
        assert sum(v["Rating"] for v in wrong.values()) < sum(v["Rating"] for v in right.values())
        assert embedded_judge.grade(msgs, t.answer) == 10 and embedded_judge.grade(msgs, t.wrong) < 10
        assert embedded_judge.compare(msgs, t.answer, t.wrong) == 1.0


# ------------------------------------------------------------------------------- function judge, e2e
def test_function_judge_on_a_checkable_task_produces_pairs_dpo_can_read(tmp_path, cli):
    data = _write_prompts(tmp_path / "prompts.jsonl")
    recipe = _recipe(tmp_path, """  generators:
    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}
    - {name: sloppy, type: function, function: "tests.helpers:sloppy", num_completions: 2}
  judge: {type: function, module: zephyr_recipes.embedded.judge}
  self_agreement: 0.5
  test_fraction: 0.0
""")
    out = tmp_path / "run"
    args = (str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}")
    # Code from outside the package runs only when the command line says so; validate lists it.
    code, _, err = cli(*args)
    assert code == 2 and "stage.generators[1].function = tests.helpers:sloppy" in err
    assert "--trust-recipe-code" in err and "zephyr_recipes.embedded" not in err and not out.exists()
    code, text, err = cli("validate", *args)
    assert code == 0 and "code: stage.generators[1].function = tests.helpers:sloppy  (outside" in text
    assert "code: stage.judge.module = zephyr_recipes.embedded.judge\n" in text
    code, _, err = cli(*args, "--trust-recipe-code")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 12 and summary["completions"] == 36 and summary["judge_failures"] == 0
    assert summary["mean_score_by_generator"]["teacher"] == 5.0
    assert summary["mean_score_by_generator"]["sloppy"] < 5.0
    assert summary["self_agreement"]["exact"] == 1.0  # a program is consistent with itself

    import datasets

    pairs = datasets.load_dataset(str(out), split="train_prefs")
    assert set(pairs.column_names) == {"prompt", "prompt_id", "chosen", "rejected", "messages",
                                       "score_chosen", "score_rejected"}
    for row in pairs:
        assert row["chosen"][-1]["content"] == tasks.solve(row["prompt"])  # the teacher always wins
        assert row["score_chosen"] > row["score_rejected"]
    raw = datasets.load_dataset(str(out / "raw"), split="train")
    assert raw[0]["models"] == ["teacher", "sloppy", "sloppy"]
    assert set(raw[0]["completions"][0]["annotations"]) == {"helpfulness", "honesty", "instruction_following",
                                                           "truthfulness"}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_tiny_model_judge_failures_are_recorded_never_scored(tmp_path, cli):
    data = _write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:4])
    recipe = _recipe(tmp_path, """  sampling: {max_new_tokens: 8}
  generators:
    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}
    - {name: tiny, type: transformers, model: "builtin://tiny-mistral", model_config: {chat_template: zephyr}}
  judge: {type: transformers, model: "builtin://tiny-mistral", model_config: {chat_template: zephyr},
          max_retries: 1, sampling: {max_new_tokens: 16}}
""")
    out = tmp_path / "run"
    code, _, err = cli(str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}")
    # An untrained model cannot write the rubric's JSON: the pre-flight puts one constructed answer through it and
    # refuses before anything is generated (it used to generate everything and then fail every rating).
    assert code == 2 and "stage.judge could not rate a constructed answer before the run" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------ HTTP endpoint
class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 whose first answers to some prompts misbehave."""

    def __init__(self, delay: float = 0.0, misbehave: bool = True):
        self.attempts: Counter = Counter()
        self.auth: set = set()
        self.delay, self.misbehave = delay, misbehave
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # the pre-flight's /v1/models, as every OpenAI-compatible server answers it
                self._send(200, b'{"object": "list", "data": []}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.auth.add(self.headers.get("Authorization"))
                content = body["messages"][-1]["content"]
                key = (body["model"], content)
                with server.lock:
                    server.attempts[key] += 1
                    attempt = server.attempts[key]
                time.sleep(server.delay)
                status, text = server.reply(body["model"], content, attempt)
                if status == "sleep":
                    time.sleep(1.5)
                    status = 200
                if status == "malformed":
                    return self._send(200, b"{not json")
                if status != 200:
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                self._send(200, json.dumps(payload).encode())

            def _send(self, code, data):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client killed mid-request is part of the test

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, model: str, content: str, attempt: int):
        if model == "gen":
            n = PROMPTS.index(content) if content in PROMPTS else 0
            if self.misbehave and n == 11:
                return 503, ""  # never answers
            if self.misbehave and attempt == 1 and n % 5:
                return {1: 500, 2: 429, 3: "sleep", 4: "malformed"}[n % 5], ""
            return 200, f"Answer: {tasks.solve(content)}" if n % 2 else "no idea"
        # judge: the instruction and answer are inside the rubric prompt
        instruction = content.split("[Instruction]\n", 1)[1].split("\n\n[Answer]", 1)[0]
        answer = content.split("[Answer]\n", 1)[1].split("\n\nReply with JSON", 1)[0]
        if self.misbehave and instruction == PROMPTS[0] and attempt == 1:
            return 200, "The answer looks fine to me."
        if self.misbehave and instruction == PROMPTS[2]:
            return 200, "I refuse to give numbers."
        rated = embedded_judge.rate([{"role": "user", "content": instruction}], answer)
        return 200, json.dumps({k: {"rating": v["Rating"], "rationale": v["Rationale"]} for k, v in rated.items()})

    def close(self):
        self.httpd.shutdown()


ENDPOINT_STAGE = """  generators:
    - {{name: api, type: openai, base_url: "{url}", model: gen, api_key_env: ZR_TEST_KEY,
        timeout: 0.5, max_retries: 2, backoff: 0.01, concurrency: {conc}}}
    - {{name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}}
  judge: {{type: openai, base_url: "{url}", model: judge, api_key_env: ZR_TEST_KEY, max_retries: 1,
          timeout: 5, backoff: 0.01, concurrency: {conc}}}
  test_fraction: 0.0
"""


def test_openai_endpoint_with_slow_failing_and_malformed_replies(tmp_path, cli, monkeypatch):
    secret = "sk-test-0123456789abcdefghij"
    monkeypatch.setenv("ZR_TEST_KEY", secret)
    server = FakeOpenAI()
    try:
        data = _write_prompts(tmp_path / "prompts.jsonl")
        recipe = _recipe(tmp_path, ENDPOINT_STAGE.format(url=server.url, conc=4))
        out = tmp_path / "run"
        code, _, err = cli(str(recipe), f"dataset.path={data}", "dataset.train_split=train", f"run.output_dir={out}")
        assert code == 0, err
    finally:
        server.close()
    assert server.auth == {f"Bearer {secret}"}
    gen = {c: n for (m, c), n in server.attempts.items() if m == "gen"}
    for i, prompt in enumerate(PROMPTS):
        expected = 3 if i == 11 else (2 if i % 5 else 1)  # 503 forever: 1 + 2 retries; misbehaving: 1 retry
        assert gen[prompt] == expected, (i, gen[prompt])
    completions = _rows(out, "completions.jsonl")
    api = [r for r in completions if r["model"] == "api"]
    assert len(api) == 12 and sum("error" in r for r in api) == 1
    ratings = {r["completion"]: r for r in _rows(out, "ratings.jsonl")}
    failed = [r for r in ratings.values() if "failure" in r]
    # PROMPTS[2] is never rated (two answers), PROMPTS[0] succeeds on its retry.
    assert len(failed) == 2 and all("no rating" in r["failure"] for r in failed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_failures"] == 2 and summary["generation_failures"] == {"api": 1}
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_killed_run_resumes_without_asking_twice(tmp_path):
    server = FakeOpenAI(delay=0.15, misbehave=False)
    env = {**os.environ, "ZR_TEST_KEY": "k", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        data = _write_prompts(tmp_path / "prompts.jsonl")
        recipe = _recipe(tmp_path, ENDPOINT_STAGE.format(url=server.url, conc=1))
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "zephyr_recipes", str(recipe), f"dataset.path={data}",
               "dataset.train_split=train", f"run.output_dir={out}"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        try:
            while time.time() < deadline:
                path = out / "ratings.jsonl"
                if path.exists() and len(path.read_text().splitlines()) >= 5:
                    break
                assert proc.poll() is None, "the run ended before it could be killed"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        first = sum(server.attempts.values())
        assert json.loads((out / "run.json").read_text())["status"] == "running"
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        server.close()
    assert sum(server.attempts.values()) > first  # the second run did the rest
    repeated = [k for k, n in server.attempts.items() if n > 1]
    assert len(repeated) <= 1, repeated  # at most the one request in flight when it was killed
    assert len(_rows(out, "completions.jsonl")) == 24 and len(_rows(out, "ratings.jsonl")) == 24


def test_aif_config_errors(cli):
    for override, problem in (
        ("stage.generators=[]", "has no generators"),
        ("stage.judge.type=oracle", "stage.judge.type is 'oracle'"),
        ("stage.binarize.rejected=worst", "`stage.binarize.rejected` is 'worst' but must be one of 'random', 'lowest'"),
        ("+stage.generators.0.temprature=1", "unknown key `stage.generators[0].temprature`"),
    ):
        code, _, err = cli("validate", "tiny/aif", override)
        assert code == 2 and problem in err and "fix:" in err, (override, err)
