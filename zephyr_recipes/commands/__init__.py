"""The command line and orchestration: each command, composing and validating recipes, the memory and time
plans, the pre-flight, launching a run folder, pipelines, sweeps, rehearsals and the report (ARCHITECTURE.md)."""
