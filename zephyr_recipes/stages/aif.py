"""AIF: several models answer each prompt, a judge rates every answer, the ratings become preference pairs.

Step 2 of the Zephyr method, after UltraFeedback. Everything is written to the run folder as it arrives
(``completions.jsonl``, ``ratings.jsonl``), so a killed run started again asks no model or judge twice. The
result is two datasets in the run folder:

- ``raw/``  the rated completions in openbmb/UltraFeedback's schema (instruction, models, completions with
            per-aspect annotations);
- ``data/`` preference pairs in HuggingFaceH4/ultrafeedback_binarized's schema, splits ``train_prefs`` and
            ``test_prefs``: point a DPO recipe's ``dataset.path`` at the run folder.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from ..core import revisions
from ..core.errors import ZephyrError
from ..core.recipe import Recipe, recipe_of
from ..core.records import dataset_card
from ..data import kinds, load_split
from ..data.binarize import Tally, binarize, binarize_tally
from ..data.sizes import DATASETS, PROMPT_TOKENS
from ..feedback import audit as judge_audit
from ..feedback import ledger, ultrafeedback
from ..feedback.judge_registry import check_judge, check_protocol, judge_load
from ..feedback.specs import load_of
from ..feedback.store import Store
from .aif_answers import (
    assemble,
    audit_views,
    audited,
    current_ratings,
    generate_all,
    generator_name,
    identities,
    input_rows,
    judge_all,
    judge_of,
    self_agreement,
)
from .aif_config import AIFStageConfig
from .base import TaskStage

log = logging.getLogger("zephyr_recipes")


AIFRecipe = Recipe[AIFStageConfig]


def section(cfg: dict) -> AIFStageConfig:
    """A checked config's `stage` section, typed (see :func:`zephyr_recipes.core.recipe.recipe_of`)."""
    return recipe_of(cfg, AIFStageConfig).stage


def check_config(recipe: AIFRecipe) -> None:
    stage = recipe.stage
    if not stage.generators:
        raise ZephyrError("the aif stage has no generators", "list at least one under stage.generators")
    names = set()
    for i, gen in enumerate(stage.generators):
        name = generator_name(gen, i)
        if name in names:
            raise ZephyrError(f"two generators are named {name!r}", "give every generator its own name")
        names.add(name)
    judge = judge_of(stage)
    check_judge(judge.type, "rate", "AI feedback")
    check_protocol("stage.judge", asdict(judge))
    ultrafeedback.check_stage(asdict(judge), stage.binarize.score)
    if not 0 <= stage.test_fraction < 1 or not 0 <= stage.self_agreement <= 1:
        raise ZephyrError("stage.test_fraction must be in [0, 1) and stage.self_agreement in [0, 1]",
                          "for example stage.test_fraction=0.1")
    judge_audit.check(stage.audit)
    for i, spec in enumerate(stage.audit.judges):
        check_judge(spec.type, "rate", f"stage.audit.judges[{i}]")
    if (stage.prompt_offset or 0) < 0:
        raise ZephyrError(f"stage.prompt_offset is {stage.prompt_offset} but must be 0 or more",
                          "null (or 0) starts at the first prompt of the seeded shuffle")


# ---------------------------------------------------------------------------------------------- prompts
def load_prompts(recipe: AIFRecipe | dict) -> list[str]:
    if isinstance(recipe, dict):  # a checked mapping
        recipe = recipe_of(recipe, AIFStageConfig)
    ds_cfg, seed = recipe.dataset, recipe.run.seed
    ds = load_split(ds_cfg, ds_cfg.train_split)
    col = ds_cfg.columns.get("prompt", "prompt")
    if col not in ds.column_names:
        col = next((c for c in ("prompt", "instruction", "messages") if c in ds.column_names), None)
        if col is None:
            raise ZephyrError(f"dataset {ds_cfg.path} has no prompt column (it has: {', '.join(ds.column_names)})",
                              "map one with dataset.columns.prompt=<column>")
    offset = recipe.stage.prompt_offset
    if offset is not None:  # a slice of the distinct prompts in seeded order: slices never share a prompt
        ds = ds.shuffle(seed=seed)
    elif ds_cfg.max_train_samples and ds_cfg.max_train_samples < len(ds):
        ds = ds.shuffle(seed=seed).select(range(ds_cfg.max_train_samples))
    prompts, seen = [], set()
    for value in ds[col]:
        if isinstance(value, list):  # a conversation: its first user turn
            value = next((m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"), None)
        if isinstance(value, str) and value.strip() and value not in seen:
            seen.add(value)
            prompts.append(value)
    if offset is not None:
        n = ds_cfg.max_train_samples
        if not n or offset + n > len(prompts):
            raise ZephyrError(f"stage.prompt_offset={offset} with dataset.max_train_samples={n} needs "
                              f"{offset + (n or 0)} distinct prompts, {ds_cfg.path}[{ds_cfg.train_split}] "
                              f"has {len(prompts)}", "set dataset.max_train_samples and keep offset + samples within "
                              "the prompt set (fewer rounds or fewer prompts per round)")
        prompts = prompts[offset:offset + n]
    if not prompts:
        raise ZephyrError(f"no usable prompts in {ds_cfg.path}[{ds_cfg.train_split}]",
                          "check dataset.columns.prompt")
    return prompts


# ------------------------------------------------------------------------------------------------- run
def _legacy(recipe: AIFRecipe, folder: Path) -> tuple[dict[str, str], str | None]:
    """The identities of the generators (by name) and of the judge of the config that made the folder's records
    written before identities were recorded: its first config (before any revision), else its config."""
    old = revisions.original_config(folder)
    try:
        gens, _, jid = identities(recipe_of(old, AIFStageConfig) if old else recipe)
    except (ZephyrError, KeyError, TypeError):
        return {}, None
    return {g.name: g.id for g in gens}, jid


def _write_parquet(rows: list[dict], path: Path) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))


