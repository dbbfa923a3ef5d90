"""The noisy stand-in judge, listwise (a prompt's answers rated together), with flip=0.35, position_bias=0.3,
length_bias=0.2 (see zephyr_recipes.embedded.noisy_judge)."""

from ..noisy_judge import NoisyJudge

_judge = NoisyJudge(flip=0.35, position_bias=0.3, length_bias=0.2, seed=2)
rate, compare, grade = _judge.functions()
rate_list = _judge.rate_list
