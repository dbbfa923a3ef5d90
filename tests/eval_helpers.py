"""Scripted judges for the evaluation tests: programs that answer like a judge model would, misbehaving on cue."""

from collections import Counter

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