def run(recipe: AIFRecipe, folder: Path) -> dict:
    """Generate, judge, binarize. Returns the summary (also written to summary.json)."""
    stage = recipe.stage
    prompts = load_prompts(recipe)
    log.info("aif: %d prompts from %s[%s]", len(prompts), recipe.dataset.path, recipe.dataset.train_split)
    completions, ratings = Store(folder / "completions.jsonl"), Store(folder / "ratings.jsonl")
    book = ledger.Ledger(completions, ratings, *_legacy(recipe, folder))
    critiques = Store(folder / "critiques.jsonl")
    try:
        generate_all(recipe, prompts, book)
        judge_all(recipe, prompts, book)
        critiqued = ultrafeedback.critique_step(recipe.stage.binarize.score, asdict(judge_of(recipe.stage)),
                                                recipe.hardware, prompts, critiques,
                                                *current_ratings(recipe, prompts, book))
    finally:
        completions.close()
        ratings.close()
        critiques.close()
    rows, scores, used = assemble(recipe, prompts, book, critiques)
    tally = Tally()
    pairs: dict[str, list] = {"train_prefs": [], "test_prefs": []}
    rule = asdict(stage.binarize)
    for row in rows:
        pair = binarize(row["instruction"], row["completions"], seed=recipe.run.seed, tally=tally, **rule)
        if pair is None:
            continue
        test = int(pair["prompt_id"][:8], 16) / 0xFFFFFFFF < stage.test_fraction
        pairs["test_prefs" if test else "train_prefs"].append(pair)
    if stage.test_fraction > 0 and not pairs["test_prefs"] and len(pairs["train_prefs"]) >= 2:
        # So few pairs that the share rounds to none: one still goes to test_prefs, which a DPO recipe reading
        # this folder names as its test split (the pair whose id hashes lowest, as the share would pick first).
        first = min(pairs["train_prefs"], key=lambda p: int(p["prompt_id"][:8], 16))
        pairs["train_prefs"].remove(first)
        pairs["test_prefs"].append(first)
        log.warning("aif: stage.test_fraction=%s of %d pairs rounds to none; 1 pair goes to test_prefs",
                    stage.test_fraction, len(pairs["train_prefs"]) + 1)
    audit = None
    if stage.audit.enabled:
        seed = recipe.run.seed if stage.audit.seed is None else stage.audit.seed
        answers, rated = audit_views(recipe, prompts, book)
        pairs, audit = judge_audit.run_audit(
            stage.audit, asdict(judge_of(stage)), [generator_name(g, i) for i, g in enumerate(stage.generators)],
            pairs, answers, rated, prompts, audited(recipe, prompts), folder, recipe.hardware, seed,
            input_rows(recipe))
    if not pairs["train_prefs"]:
        raise ZephyrError("AI feedback produced no preference pairs (every prompt was skipped: "
                          f"{tally.as_dict()})", "check the judge's failures in ratings.jsonl and the generators")
    _write_parquet(rows, folder / "raw" / "data" / "train-00000-of-00001.parquet")
    for split, items in pairs.items():
        if items:
            _write_parquet(items, folder / "data" / f"{split}-00000-of-00001.parquet")
    judge_failures = sum(1 for r in used if "failure" in r)
    all_scores = [s for v in scores.values() for s in v]
    gens, _, jid = identities(recipe)
    current = {gen.id for gen in gens}
    summary = {
        "prompts": len(prompts),
        "completions": sum(len(r["completions"]) for r in rows),
        "generation_failures": dict(Counter(r["model"] for r in completions.records.values()
                                            if "error" in r and r.get("generator") in current)),
        "ratings": len(used),
        "judge_failures": judge_failures,
        "mean_score_by_generator": {m: round(statistics.fmean(v), 4) for m, v in scores.items() if v},
        "score_distribution": dict(sorted(Counter(round(s * 4) / 4 for s in all_scores).items())),
        "pairs": {k: len(v) for k, v in pairs.items()},
        "binarize": {**rule, **binarize_tally(tally)},
        "self_agreement": self_agreement(recipe, prompts, book),
        "judge_protocol": ultrafeedback.describe_judge(asdict(judge_of(stage))),
        **({"critique": critiqued} if critiqued else {}),
        # What this invocation reused and asked, per generator and for the judge; the identities of the config's
        # generators and judge (the keys of their records in completions.jsonl and ratings.jsonl).
        "work": book.work,
        "identities": {"generators": {gen.name: gen.id for gen in gens}, "judge": jid},
        "records_on_disk": {"completions": len(completions), "ratings": len(ratings)},
        "audit": audit,
    }
    log.info("aif: %d completions, %d judge failures, %d train / %d test pairs", summary["completions"],
             judge_failures, len(pairs["train_prefs"]), len(pairs["test_prefs"]))
    return summary


