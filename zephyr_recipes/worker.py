"""The worker's old module path: Slurm scripts written into run folders before the package was grouped by layer
name ``python -m zephyr_recipes.worker``; they still resume. New launches use :mod:`zephyr_recipes.runtime.worker`."""

from zephyr_recipes.runtime.worker import main

if __name__ == "__main__":
    raise SystemExit(main())
