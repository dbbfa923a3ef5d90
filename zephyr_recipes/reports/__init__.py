"""Reports: what finished run folders say, read back (``zephyr-recipes report``, a pipeline's report).

:mod:`.report` puts evaluation runs side by side and beside each benchmark's published rows, :mod:`.ablation` makes
the Zephyr paper's Table 3 (and the rounds of on-policy pipelines) from pipeline folders with each claim's interval
and verdict, :mod:`.page` writes report.html, and :mod:`.readcheck` checks that a finished folder's records are whole
before anything reads them. The benchmarks are read only through their interface and registry
(:mod:`zephyr_recipes.benchmarks`); nothing here imports the runtime or the command line.
"""
