"""Orchestration: composing (:mod:`.compose`, the only user of Hydra) and validating recipes, the memory and time
plans, the pre-flight and the checks of what a run will run, launching a run folder (:mod:`.launch`, its dry run),
the worker that runs one stage from a frozen run folder (``python -m zephyr_recipes.runtime.worker FOLDER``),
pipelines, sweeps, rehearsals and chat (ARCHITECTURE.md)."""
