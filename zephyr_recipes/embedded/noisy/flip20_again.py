"""A second instance of zephyr_recipes.embedded.noisy.flip20 (flip=0.2, seed=1): the same judge, asked afresh.

The noisy judge draws again each time it is asked the same thing in one process (that is what makes a second rating
differ); a pipeline that runs two AI-feedback stages with the same judge in one process gives the second stage this
instance, so its first ratings are the first stage's (tiny/zephyr-noisy: aif-noisy and aif-audited)."""

from ..noisy_judge import NoisyJudge

rate, compare, grade = NoisyJudge(flip=0.2, seed=1).functions()
