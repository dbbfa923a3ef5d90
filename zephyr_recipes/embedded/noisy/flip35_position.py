"""The noisy stand-in judge with flip=0.35, position_bias=0.3, length_bias=0.2, seed=2 (see zephyr_recipes.embedded.noisy_judge)."""

from ..noisy_judge import NoisyJudge

rate, compare, grade = NoisyJudge(flip=0.35, position_bias=0.3, length_bias=0.2, seed=2).functions()
