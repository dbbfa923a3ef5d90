"""A second noisy judge for the audit at the higher noise level: pointwise, flip=0.35, seed=202, independent of
zephyr_recipes.embedded.noisy.flip35_position (see zephyr_recipes.embedded.noisy_judge)."""

from ..noisy_judge import NoisyJudge

rate, compare, grade = NoisyJudge(flip=0.35, seed=202).functions()
