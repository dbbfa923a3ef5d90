"""AlpacaEval 2.0: win rate and length-controlled (LC) win rate against the gpt4_turbo baseline.

The model answers the 805 instructions; the judge is shown the baseline's and the model's outputs under
alpaca_eval's ``weighted_alpaca_eval_gpt4_turbo`` prompt (``alpaca_eval_clf.txt``: reply with the identifier of
the better output, ``m`` or ``M``). With an OpenAI-compatible judge that returns log-probabilities the
preference is weighted, as alpaca_eval does it: the probability of the model's identifier among ``m`` and ``M``
in the first token's top log-probabilities. Otherwise (no log-probabilities, a local or function judge) it is
the discrete choice, and ``scores.json`` says so (``preferences: discrete``). Each pair is judged once, in
alpaca_eval's seeded order (see :func:`.alpaca.switched`), unless both orders are asked for.

The win rate and its standard error are alpaca_eval's arithmetic (:func:`.alpaca.win_rate`). The length-controlled
win rate comes from alpaca_eval's own code (``alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate``) on
the run's annotations, written in alpaca_eval's annotation format. Its GLM needs alpaca_eval's ``df_gamed.csv``
(instruction difficulty and the gamed baselines' annotations, from the ``tatsu-lab/alpaca_eval`` hub dataset),
fetched on first use into the hub cache, or given as a local path for an offline machine. Without it there is no
LC figure (the reason is in ``scores.json``). An instruction set other than AlpacaEval's has no difficulty
estimates: ``glm: length_controlled_minimal`` runs on it with a table of zero difficulties, and its LC figure is
labelled approximate, not comparable, with no standard error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
from pathlib import Path

from ..core.errors import ZephyrError
from ..feedback.judges import JudgeFailure
from ..feedback.store import Store
from . import alpaca
from .alpaca import instruction_id, win_rate
from .sources import local_file

log = logging.getLogger("zephyr_recipes")

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
GLMS = ("length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal")
PACKAGE_PREFIX = "alpaca_eval:"


def _require_package():
    try:
        from alpaca_eval.metrics import glm_winrate
    except ImportError as exc:
        raise ZephyrError(f"the AlpacaEval 2.0 LC win rate needs the alpaca-eval package ({exc})",
                          "pip install 'zephyr-recipes[eval]'") from None
    return glm_winrate


def package_file(spec: str) -> str:
    """``alpaca_eval:evaluators_configs/...`` -> that file of the installed alpaca-eval package."""
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    import importlib.util

    found = importlib.util.find_spec("alpaca_eval")
    if found is None or not found.origin:
        raise ZephyrError(f"{spec} names a file of the alpaca-eval package, which is not installed",
                          "pip install 'zephyr-recipes[eval]', or give the file's path or URL")
    path = Path(found.origin).parent / spec[len(PACKAGE_PREFIX):]
    if not path.is_file():
        raise ZephyrError(f"the installed alpaca-eval package has no {spec[len(PACKAGE_PREFIX):]}",
                          "give the file's path or URL instead")
    return str(path)


# ------------------------------------------------------------------------------------------- judging
def parse_choice(text: str) -> float:
    """The clf prompt's reply, ``m`` (output_1) or ``M`` (output_2) -> probability that output_1 is better."""
    word = text.strip().strip("`'\"*.").strip()
    if word in ("m", "M"):
        return 1.0 if word == "m" else 0.0
    raise JudgeFailure("the reply is not the identifier m or M", text)


LABELS = ("m", "M")  # the clf prompt's identifiers of output_1 and output_2


def judge_all(judge, rows: list[dict], outputs: Store, judgments: Store, prompt: str | None, both_orders: bool,
              logprobs: bool, order_seed: int | None = 0) -> None:
    """Order 0 shows the baseline as output_1 (``m``) and the model as output_2 (``M``); order 1 swaps them.
    With ``logprobs`` a judge that offers token log-probabilities weighs m against M."""
    alpaca.judge_all(judge, rows, outputs, judgments, prompt, both_orders, parse_choice, LABELS if logprobs else None,
                     "AlpacaEval 2.0", raw_chars=200, record_kind=True, order_seed=order_seed)


