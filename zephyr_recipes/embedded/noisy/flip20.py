"""The noisy stand-in judge with flip=0.2, seed=1 (see zephyr_recipes.embedded.noisy_judge)."""

from ..noisy_judge import NoisyJudge

rate, compare, grade = NoisyJudge(flip=0.2, seed=1).functions()