class AIF(TaskStage):
    """AI feedback: generators answer prompts, a judge rates, ratings become preference pairs."""

    name = "aif"
    schema = AIFStageConfig
    rows = kinds.PROMPTS
    finished_hint = "point a dpo recipe's dataset.path at it"
    revisable = True  # a changed config redoes only the answers, ratings and pairs whose identity changed

    def check(self, recipe: AIFRecipe) -> None:
        check_config(recipe)

    def judge_probes(self, recipe: AIFRecipe) -> list[tuple[str, dict, str, str]]:
        return [("stage.judge", asdict(judge_of(recipe.stage)), "rate", "AI feedback")]

    def inputs(self, recipe: AIFRecipe) -> dict:
        return {"prompts": {"path": recipe.dataset.path, "split": recipe.dataset.train_split}}

    def execute(self, recipe: AIFRecipe, folder: Path) -> dict:
        return run(recipe, folder)

    def loads(self, recipe: AIFRecipe) -> list[dict]:
        stage, ds = recipe.stage, recipe.dataset
        prompts = ds.max_train_samples or DATASETS.get(ds.path or "", ({}, 0))[0].get(ds.train_split)
        if not prompts:
            try:
                prompts = len(load_prompts(recipe))
            except ZephyrError:
                prompts = 0
        out, answers = [], 0
        for i, gen in enumerate(stage.generators):
            k = int(gen.num_completions or stage.num_completions)
            answers += prompts * k
            new = int({**stage.sampling, **gen.sampling}.get("max_new_tokens") or 256)
            out.append(load_of(f"generator {generator_name(gen, i)}", asdict(gen), prompts * k, new))
        judge = judge_of(stage)
        new = int(judge.sampling.get("max_new_tokens") or 1024)
        requests, spec = answers, asdict(judge)
        listed = ultrafeedback.judge_load(spec, prompts, answers, stage.binarize.score)
        if listed:  # asked per aspect for groups of answers, and critiques
            requests, new = listed
        requests = int(requests * (1 + stage.self_agreement))
        out.append(judge_load("judge", spec, requests, new))
        return out + judge_audit.loads(stage.audit, spec, prompts, answers / max(prompts, 1), requests, new)

    def writes_rows(self, recipe: AIFRecipe, loads: list[dict]) -> tuple[int, float] | None:
        """One pair per prompt at most (train_prefs), each a prompt and two answers of about half their budget."""
        gens = [load for load in loads if load["role"].startswith("generator")]
        if not gens or not gens[0]["requests"]:
            return None
        prompts = gens[0]["requests"]
        answer = sum(g["new_tokens"] for g in gens) / len(gens) / 2
        return int(prompts * (1 - recipe.stage.test_fraction)), 2 * (PROMPT_TOKENS + answer)

    def card(self, recipe: AIFRecipe, prov: dict, result: dict) -> str:
        return dataset_card(recipe, prov, result) + "\n".join(judge_audit.card_lines(result.get("audit"))) + "\n"

    def headline(self, result: dict) -> dict:
        return result["pairs"]


STAGE = AIF()
