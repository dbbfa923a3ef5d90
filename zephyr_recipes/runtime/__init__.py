"""The process that runs one stage from a frozen run folder (``python -m zephyr_recipes.runtime.worker FOLDER``)."""
