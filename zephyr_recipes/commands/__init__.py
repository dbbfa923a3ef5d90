"""The command line only: :mod:`.cli` (``main``, the console script), :mod:`.parser` (every command's arguments)
and the thin ``cmd_*`` handlers in :mod:`.recipe`, :mod:`.run` and :mod:`.results`, which call into
:mod:`zephyr_recipes.runtime` and :mod:`zephyr_recipes.reports` (ARCHITECTURE.md)."""
