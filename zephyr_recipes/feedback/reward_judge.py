"""A trained reward model (stage=reward) as judge."""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

from ..core.schema import HardwareConfig
from ..data.binarize import ASPECTS
from ..model import modeling
from ..model.scoring import Scorer, load_reward_model
from .judge_base import Judge, Verdict
from .replies import JudgeFailure
from .specs import RewardModelJudgeSpec, load_of


class RewardModelJudge(Judge):
    """A trained reward model as judge: it rates one answer and compares two, reading the conversation itself.

    A rating is the reward written on every aspect (so binarization's mean score is the reward itself, and a
    higher reward makes the chosen answer); a comparison is 1.0, 0.0 or 0.5 as the first answer's reward is
    higher, lower or equal (Arena-Hard gets slight verdicts from it). Nothing is sampled, so the judge agrees with
    itself exactly. It gives no 1-10 grades: MT-Bench is refused when the recipe is validated.
    """

    type = "reward_model"
    Settings = RewardModelJudgeSpec
    KINDS = frozenset({"rate", "compare"})
    NOT_CHAT = "scores answers itself"
    READS_PROMPTS = False

    @classmethod
    def make(cls, spec: dict, hardware: HardwareConfig | dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "RewardModelJudge":
        return cls.from_spec(spec, hardware)

    @classmethod
    def load(cls, role: str, spec: dict, requests: int, new_tokens: int) -> dict:
        return load_of(role, spec, requests, new_tokens)  # a local model, scored in batches

    def __init__(self, model: str, hardware: HardwareConfig | dict | None = None, model_config: dict | None = None,
                 batch_size: Any = "auto", max_length: Optional[int] = None, aspects=None,
                 system: Optional[str] = None):
        cfg, self.placement = modeling.standalone(model, model_config, hardware, "judge")
        # chat_template null: the one the reward model was trained with
        tokenizer = modeling.load_tokenizer(cfg, where="stage.judge.model_config")
        net = load_reward_model(model, cfg, self.placement)
        if not self.placement.load_in_4bit:
            net = net.to(self.placement.device)
        if batch_size == "auto":
            batch_size = 64 if self.placement.device == "cuda" else 16
        self.scorer = Scorer(net.eval(), tokenizer, int(batch_size), max_length)
        self.aspects = tuple(aspects or ASPECTS)
        self.system = system
        self.name = model

    @classmethod
    def from_spec(cls, spec: dict, hardware: HardwareConfig | dict | None = None) -> "RewardModelJudge":
        """The judge of a checked ``{type: reward_model, model, ...}`` spec."""
        return cls(spec["model"], hardware, spec["model_config"], spec["batch_size"], spec["max_length"],
                   spec["aspects"], spec["system"])

    def _conversation(self, messages: list[dict], response: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system and \
            not any(m.get("role") == "system" for m in messages) else []
        return system + list(messages) + [{"role": "assistant", "content": response}]

    def scores(self, pairs: list[tuple]) -> list[float]:
        """Rewards of (messages, response) pairs."""
        return self.scorer.score([self._conversation(m, r) for m, r in pairs])

    def _streamed(self, pairs: list[tuple]) -> Iterator[tuple[int, float]]:
        """(index, reward) a few batches at a time, so the caller records ratings as they come."""
        step = self.scorer.batch_size * 8
        for start in range(0, len(pairs), step):
            for j, value in enumerate(self.scores(pairs[start:start + step])):
                yield start + j, value

    def rate_many(self, items) -> Iterator[tuple[int, Any]]:
        for i, value in self._streamed([(it.messages, it.answers[0]) for it in items]):
            if not math.isfinite(value):
                yield i, JudgeFailure(f"the reward model returned {value}")
                continue
            rating = repr(value)
            why = f"reward {value:.6g} from {self.name}"
            yield i, Verdict({a: {"Rating": rating, "Rationale": why} for a in self.aspects}, f"reward {rating}")

    def compare_many(self, items) -> Iterator[tuple[int, Any]]:
        """The first answer against the second, by their rewards; prompts are not read."""
        items = list(items)
        first = self.scores([(it.messages, it.answers[0]) for it in items])
        second = self.scores([(it.messages, it.answers[1]) for it in items])
        for i, (x, y) in enumerate(zip(first, second)):
            yield i, Verdict(1.0 if x > y else 0.0 if x < y else 0.5, f"rewards {x!r} vs {y!r}")
