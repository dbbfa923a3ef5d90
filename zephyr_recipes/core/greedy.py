"""Greedy answers of vLLM and transformers differ: a warning where a recipe compares them.

The same model, prompts and greedy decoding (temperature 0) give different answers through vLLM and through
transformers' ``generate``: their kernels sum in another order (and batch, pad and cache differently), so the
logits differ in the last bits and greedy decoding follows another token wherever two candidates are nearly tied.
Measured on this project's development VM (vLLM's CPU build against transformers, one 2-layer test model): 15 of
32 prompts got a different greedy answer. Nothing is wrong with either; but a recipe that compares greedy answers
across the two (an AI-feedback pool with a greedy generator of each kind, two evaluations of a pipeline answered by
different backends) measures the backend as well as the model. ``validate``, ``show`` and the AI-feedback card say
so (docs/ai-feedback.md, "vLLM and transformers").
"""

from __future__ import annotations

MEASURED = "15 of 32 prompts differed on this project's VM"


def backend(spec: dict) -> str | None:
    """'vllm', 'transformers' or None (an API, a function) for a generator spec."""
    kind = spec.get("type")
    if kind == "vllm" or (kind == "openai" and "vllm" in str(spec.get("serve") or "")):
        return "vllm"
    return "transformers" if kind == "transformers" else None


def _greedy(sampling: dict) -> bool:
    return float(sampling.get("temperature", 1.0) or 0.0) == 0.0 or sampling.get("do_sample") is False


def aif_warning(cfg: dict) -> str | None:
    """The warning for an AI-feedback config whose generators answer through both backends, one of them greedy.

    ``cfg``: any stage's config mapping (a pipeline's stages are read one by one); the AI-feedback stage's schema
    lies above this layer, so its section is read as the mapping it was checked as."""
    stage = cfg.get("stage") or {}
    if stage.get("name") != "aif":
        return None
    default = stage.get("sampling") or {}
    by = {"vllm": [], "transformers": []}  # type: dict[str, list[tuple[str, bool]]]
    for i, gen in enumerate(stage.get("generators") or []):
        kind = backend(gen)
        if kind:
            by[kind].append((gen.get("name") or f"generator{i}", _greedy({**default, **(gen.get("sampling") or {})})))
    if not by["vllm"] or not by["transformers"] or not any(g for kind in by.values() for _, g in kind):
        return None
    names = {k: ", ".join(n + (" (greedy)" if g else "") for n, g in v) for k, v in by.items()}
    return (f"generators answer through vLLM ({names['vllm']}) and transformers ({names['transformers']}): their "
            f"greedy answers differ for the same model ({MEASURED}), so comparing them compares the backends too")


def pipeline_warning(configs: list[tuple[str, dict]]) -> str | None:
    """The warning for a pipeline whose evaluations (compared in its report) answer through different backends."""
    evals = [(name, "vLLM" if (c.get("stage") or {}).get("vllm") is not None else "transformers")
             for name, c in configs if (c.get("stage") or {}).get("name") == "eval"]
    if len({kind for _, kind in evals}) < 2:
        return None
    said = ", ".join(f"{name}: {kind}" for name, kind in evals)
    return (f"the evaluations answer through different backends ({said}): vLLM's and transformers' greedy answers "
            f"differ for the same model ({MEASURED}), so their comparison measures the backend too")


def warnings(cfg: dict) -> list[str]:
    """Every such warning of a composed recipe or pipeline."""
    if "pipeline" in cfg:
        stages = [(st["name"], st["config"]) for st in cfg["pipeline"]["stages"]]
        found = [w for _, c in stages if (w := aif_warning(c))]
        return found + [w for w in [pipeline_warning(stages)] if w]
    return [w for w in [aif_warning(cfg)] if w]
