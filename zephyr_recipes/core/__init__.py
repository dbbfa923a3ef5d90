"""Shared pieces every layer may use: errors, logging, the config schemas, where recipes live, run folders and what
a run records, secret and destructive-override guards, trust of recipe code, preemption."""
