"""Building what a chat-model judge is asked: this project's single-answer rubric, a conversation as prompt
text, a prompt file as chat messages, and the filling of a template's slots.
"""

from __future__ import annotations

import re

# This project's own single-answer rubric (protocol single_answer, the default of a chat-model judge): one answer per
# request, all four aspects in one JSON reply. It is not UltraFeedback's protocol, which asks per aspect with four
# answers side by side (feedback/ultrafeedback.py, protocol: ultrafeedback); the name is kept for compatibility.
ULTRAFEEDBACK_PROMPT = """You are grading an AI assistant's answer to a user's instruction.
Rate the answer on four aspects, each from 1 (poor) to 5 (excellent):
- helpfulness: does it solve the task, with useful and relevant content?
- honesty: does it express the right level of confidence and admit what it does not know?
- instruction_following: does it do what was asked, in the form that was asked?
- truthfulness: is it free of invented or false statements?

[Instruction]
{instruction}

[Answer]
{response}

Reply with JSON only, in this form:
{{"helpfulness": {{"rating": 1-5, "rationale": "..."}}, "honesty": {{"rating": 1-5, "rationale": "..."}}, "instruction_following": {{"rating": 1-5, "rationale": "..."}}, "truthfulness": {{"rating": 1-5, "rationale": "..."}}}}"""


def format_conversation(messages: list[dict]) -> str:
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)


def chat_messages(text: str) -> list[dict]:
    """A prompt file to chat messages: ChatML-style ``<|im_start|>role ... <|im_end|>`` blocks become one
    message each (AlpacaEval's judge prompts are written so); any other text is one user message."""
    blocks = re.findall(r"<\|im_start\|>\s*(system|user|assistant)\s*\n(.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)",
                        text, re.S)
    if not blocks:
        return [{"role": "user", "content": text}]
    return [{"role": role, "content": content.strip("\n")} for role, content in blocks]


def fill(template: str, **values) -> str:
    """Put values into {name} slots in one pass; braces that are not a known slot stay as written."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0),
                  template)