# ------------------------------------------------------------------------------------------- scoring
def annotation_records(rows: list[dict], produced: dict[str, str], judgments: list[dict], model_id: str,
                annotator: str = ANNOTATOR) -> list[dict]:
    """One annotation per judged instruction in alpaca_eval's format: output_1 the baseline's, output_2 the
    model's, preference in [1, 2] (2: the model's output is better), ``index`` the instruction's position in
    the instruction set (alpaca_eval's difficulty table is indexed so)."""
    by_iid: dict[str, list[float]] = {}
    for j in judgments:
        if "model_preference" in j:
            by_iid.setdefault(j["instruction_id"], []).append(j["model_preference"])
    out = []
    for r in rows:
        iid = instruction_id(r["instruction"])
        if iid in by_iid and iid in produced:
            out.append({"instruction": r["instruction"], "output_1": r["output"], "output_2": produced[iid],
                        "generator_1": str(r.get("generator", "baseline")), "generator_2": model_id,
                        "annotator": annotator, "preference": 1.0 + statistics.fmean(by_iid[iid]),
                        "index": int(r.get("index", 0))})
    return out


def standin_difficulties(rows: list[dict], path: Path) -> Path:
    """A df_gamed-shaped table with zero difficulty for every instruction: what length_controlled_minimal reads
    when the instruction set is not AlpacaEval's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["model,index,instruction_difficulty,preference,std_delta_len,not_gamed_baseline"]
    top = max((int(r.get("index", n)) for n, r in enumerate(rows)), default=-1)
    # alpaca_eval looks a difficulty up by the table's row number: one row per index up to the largest
    lines += [f"none,{i},0.0,0.5,0.0,True" for i in range(top + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _local_alpaca_eval_files(glm_winrate, files: dict[str, str]):
    """alpaca_eval downloads df_gamed.csv (and instruction_difficulty.csv) from the hub inside its GLM code;
    while this is active those names resolve to the given local files, every other name as before."""
    original = glm_winrate.hf_hub_download

    def resolve(*args, filename=None, **kwargs):
        if filename in files:
            return files[filename]
        return original(*args, filename=filename, **kwargs)

    glm_winrate.hf_hub_download = resolve
    try:
        yield
    finally:
        glm_winrate.hf_hub_download = original


def length_controlled(annotated: list[dict], glm: str, df_gamed: str, weights_dir: Path | None = None) -> dict:
    """alpaca_eval's raw and length-controlled win rates of the annotations, through its own function."""
    glm_winrate = _require_package()
    if glm not in glm_winrate.GLM_INFO:
        raise ZephyrError(f"stage.alpaca_eval_2.glm={glm!r} is not one of alpaca_eval's GLMs",
                          f"choose from: {', '.join(glm_winrate.GLM_INFO)}")
    if not annotated:
        return {"win_rate": None, "standard_error": None, "length_controlled_winrate": None,
                "lc_standard_error": None, "n_total": 0}
    folds = int((glm_winrate.GLM_INFO[glm].get("kwargs") or {}).get("n_splits") or 0)
    if len(annotated) < folds:  # its GLM is fitted with that many cross-validation folds, one instruction at least each
        return {"length_controlled_winrate": None, "lc_standard_error": None, "n_total": len(annotated),
                "lc_note": f"not computed: glm {glm} is fitted with {folds}-fold cross-validation and needs at least "
                           f"{folds} judged instructions, here {len(annotated)}"}
    with _local_alpaca_eval_files(glm_winrate, {"df_gamed.csv": df_gamed}):
        metrics = glm_winrate.get_length_controlled_winrate(
            annotated, glm_name=glm, save_weights_dir=weights_dir, is_warn_extreme_changes=True)
    out = {}
    for key, value in metrics.items():
        value = value.item() if hasattr(value, "item") else value
        out[key] = None if isinstance(value, float) and math.isnan(value) else \
            (round(value, 4) if isinstance(value, float) else value)
    return out


APPROXIMATE = "approximate, not comparable: zero instruction difficulty (glm length_controlled_minimal)"
PUBLISHED_DF_GAMED = "hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv"  # the file alpaca_eval's own GLM reads


