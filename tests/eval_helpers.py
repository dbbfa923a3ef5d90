"""Scripted judges for the evaluation tests: programs that answer like a judge model would, misbehaving on cue."""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ASKED: Counter = Counter()


def grader(messages):
    """An MT-Bench judge: malformed first reply to turn-2 prompts, then a grade; never grades 'NEVER'."""
    text = messages[-1]["content"]
    ASKED[text] += 1
    if "NEVER" in text:
        return "I cannot decide on a number."
    if "Assistant A's Conversation" in text and ASKED[text] == 1:
        return "Rating: 7 out of 10"
    return f"The answer is fine. Rating: [[{7 if messages[0]['role'] == 'system' else 3}]]"


def ranker(messages):
    """An AlpacaEval judge that always prefers output_1 (a pure position bias), in assorted formats."""
    text = messages[-1]["content"]
    ASKED[text] += 1
    if "BROKEN" in text:
        return "Both are good."
    return "```python\n[{'model': 'model_1', 'rank': 1}, {\"model\": \"model_2\", \"rank\": 2}]\n```"


# ---------------------------------------------------------------------------------------------- Arena-Hard
ARENA_SYSTEM: list = []  # the system prompt the judge must be given (set by the test)
OUTCOMES = ("B>>A", "B>A", "A=B", "A>B", "A>>B")  # the model's outcome, from its worst to its best


def known_outcome(uid: str, model_is_a: bool) -> str:
    """A fixed, uneven verdict per prompt and position, as the model's result: index into OUTCOMES. The judge
    leans a little towards assistant A, as real judges do."""
    import hashlib

    h = int(hashlib.sha1(uid.encode()).hexdigest(), 16)
    table = (0, 0, 1, 1, 1, 1, 2, 3, 3, 4)
    k = table[h % 10]
    if model_is_a and h % 7 == 0:
        k = min(4, k + 1)
    return OUTCOMES[k]


def model_answer(uid: str) -> str:
    return f"MODEL-ANSWER for {uid}: a plain reply."


def arena_judge(messages):
    """An Arena-Hard judge with known verdicts: it finds the model's answer in the benchmark's template and
    replies with the verdict known_outcome() assigns, from the model's side turned into A/B labels."""
    import re

    system, user = messages[0]["content"], messages[-1]["content"]
    if ARENA_SYSTEM and system != ARENA_SYSTEM[0]:
        return "wrong system prompt"
    a = re.search(r"<\|The Start of Assistant A's Answer\|>\n(.*?)\n<\|The End of Assistant A's Answer\|>", user, re.S)
    b = re.search(r"<\|The Start of Assistant B's Answer\|>\n(.*?)\n<\|The End of Assistant B's Answer\|>", user, re.S)
    if not (a and b):
        return "template not recognised"
    model_is_a = a.group(1).startswith("MODEL-ANSWER")
    text = a.group(1) if model_is_a else b.group(1)
    uid = text.split(" for ", 1)[1].split(":", 1)[0]
    outcome = known_outcome(uid, model_is_a)  # written as "model ? baseline"
    if not model_is_a:  # the same outcome with the model as B
        outcome = {"A>>B": "B>>A", "A>B": "B>A", "A=B": "A=B", "B>A": "A>B", "B>>A": "A>>B"}[outcome]
    ASKED[user] += 1
    return f"My own answer first ... Assistant A is fine.\n\nMy final verdict is: [[{outcome}]]"


def mute_judge(messages):
    """An Arena-Hard judge that never writes a verdict for prompts marked MUTE, and misses it once elsewhere."""
    user = messages[-1]["content"]
    ASKED[user] += 1
    if "MUTE" in user:
        return "Both answers have merits; I cannot choose."
    if ASKED[user] == 1:
        return "Assistant A is slightly better."
    return "Final verdict: [[A>B]]"


class ChatEndpoint:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 for the tests. ``answer(body, headers)`` (a method of a
    subclass, or given) returns the reply text or a whole choice ({message, logprobs}); every request body is kept
    in ``requests``."""

    def __init__(self, answer=None):
        self.requests: list[dict] = []
        reply = answer or self.answer
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # /v1/models, which the pre-flight asks (every OpenAI-compatible server answers it)
                data = b'{"object": "list", "data": []}'
                self.send_response(200 if self.path.rstrip("/").endswith("/models") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                got = reply(body, self.headers)
                choice = {"index": 0, "message": {"role": "assistant", "content": got}} if isinstance(got, str) else got
                data = json.dumps({"choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict, headers) -> "str | dict":
        raise NotImplementedError

    def close(self):
        self.httpd.shutdown()