def df_gamed_source(spec: str | None, local: str | None) -> dict | None:
    """Which df_gamed.csv the LC came from: its name as given, its file name and sha256, and whether it is the
    published one (a file the user supplied makes an LC that is not the published protocol's)."""
    if not spec or not local:
        return None
    import hashlib

    digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
    return {"given": spec, "file": Path(local).name, "sha256": digest, "published": spec == PUBLISHED_DF_GAMED}


def scores(rows: list[dict], produced: dict[str, str], judgments: list[dict], model_id: str, glm: str,
           df_gamed: "str | None", folder: Path, lc_note: str | None = None, approximate: bool = False,
           source: dict | None = None) -> dict:
    """Win rate and standard error (alpaca_eval's arithmetic); the LC win rate from alpaca_eval's GLM when
    ``df_gamed`` is given (else None, with ``lc_note`` saying why); ``approximate`` marks an LC from the zero
    difficulty table, whose standard error is not reported."""
    annotated = annotation_records(rows, produced, judgments, model_id)
    (folder / "annotations.json").write_text(json.dumps(annotated, indent=1, ensure_ascii=False) + "\n")
    out = win_rate([a["preference"] - 1.0 for a in annotated])
    out.update(length_controlled_winrate=None, lc_standard_error=None)
    if df_gamed and annotated:
        lc = length_controlled(annotated, glm, df_gamed, folder / "glm_weights")
        out.update(length_controlled_winrate=lc.get("length_controlled_winrate"),
                   lc_standard_error=None if approximate else lc.get("lc_standard_error"))
        if lc.get("lc_note"):
            out["lc_note"] = lc["lc_note"]
        elif approximate:
            out["lc_note"], out["lc_caveat"] = APPROXIMATE, "approximate, not comparable"
        elif source and not source["published"]:  # a df_gamed the user supplied: named, and not the published LC
            out["lc_caveat"] = f"df_gamed {source['file']} sha256 {source['sha256'][:12]}, not the published-protocol LC"
            out["lc_note"] = (f"from a user-supplied df_gamed ({source['given']}, sha256 {source['sha256']}): not the "
                              f"published-protocol LC, which reads {PUBLISHED_DF_GAMED}")
    if source:
        out["df_gamed"] = source
    elif lc_note:
        out["lc_note"] = lc_note
    kinds = sorted({j["kind"] for j in judgments if "kind" in j})
    out.update({
        "glm": glm,
        "preferences": "+".join(kinds) if kinds else None,
        "avg_length": round(statistics.fmean(len(o) for o in produced.values()), 1) if produced else None,
        "baseline_avg_length": round(statistics.fmean(len(r["output"]) for r in rows), 1) if rows else None,
        "baseline": sorted({str(r.get("generator", "?")) for r in rows}),
        "instructions": len(rows),
        "failures": sum(1 for j in judgments if "failure" in j),
        "identical": sum(1 for j in judgments if j.get("identical")),  # draws without asking (identical outputs)
    })
    return out


def resolve_df_gamed(spec: str | None, glm: str, rows: list[dict], folder: Path) -> tuple[str | None, str | None]:
    """(the local df_gamed.csv, or None; why there is none). The hub file is fetched once into the hub cache; a
    machine without the network gives a local path. length_controlled_minimal without one gets the zero
    difficulty table."""
    if spec:
        try:
            return str(local_file(package_file(spec), "alpaca_eval's df_gamed.csv")), None
        except ZephyrError as exc:
            log.warning("AlpacaEval 2.0: no length-controlled win rate: %s (%s)", exc.problem, exc.fix)
            return None, f"not computed: {exc.problem}; give stage.alpaca_eval_2.df_gamed a local copy"
    if glm != "length_controlled_minimal":
        raise ZephyrError(f"stage.alpaca_eval_2.df_gamed is null, and glm {glm} needs alpaca_eval's df_gamed.csv",
                          "give its path or hf://datasets/tatsu-lab/alpaca_eval/df_gamed.csv, or use "
                          "glm: length_controlled_minimal for an instruction set other than AlpacaEval's")
    return str(standin_difficulties(rows, folder / "difficulty_standin.csv")), None
